#!/usr/bin/python3
"""The AugFL comparison table from the runs' metrics.h5: FedAvg (+ one-step
adaptation), Per-FedAvg, AugFL without the pretrained model (ADMM-FedMeta),
AugFL and AugFL with the second-order server step (over the classifier, and
over the whole model for small models), one row per method and
data set, mean and spread over the seeds.

Every method is measured the same way, on the target clients
(eval.holdout_clients, never trained): copy the global model, one full-batch
SGD step of rate eval.adapt_lr on the client's train split, accuracy on its
test split, test-size weighted (metrics.h5: holdout/accuracy).

    augfl_table.py RUN... [-o TABLE.md] [--target 0.9] [--last 1]
    augfl_table.py --print-commands DECK [--seeds 1,2,3] [--out-dir DIR] [--np 2] [--whole-model]

The first form reads run folders (each with its metrics.h5); a run's method,
data set and seed come from the deck in its metrics.h5 (attribute config).
The second prints the shell commands that make every run of the table for a
deck: per seed the pretrained model, then the five methods (six with
--whole-model: the second-order step over the whole model)."""

import argparse
import configparser
import math
import os
import sys

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import runfiles  # noqa: E402

import numpy as np  # noqa: E402

METHODS = ["FedAvg (+1 step)", "Per-FedAvg", "First-order MAML", "AugFL without PM", "AugFL",
           "AugFL second-order", "AugFL second-order (model)"]
# made by --print-commands (the whole-model step only for small models: --whole-model)
DEFAULT_METHODS = METHODS[:6]

# deck overrides of each method on top of an AugFL deck
METHOD_SETS = {
    "FedAvg (+1 step)": "--set run.algorithm=fedavg --set train.lr=0.05 --set train.epochs=1",
    "Per-FedAvg": "--set run.algorithm=perfedavg --set perfedavg.alpha=0.05 --set perfedavg.beta=0.05",
    # the authors' train_maml: one step of alpha on D^tr, the gradient on D^te there, a step of alpha with it
    "First-order MAML": "--set run.algorithm=perfedavg --set perfedavg.variant=fo --set perfedavg.alpha=0.05 "
                        "--set perfedavg.beta=0.05",
    "AugFL without PM": "--set augfl.lambda=0",
    "AugFL": "",
    "AugFL second-order": "--set augfl.step=second_order",
    "AugFL second-order (model)": "--set augfl.step=second_order --set augfl.second_order_block=all",
}
METHOD_NAMES = {"FedAvg (+1 step)": "fedavg", "Per-FedAvg": "perfedavg", "First-order MAML": "fomaml",
                "AugFL without PM": "augfl_nopm",
                "AugFL": "augfl", "AugFL second-order": "augfl_so", "AugFL second-order (model)": "augfl_som"}


def parse_args():
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                formatter_class=argparse.RawDescriptionHelpFormatter,
                                epilog="Exit status: 0 ok, 2 bad arguments or an unusable run.")
    p.add_argument("runs", nargs="*", metavar="RUN", help="run folder (output.dir/NAME)")
    p.add_argument("-o", "--output", metavar="TABLE.md", help="also write the table to this file")
    p.add_argument("--target", type=float, default=0.9,
                   help="accuracy of the rounds-to-accuracy column (default 0.9)")
    p.add_argument("--at", type=int, action="append", default=[], metavar="ROUND",
                   help="add a column with the target clients' accuracy at this round (repeatable)")
    p.add_argument("--last", type=int, default=1,
                   help="a run's accuracy: mean of its last LAST evaluations (default 1: the final one)")
    p.add_argument("--print-commands", metavar="DECK", help="print the commands that make the runs of DECK")
    p.add_argument("--seeds", default="1,2,3", help="seeds for --print-commands (default 1,2,3)")
    p.add_argument("--out-dir", default="runs/augfl", help="output.dir of the runs (--print-commands)")
    p.add_argument("--np", type=int, default=2, help="MPI ranks of each command (--print-commands)")
    p.add_argument("--whole-model", action="store_true",
                   help="--print-commands: also the second-order step over the whole model (small models)")
    a = p.parse_args()
    if not a.print_commands and not a.runs:
        p.error("give run folders, or --print-commands DECK")
    if a.last < 1:
        p.error("--last must be at least 1")
    return a


def print_commands(a):
    deck = a.print_commands
    name = os.path.splitext(os.path.basename(deck))[0]
    launch = f"mpirun -np {a.np} build/fedhpc"
    for seed in (s.strip() for s in a.seeds.split(",") if s.strip()):
        pm = f"{a.out_dir}/{name}_s{seed}.pm.h5"
        common = f"--set run.seed={seed} --set pm.path={pm} --set output.dir={a.out_dir}"
        print(f"{launch} pretrain {deck} {common}")
        for method in METHODS if a.whole_model else DEFAULT_METHODS:
            sets = METHOD_SETS[method]
            out = f"--set output.name={name}_{METHOD_NAMES[method]}_s{seed}"
            print(" ".join(x for x in (f"{launch} run {deck}", common, sets, out) if x))


