#!/usr/bin/python3
"""FedGC's tables from a sweep (scripts/fedgc_sweep.sh).

    analysis/fedgc_table.py OUT [--markdown] [--last N]

OUT holds runs named <alg>-plain_s<seed> (no generated data),
<alg>-gc-<budget>-<design>-<guidance>_s<seed> (FedGC with that setting) and
<alg>-holdout-<budget>_s<seed> (the server's real hold-out rows dealt in
place of generated ones, fedgc.source = holdout).
Accuracy is the global model's test accuracy (metrics.h5 test_accuracy,
pooled over the clients' test splits) at the last evaluation; "last-N" is its
mean over the last N evaluations (--last, default 3). Every cell is the mean
+- standard deviation over the seeds (n = their count).

Design space (FedAvg + FedGC): one table per axis, its three candidates with
the other two axes at their defaults (budget inverse, design diverse,
guidance mixed), so the default setting appears in each table.

Headline: FedAvg, FedProx and SCAFFOLD without and with FedGC (defaults),
the gain in points, and the loss-threshold membership-inference AUC on the
final global model (membership.h5; 0.5 = the attack does no better than
chance) without and with generated data.

Budgets (when a sweep ran --part budgets or holdout): each algorithm
without FedGC, with it at each budget that ran (design and guidance at
their defaults) and with the hold-out's real rows at each budget that ran,
accuracy and MI AUC, and the seconds per training round: the median of
metrics.h5's wall_time over the rounds without an evaluation, then the
median over the row's runs.
"""
import argparse
import os
import re
import sys

import h5py
import numpy as np

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from tables import table  # noqa: E402

DEFAULT = ("inverse", "diverse", "mixed")
AXES = [("budget", 0, ["equal", "inverse", "waterfill"]), ("design", 1, ["single", "multi", "diverse"]),
        ("guidance", 2, ["prompt", "real", "mixed"])]
ALGS = ["fedavg", "fedprox", "scaffold"]
NAME = re.compile(r"(?P<alg>[a-z_]+)-(?:plain|gc-(?P<b>\w+?)-(?P<d>\w+?)-(?P<g>\w+?)|holdout-(?P<h>\w+?))"
                  r"_s(?P<seed>\d+)")


def load(out, last):
    """{(alg, setting or None): [per-seed dict]}"""
    groups = {}
    for name in sorted(os.listdir(out)):
        m = NAME.fullmatch(name)
        if not m or not os.path.isfile(os.path.join(out, name, "metrics.h5")):
            continue
        with h5py.File(os.path.join(out, name, "metrics.h5"), "r") as f:
            acc = f["test_accuracy"][()]
            wall = np.asarray(f["wall_time"][()], dtype=float) if "wall_time" in f else np.array([np.nan])
        ev = np.isfinite(acc)
        spr = float(np.median(wall[~ev])) if len(wall) == len(acc) and (~ev).any() else float(np.median(wall))
        acc = acc[ev]
        if len(acc) == 0:
            continue
        auc = np.nan
        mpath = os.path.join(out, name, "membership.h5")
        if os.path.isfile(mpath):
            with h5py.File(mpath, "r") as f:
                auc = float(f.attrs["auc"])
        setting = (m["b"], m["d"], m["g"]) if m["b"] else ("holdout", m["h"]) if m["h"] else None
        groups.setdefault((m["alg"], setting), []).append(
            {"final": float(acc[-1]), "last": float(np.mean(acc[-last:])), "auc": auc, "spr": spr})
    return groups


