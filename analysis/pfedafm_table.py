#!/usr/bin/python3
"""pFedAFM against the model-heterogeneous baselines: the tables of a sweep.

    analysis/pfedafm_table.py OUT [--markdown] [--last N]

OUT is a folder of runs named <method>_s<seed> (scripts/pfedafm_sweep.sh
makes them: the run folder and its log <method>_s<seed>.log). Runs of one
<method> (the algorithm plus any tag, e.g. pfedafm-alr0.1) are grouped over
their seeds. Two tables, on stdout:

Accuracy (mean +- standard deviation over seeds, in %):
  final     personal/accuracy at the last evaluation: every client's own model
            (pFedAFM: its mixed model) on its test split, pooled over clients
  last-N    its mean over the last N evaluations (--last, default 5), less
            noisy than one round
  best      the best evaluation of the run
  clients   personal/client_accuracy/mean at the last evaluation: the mean of
            the clients' own accuracies (the paper's "mean accuracy")
  global    test_accuracy where a shared model of the data exists (FML's meme,
            FedKD's student), else "-"

Communication and computation per round (means over rounds and seeds):
  up, down  bytes one sampled client sends and receives, from the line the
            method logs (FedKD: its messages of SVD factors, padded to
            fedkd.max_rank components per matrix, as the run logs at the end)
  per round (up + down) x clients sampled
  GFLOP/cl  analytic floating-point operations of the local phase per sampled
            client and round (profile.h5; forward, backward and the client's
            own evaluations)
"""
import argparse
import math
import os
import re
import sys

import h5py
import numpy as np

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from tables import seed_groups, table  # noqa: E402

ORDER = ["pfedafm", "standalone", "lg_fedavg", "fml", "fedkd", "fedproto", "fedgh", "fd"]


def comm_bytes(run):
    """(up, down) bytes per sampled client from the run's log; None if unknown."""
    log = run + ".log"
    if not os.path.isfile(log):
        return None
    text = open(log, errors="replace").read()
    m = re.search(r"fedkd: .* in messages of (\d+) bytes per client each way", text)
    if m:
        return float(m.group(1)), float(m.group(1))
    m = re.search(r"the header \((\d+) bytes\) goes down, each client's class prototypes \((\d+) bytes\) go up", text)
    if m:
        return float(m.group(2)), float(m.group(1))
    m = re.search(r"(\d+) bytes each way per sampled client", text)
    if m:
        return float(m.group(1)), float(m.group(1))
    if "nothing travels" in text:
        return 0.0, 0.0
    return None


def one(run, last):
    with h5py.File(os.path.join(run, "metrics.h5"), "r") as f:
        acc = f["personal/accuracy"][()]
        ok = np.isfinite(acc)
        acc = acc[ok]
        client = f["personal/client_accuracy/mean"][()][ok]
        glob = f["test_accuracy"][()][ok]
        sampled = f["clients_sampled"][()]
    with h5py.File(os.path.join(run, "profile.h5"), "r") as p:
        phases = p.attrs["phases"]
        phases = (phases.decode() if isinstance(phases, bytes) else phases).split(",")
        local = p["flops"][()][:, :, phases.index("local")].sum(axis=1)  # [rounds], summed over ranks
    return {
        "final": acc[-1],
        "lastN": float(np.mean(acc[-last:])),
        "best": float(np.max(acc)),
        "clients": client[-1],
        "global": glob[-1],
        "gflop": float(np.mean(local / sampled)) / 1e9,
        "sampled": float(np.mean(sampled)),
        "bytes": comm_bytes(run),
    }


def ms(values, pct=True):
    v = np.array([x for x in values if x is not None and np.isfinite(x)], dtype=float)
    if len(v) == 0:
        return "-"
    k = 100.0 if pct else 1.0
    sd = float(np.std(v, ddof=1)) * k if len(v) > 1 else 0.0
    return f"{np.mean(v) * k:.2f} +- {sd:.2f}"


def human(b):
    for unit, k in (("MB", 1e6), ("kB", 1e3)):
        if b >= k:
            return f"{b / k:.2f} {unit}"
    return f"{b:.0f} B"


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("out")
    ap.add_argument("--markdown", action="store_true")
    ap.add_argument("--last", type=int, default=5)
    a = ap.parse_args()
    groups = seed_groups(a.out)
    if not groups:
        sys.exit(f"{a.out}: no complete runs named <method>_s<seed>")
    key = lambda g: (ORDER.index(g.split("-")[0]) if g.split("-")[0] in ORDER else len(ORDER), g)
    acc_rows, comm_rows = [], []
    for g in sorted(groups, key=key):
        rs = [one(r, a.last) for r in groups[g]]
        acc_rows.append([g, len(rs), ms([r["final"] for r in rs]), ms([r["lastN"] for r in rs]),
                         ms([r["best"] for r in rs]), ms([r["clients"] for r in rs]), ms([r["global"] for r in rs])])
        b = [r["bytes"] for r in rs if r["bytes"] is not None]
        up = float(np.mean([x[0] for x in b])) if b else math.nan
        down = float(np.mean([x[1] for x in b])) if b else math.nan
        m = float(np.mean([r["sampled"] for r in rs]))
        comm_rows.append([g, human(up) if b else "?", human(down) if b else "?",
                          human((up + down) * m) if b else "?", f"{np.mean([r['gflop'] for r in rs]):.3g}"])
    print(f"Accuracy in % (mean +- sd over seeds; personal = each client's own model), {a.out}")
    print(table(acc_rows, ["method", "seeds", "final", f"last-{a.last}", "best", "clients' mean", "global"],
                a.markdown))
    print()
    print("Communication and computation per round")
    print(table(comm_rows, ["method", "up/client", "down/client", "per round", "GFLOP/client"], a.markdown))


if __name__ == "__main__":
    main()
