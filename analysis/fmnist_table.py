#!/usr/bin/python3
"""The table of docs/results-fmnist.md from scripts/fmnist_sweep.sh's runs.

    analysis/fmnist_table.py OUT [--curves DIR]

Reads OUT/<alg>_a<alpha>_s<seed>/metrics.h5 and prints a Markdown table: per
algorithm and Dirichlet alpha, mean +- sd over the seeds of the final
evaluation's test accuracy (the run's test_accuracy: the global model on the
global test set; for Local, whose clients keep their own models, the
personal/ metrics) and of the mean client accuracy (client_accuracy/mean: the
model on the test rows of each client's own label mix), and the seconds per training round (the
median round without an evaluation, mean over the seeds). With --curves, one
PNG per alpha (the seed-1 runs) by analysis/plot_metrics.py into DIR.
"""
import argparse
import collections
import glob
import os
import re
import subprocess
import sys

import h5py
import numpy as np

ALGS = [("fedavg", "FedAvg"), ("fedprox", "FedProx"), ("scaffold", "SCAFFOLD"),
        ("perfedavg", "Per-FedAvg"), ("local", "Local")]


def final(f, key):
    if key not in f:
        return None
    v = np.asarray(f[key][()], dtype=float)
    v = v[np.isfinite(v)]
    return float(v[-1]) if v.size else None


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("out")
    ap.add_argument("--curves")
    a = ap.parse_args()
    acc = collections.defaultdict(list)
    pers = collections.defaultdict(list)
    spr = collections.defaultdict(list)
    rounds = set()
    for path in sorted(glob.glob(os.path.join(a.out, "*_a*_s*", "metrics.h5"))):
        m = re.match(r"(\w+)_a([\d.]+)_s(\d+)$", os.path.basename(os.path.dirname(path)))
        if not m:
            continue
        key = (m.group(1), m.group(2))
        with h5py.File(path, "r") as f:
            t = final(f, "test_accuracy")
            p = final(f, "client_accuracy/mean")
            if t is None:  # Local: each client's own model (personal/*)
                t = final(f, "personal/accuracy")
                p = final(f, "personal/client_accuracy/mean")
            r = np.asarray(f["round"][()])
            w = np.asarray(f["wall_time"][()], dtype=float)
            ev = np.isfinite(np.asarray(f["test_accuracy"][()], dtype=float))
            if "personal/accuracy" in f:
                ev |= np.isfinite(np.asarray(f["personal/accuracy"][()], dtype=float))
        if t is not None:
            acc[key].append(100 * t)
        if p is not None:
            pers[key].append(100 * p)
        if len(r):
            rounds.add(int(r[-1]))
            train = w[~ev] if (~ev).any() else w
            spr[key].append(float(np.median(train)))
    alphas = sorted({k[1] for k in acc} | {k[1] for k in pers}, key=float, reverse=True)
    if not alphas:
        sys.exit("fmnist_table.py: no runs in %s" % a.out)

    def ms(v):
        if not v:
            return "-"
        return "%.2f +- %.2f" % (np.mean(v), np.std(v, ddof=1) if len(v) > 1 else 0.0)

    print("| algorithm | " + " | ".join(
        "alpha %s: test acc (%%) | mean client acc (%%) | s/round" % al for al in alphas) + " | seeds |")
    print("|---|" + "---|---|---|" * len(alphas) + "---|")
    for alg, label in ALGS:
        cells, n = [], 0
        for al in alphas:
            k = (alg, al)
            n = max(n, len(acc.get(k, [])), len(pers.get(k, [])))
            cells += [ms(acc.get(k)), ms(pers.get(k)),
                      "%.2f" % np.mean(spr[k]) if spr.get(k) else "-"]
        print("| %s | %s | %d |" % (label, " | ".join(cells), n))
    print("\nrounds: %s" % ", ".join(str(r) for r in sorted(rounds)))
    if a.curves:
        os.makedirs(a.curves, exist_ok=True)
        here = os.path.dirname(os.path.abspath(__file__))
        for al in alphas:
            runs = [os.path.join(a.out, "%s_a%s_s1" % (alg, al)) for alg, _ in ALGS]
            runs = [r for r in runs if os.path.exists(os.path.join(r, "metrics.h5"))]
            labels = [os.path.basename(r).split("_a")[0] for r in runs]
            if runs:
                subprocess.run([sys.executable, os.path.join(here, "plot_metrics.py"), *runs,
                                "-o", os.path.join(a.curves, "fmnist_alpha%s.png" % al),
                                "--labels", ",".join(labels)], check=True)


if __name__ == "__main__":
    main()