def ms(values, scale=100.0, digits=2):
    v = np.array([x for x in values if np.isfinite(x)], dtype=float)
    if len(v) == 0:
        return "-"
    sd = float(np.std(v, ddof=1)) * scale if len(v) > 1 else 0.0
    return f"{np.mean(v) * scale:.{digits}f} +- {sd:.{digits}f}"


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("out")
    ap.add_argument("--markdown", action="store_true")
    ap.add_argument("--last", type=int, default=3)
    a = ap.parse_args()
    g = load(a.out, a.last)
    if not g:
        sys.exit(f"{a.out}: no complete runs named <alg>-plain_s<seed>, <alg>-gc-<budget>-<design>-<guidance>_s<seed> "
                 "or <alg>-holdout-<budget>_s<seed>")
    printed = False
    for axis, pos, cands in AXES:
        rows = []
        for c in cands:
            s = list(DEFAULT)
            s[pos] = c
            rs = g.get(("fedavg", tuple(s)), [])
            if rs:
                rows.append([c + (" (default)" if c == DEFAULT[pos] else ""), len(rs), ms([r["final"] for r in rs]),
                             ms([r["last"] for r in rs]), ms([r["auc"] for r in rs], 1.0, 4)])
        if rows:
            print(f"Design space, {axis} (FedAvg + FedGC, others at default; test accuracy in %), {a.out}")
            print(table(rows, [axis, "seeds", "final", f"last-{a.last}", "MI AUC"], a.markdown))
            print()
            printed = True
    rows = []
    for alg in ALGS:
        plain, gc = g.get((alg, None), []), g.get((alg, DEFAULT), [])
        if not plain and not gc:
            continue
        gain = "-"
        if plain and gc:
            gain = f"{100 * (np.mean([r['final'] for r in gc]) - np.mean([r['final'] for r in plain])):+.2f}"
        rows.append([alg, f"{len(plain)}/{len(gc)}", ms([r["final"] for r in plain]), ms([r["final"] for r in gc]), gain,
                     ms([r["auc"] for r in plain], 1.0, 4), ms([r["auc"] for r in gc], 1.0, 4)])
    if rows:
        print(f"Headline: without / with FedGC (defaults), test accuracy in % and membership-inference AUC, {a.out}")
        print(table(rows, ["algorithm", "seeds", "without", "with FedGC", "gain", "MI AUC without", "MI AUC with"],
                    a.markdown))
        printed = True
    rows = []
    # the budgets that ran with generated data, and with the hold-out's rows
    gen = [b for b in AXES[0][2] if any((alg, (b, DEFAULT[1], DEFAULT[2])) in g for alg in ALGS)]
    held = [b for b in AXES[0][2] if any((alg, ("holdout", b)) in g for alg in ALGS)]
    if len(gen) < 2 and not held:  # a design or headline sweep: the default budget alone
        gen = []
    for alg in ALGS:
        plain = g.get((alg, None), [])
        by = [g.get((alg, (b, DEFAULT[1], DEFAULT[2])), []) for b in gen] + [g.get((alg, ("holdout", b)), []) for b in held]
        if not any(by):
            continue
        cells = [ms([r["final"] for r in plain])] + [ms([r["final"] for r in rs]) for rs in by]
        aucs = [ms([r["auc"] for r in plain], 1.0, 3)] + [ms([r["auc"] for r in rs], 1.0, 3) for rs in by]
        spr = [r["spr"] for rs in [plain] + by for r in rs]
        seeds = "/".join(str(len(rs)) for rs in [plain] + by)
        rows.append([alg, seeds] + cells + aucs + [f"{np.nanmedian(spr):.3g}" if spr else "-"])
    if rows:
        print()
        print(f"Budgets: without FedGC, with it at each budget (design and guidance at their defaults) and with the "
              f"hold-out's real rows, test accuracy in % and MI AUC, {a.out}")
        cols = [f"FedGC {b}" for b in gen] + [f"hold-out {b}" for b in held]
        head = ["algorithm", "seeds", "without"] + cols + ["AUC without"] + [f"AUC {c}" for c in cols] + ["s/round"]
        print(table(rows, head, a.markdown))
        printed = True
    if not printed:
        sys.exit(f"{a.out}: runs found, but none of the design-space or headline settings")


if __name__ == "__main__":
    main()