def method_of(cfg):
    alg = cfg.get("run", "algorithm", fallback="?")
    if alg == "fedavg":
        return "FedAvg (+1 step)"
    if alg == "perfedavg":
        return "First-order MAML" if cfg.get("perfedavg", "variant", fallback="hf") == "fo" else "Per-FedAvg"
    if alg == "augfl":
        if float(cfg.get("augfl", "lambda", fallback="5")) == 0:
            return "AugFL without PM"
        name = "AugFL"
        if cfg.get("augfl", "step", fallback="linear") == "second_order":
            if cfg.get("augfl", "second_order_block", fallback="head") == "all":
                name = "AugFL second-order (model)"
            else:
                name = "AugFL second-order"
        # settings off the authors' (lambda 5, R = 1 CE + 0 KL + 0.8 CRD) name the row
        off = [f"{label} {float(cfg.get('augfl', key, fallback=d)):g}"
               for key, label, d in (("lambda", "lambda", "5"), ("gamma", "CE", "1"), ("kd_weight", "KL", "0"),
                                     ("crd_weight", "CRD", "0.8"))
               if float(cfg.get("augfl", key, fallback=d)) != float(d)]
        return f"{name} ({', '.join(off)})" if off else name
    return alg


def dataset_of(cfg):
    src = cfg.get("data", "source", fallback="?")
    if src == "hdf5":
        return os.path.splitext(os.path.basename(cfg.get("data", "path", fallback="?")))[0]
    if src == "idx" and cfg.get("data", "emnist_split", fallback="none") != "none":
        return "emnist-" + cfg.get("data", "emnist_split")
    if src == "synthimg":
        return f"synthimg(d={cfg.get('data', 'synthimg_difficulty', fallback='?')})"
    return src


def load_run(path, a):
    mpath, name, partial = runfiles.resolve(path, "metrics.h5")
    if partial:
        runfiles.fail(f"{path}: the run did not complete (only metrics.h5.partial)")
    with runfiles.open_h5(mpath) as f:
        cfg = configparser.ConfigParser(interpolation=None, inline_comment_prefixes=(";", "#"))
        cfg.read_string(runfiles.attr_str(f, "config"))
        if "holdout/accuracy" not in f:
            runfiles.fail(f"{path}: no holdout/accuracy in metrics.h5 (set eval.holdout_clients)")
        rounds = f["round"][()]
        acc = f["holdout/accuracy"][()]
        personal = f["personal/accuracy"][()] if "personal/accuracy" in f else np.full_like(acc, np.nan)
        server = f["time/server"][()] if "time/server" in f else np.full(len(rounds), np.nan)
        wall = f["wall_time"][()] if "wall_time" in f else np.full(len(rounds), np.nan)
    ev = np.isfinite(acc)
    if not ev.any():
        runfiles.fail(f"{path}: holdout/accuracy was never measured")
    reached = rounds[ev & (acc >= a.target)]
    pev = np.isfinite(personal)
    at = {}
    for r in a.at:
        hit = ev & (rounds == r)
        if not hit.any():
            runfiles.fail(f"{path}: holdout/accuracy was not measured in round {r} (run.eval_every)")
        at[r] = float(acc[hit][0])
    return {
        "method": method_of(cfg),
        "dataset": dataset_of(cfg),
        "seed": cfg.get("run", "seed", fallback="?"),
        "acc": float(np.mean(acc[ev][-a.last:])),
        "personal": float(np.mean(personal[pev][-a.last:])) if pev.any() else math.nan,
        "to_target": int(reached[0]) if len(reached) else None,
        "server": float(np.nanmean(server)),
        "round": float(np.nanmean(wall)),
        "name": name,
        "at": at,
    }


def fmt_pm(values, scale=100.0, digits=2):
    v = np.array([x for x in values if np.isfinite(x)]) * scale
    if len(v) == 0:
        return "-"
    if len(v) == 1:
        return f"{v[0]:.{digits}f}"
    return f"{v.mean():.{digits}f} ± {v.std(ddof=1):.{digits}f}"


def table(runs, a):
    groups = {}
    for r in runs:
        groups.setdefault((r["dataset"], r["method"]), []).append(r)
    order = {m: i for i, m in enumerate(METHODS)}
    at_head = "".join(f" round {r} (%) |" for r in a.at)
    lines = [f"| data set | method | seeds | target clients' accuracy (%) |{at_head} sources, personalised (%) "
             f"| rounds to {100 * a.target:g}% | server s/round | round s |",
             "|---|---|---|---|" + "---|" * len(a.at) + "---|---|---|---|"]
    for (ds, method) in sorted(groups, key=lambda k: (k[0], order.get(k[1], 99), k[1])):
        g = groups[(ds, method)]
        seeds = sorted({r["seed"] for r in g})
        reached = [r["to_target"] for r in g if r["to_target"] is not None]
        to_t = f"{np.mean(reached):.0f} ({len(reached)}/{len(g)})" if reached else f"- (0/{len(g)})"
        at_cells = "".join(f" {fmt_pm([r['at'][k] for r in g])} |" for k in a.at)
        lines.append(f"| {ds} | {method} | {','.join(seeds)} | {fmt_pm([r['acc'] for r in g])} |{at_cells}"
                     f" {fmt_pm([r['personal'] for r in g])} | {to_t} "
                     f"| {np.mean([r['server'] for r in g]):.4f} | {np.mean([r['round'] for r in g]):.4f} |")
    return "\n".join(lines) + "\n"


def main():
    a = parse_args()
    if a.print_commands:
        print_commands(a)
        return
    runs = [load_run(p, a) for p in a.runs]
    text = table(runs, a)
    note = (f"accuracy: mean of the last {a.last} evaluation(s) of each run; ± is the standard deviation "
            f"over seeds; rounds to {100 * a.target:g}%: mean over the seeds that reach it (how many did)\n")
    sys.stdout.write(text + "\n" + note)
    if a.output:
        with open(a.output, "w") as f:
            f.write(text + "\n" + note)


if __name__ == "__main__":
    main()
