#!/usr/bin/python3
"""FST-CBDG's accuracy table: each method's final accuracy (mean and spread
over its runs, e.g. seeds), and what it communicates.

    fst_table.py -m LABEL RUN [RUN ...] [-m LABEL RUN ...] [--budget LABEL]
                 [--metric global_test/accuracy] [--markdown] [--plot FILE.png]

Each -m names a method and its run folders (one per seed). Per method:

  final     the last round's accuracy (metric, default global_test/accuracy:
            the global model on the data set's whole test set), mean and
            sample std over the runs, and the range
  best      the best round's accuracy, mean over the runs
  floats    floats one sampled client receives and sends back per round: the
            model's parameters and buffers (model.h5), 0 for FST-CBDG's
            zeroshot variant, which trains nothing (the runs still broadcast)
  MB/round  4-byte floats of all sampled clients, both ways, per round (mean)
  total MB  over the whole run (mean over the runs)
  s/round   seconds per training round: the median of metrics.h5's
            wall_time over the rounds without an evaluation (all rounds
            when each has one), mean over the runs
  @budget   with --budget LABEL: the accuracy of the last round whose
            cumulative traffic stays within LABEL's total traffic ("-" when
            the first round already exceeds it): methods at equal
            communication

--plot draws the mean accuracy per round of every method against the
cumulative traffic (log scale). Exit status 2 with one line for a missing
run or metric. Reads only the runs' metrics.h5, model.h5 and config.
"""
import argparse
import configparser
import math
import os
import sys

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import numpy as np  # noqa: E402

from runfiles import fail, open_h5, resolve  # noqa: E402
from tables import table  # noqa: E402


def text(v):
    return v.decode() if isinstance(v, bytes) else str(v)


def load_run(run, metric):
    path, name, partial = resolve(run, "metrics.h5")
    if partial:
        fail(f"{run}: the run has not completed (only metrics.h5.partial)")
    with open_h5(path) as f:
        if metric not in f:
            fail(f"{path}: no dataset {metric}")
        acc = f[metric][()]
        sampled = f["clients_sampled"][()]
        wall = np.asarray(f["wall_time"][()], dtype=float) if "wall_time" in f else np.array([np.nan])
        cfg = configparser.ConfigParser(inline_comment_prefixes=(";", "#"))
        cfg.read_string(text(f.attrs["config"]))
    model = os.path.join(run, "model.h5")
    if not os.path.isfile(model):
        fail(f"{run}: no model.h5 (run with output.save_model = true)")
    with open_h5(model) as f:
        floats = sum(int(np.prod(d.shape)) for g in ("params", "buffers") if g in f for d in f[g].values())
    alg = cfg.get("run", "algorithm", fallback="?")
    if alg == "fstcbdg" and cfg.get("fstcbdg", "variant", fallback="cbdg") == "zeroshot":
        floats = 0
    traffic = 2.0 * 4.0 * floats * sampled.astype(float) / 1e6  # MB per round, both ways
    train = ~np.isfinite(acc) if len(wall) == len(acc) and (~np.isfinite(acc)).any() else np.ones(len(wall), bool)
    return {"name": name, "acc": acc, "traffic": traffic, "floats": floats, "alg": alg,
            "spr": float(np.median(wall[train]))}


def summarise(label, runs):
    finals = np.array([r["acc"][~np.isnan(r["acc"])][-1] for r in runs])
    best = np.array([np.nanmax(r["acc"]) for r in runs])
    return {
        "label": label,
        "n": len(runs),
        "mean": finals.mean(),
        "std": finals.std(ddof=1) if len(runs) > 1 else float("nan"),
        "min": finals.min(),
        "max": finals.max(),
        "best": best.mean(),
        "floats": runs[0]["floats"],
        "mb_round": float(np.mean([r["traffic"].mean() for r in runs])),
        "mb_total": float(np.mean([r["traffic"].sum() for r in runs])),
        "spr": float(np.mean([r["spr"] for r in runs])),
        "runs": runs,
    }


def at_budget(s, budget):
    vals = []
    for r in s["runs"]:
        cum = np.cumsum(r["traffic"])
        ok = np.where((cum <= budget * (1 + 1e-12)) & ~np.isnan(r["acc"]))[0]
        if len(ok) == 0:
            return None
        vals.append(r["acc"][ok[-1]])
    return float(np.mean(vals))


def pct(v):
    return "-" if v is None or (isinstance(v, float) and math.isnan(v)) else f"{100 * v:.2f}"


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("-m", "--method", nargs="+", action="append", required=True, metavar="LABEL RUN",
                    help="a method's label, then its run folders")
    ap.add_argument("--metric", default="global_test/accuracy")
    ap.add_argument("--budget", help="label of the method whose total traffic sets the budget column")
    ap.add_argument("--markdown", action="store_true", help="a Markdown table")
    ap.add_argument("--plot", help="PNG of accuracy against cumulative traffic")
    a = ap.parse_args()
    stats = []
    for group in a.method:
        if len(group) < 2:
            fail(f"-m {group[0]}: give the label, then at least one run folder")
        stats.append(summarise(group[0], [load_run(r, a.metric) for r in group[1:]]))
    budget = None
    if a.budget:
        ref = [s for s in stats if s["label"] == a.budget]
        if not ref:
            fail(f"--budget {a.budget}: no method with that label")
        budget = ref[0]["mb_total"]

    head = ["method", "runs", "final %", "std", "range %", "best %", "floats/client", "MB/round", "total MB"]
    if budget is not None:
        head.append(f"@{a.budget} budget %")
    head.append("s/round")
    rows = []
    for s in stats:
        row = [s["label"], str(s["n"]), pct(s["mean"]), pct(s["std"]), f"{pct(s['min'])}-{pct(s['max'])}",
               pct(s["best"]), str(s["floats"]), f"{s['mb_round']:.3f}", f"{s['mb_total']:.2f}"]
        if budget is not None:
            row.append(pct(at_budget(s, budget)))
        row.append(f"{s['spr']:.3g}")
        rows.append(row)
    print(table(rows, head, a.markdown))
    print(f"({a.metric}: last round of each run, mean and sample std over its runs; traffic in 4-byte floats, "
          f"both ways, all sampled clients)")

    if a.plot:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt

        fig, ax = plt.subplots(figsize=(6.4, 4.2))
        for s in stats:
            n = min(len(r["acc"]) for r in s["runs"])
            acc = np.nanmean([r["acc"][:n] for r in s["runs"]], axis=0)
            cum = np.mean([np.cumsum(r["traffic"][:n]) for r in s["runs"]], axis=0)
            if s["floats"] == 0:
                ax.axhline(100 * acc[-1], ls="--", color="grey", label=s["label"])
            else:
                ax.plot(cum, 100 * acc, marker=".", label=s["label"])
        ax.set_xscale("log")
        ax.set_xlabel("cumulative traffic (MB, all clients, both ways)")
        ax.set_ylabel(f"{a.metric} (%)")
        ax.grid(alpha=0.3)
        ax.legend(fontsize=8)
        fig.tight_layout()
        fig.savefig(a.plot, dpi=120)
        print(f"wrote {a.plot}")


if __name__ == "__main__":
    main()
