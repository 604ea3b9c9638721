#!/usr/bin/python3
"""FedAvg against FedAvg+LIPS: the table of a sweep (scripts/lips_sweep.sh).

    analysis/lips_table.py OUT [--markdown] [--last N]

OUT is a folder of runs named <method>_s<seed> with their logs
<method>_s<seed>.log; runs of one method are grouped over their seeds. Mean
client test accuracy, mean +- standard deviation over seeds, in %:
  own       personal/client_accuracy/mean at the last evaluation: each client's
            own model (the global model with its own biases and BatchNorm,
            lips.local_bias_bn) on its test split, averaged over clients; "-"
            for a method with one global model only
  own-N     the same, averaged over the last N evaluations (--last, default 5)
  global    client_accuracy/mean at the last evaluation: the global model on
            every client's test split, averaged over clients
  global-N  the same over the last N evaluations
  best      the best of the method's headline (own where it exists, else global)
  fine-tuned  finetune/client_accuracy/mean at its one evaluation: each client's
            own model (the global one where the method has no own models)
            after the final fine-tune (eval.finetune_final, the authors'
            reported number); "-" when the runs did not fine-tune
Cost, means over seeds (from the logs and metrics.h5):
  mask ms/rd  seconds rank 0 spent scoring and masking per round (its clients)
  local s/rd  the local-training phase per round (max over ranks)
  ns/weight   masking time per scored weight
"""
import argparse
import os
import re
import sys

import h5py
import numpy as np

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from tables import seed_groups, table  # noqa: E402

ORDER = ["fedavg", "fedavg_localbn", "lips", "lips_w", "lips_g", "lips_random"]


def evaluated(f, path):
    if path not in f:
        return np.array([])
    v = f[path][()]
    return v[np.isfinite(v)]


def one(run, last):
    r = {}
    with h5py.File(os.path.join(run, "metrics.h5"), "r") as f:
        own, glob = evaluated(f, "personal/client_accuracy/mean"), evaluated(f, "client_accuracy/mean")
        ft = evaluated(f, "finetune/client_accuracy/mean")
        rounds = len(f["round"][()])
        local = f["time/local"][()]
    r["own"] = 100 * own[-1] if own.size else np.nan
    r["own_n"] = 100 * own[-last:].mean() if own.size else np.nan
    r["global"] = 100 * glob[-1] if glob.size else np.nan
    r["global_n"] = 100 * glob[-last:].mean() if glob.size else np.nan
    head = own if own.size else glob
    r["best"] = 100 * head.max() if head.size else np.nan
    r["ft"] = 100 * ft[-1] if ft.size else np.nan
    r["local"] = float(np.mean(local)) if len(local) else np.nan
    r["mask"] = r["ns"] = np.nan
    log = run + ".log"
    if os.path.isfile(log):
        m = re.search(r"lips: rank 0 masked (\d+) client starts, ([\d.e+]+) weights scored in ([\d.]+) s",
                      open(log, errors="replace").read())
        if m and rounds:
            r["mask"] = 1e3 * float(m.group(3)) / rounds
            r["ns"] = 1e9 * float(m.group(3)) / float(m.group(2))
        elif m is None:
            r["mask"] = 0.0
    return r


def fmt(vals, prec=2):
    v = np.array([x for x in vals if np.isfinite(x)])
    if v.size == 0:
        return "-"
    if v.size == 1:
        return f"{v[0]:.{prec}f}"
    return f"{v.mean():.{prec}f} +- {v.std(ddof=1):.{prec}f}"


def main():
    p = argparse.ArgumentParser(description="FedAvg vs FedAvg+LIPS table of a sweep folder.")
    p.add_argument("out")
    p.add_argument("--markdown", action="store_true")
    p.add_argument("--last", type=int, default=5)
    a = p.parse_args()
    if not os.path.isdir(a.out):
        sys.exit(f"lips_table.py: {a.out}: no such folder")
    groups = seed_groups(a.out)
    if not groups:
        sys.exit(f"lips_table.py: {a.out}: no complete runs (<method>_s<seed>/metrics.h5)")
    methods = [m for m in ORDER if m in groups] + sorted(m for m in groups if m not in ORDER)
    head = ["method", "seeds", "own", f"own-{a.last}", "global", f"global-{a.last}", "best",
            "mask ms/rd", "local s/rd", "ns/weight", "fine-tuned"]
    rows = []
    for m in methods:
        rs = [one(r, a.last) for r in groups[m]]
        col = lambda k, prec=2: fmt([r[k] for r in rs], prec)  # noqa: E731
        rows.append([m, str(len(rs)), col("own"), col("own_n"), col("global"), col("global_n"), col("best"),
                     col("mask", 1), col("local", 2), col("ns", 1), col("ft")])
    print(f"Mean client test accuracy (%), mean +- sd over seeds; cost per round ({a.out})")
    print(table(rows, head, a.markdown))


if __name__ == "__main__":
    main()
