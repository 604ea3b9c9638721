#!/usr/bin/python3
"""Layer-wise inertia of one or two fedhpc runs, from their inertia.h5
(lips.record_inertia; docs/lips.md, docs/outputs.md).

One heatmap per quantity, layers on the vertical axis (input at the top,
middle layers marked with *), rounds on the horizontal one; with two runs
(FedAvg and FedAvg+LIPS, say) their heatmaps sit side by side with one colour
scale per quantity, so the inert middle layers, and what LIPS does to them,
can be compared. Quantities (--what, default all five):
  cos     cosine similarity of the global layer to its round-3 snapshot
          (near 1: the layer no longer moves away from where it was)
  dist    L2 distance of the global layer to the snapshot
  update  L2 norm of the layer's aggregated update in the round
  gnorm   mean over the round's clients of their last minibatch gradient norm
  gdiv    gradient diversity: mean distance of the clients' gradients from
          their mean
Norms and distances are drawn on a log colour scale. Rounds with no value
(before the snapshot; a recorded algorithm without gradients) are left blank. Exit status: 0 ok, 2 bad arguments or an unusable
file."""

import argparse
import os
import sys

import h5py
import numpy as np

WHAT = {"cos": ("cos_to_snapshot", "cosine to round-3 snapshot"),
        "dist": ("dist_to_snapshot", "L2 distance to round-3 snapshot"),
        "update": ("update_norm", "aggregated update norm"),
        "gnorm": ("grad_norm", "client gradient norm"),
        "gdiv": ("grad_diversity", "gradient diversity")}


def die(msg):
    print(f"plot_inertia.py: {msg}", file=sys.stderr)
    sys.exit(2)


def load(path):
    f = path if path.endswith(".h5") else os.path.join(path, "inertia.h5")
    if not os.path.isfile(f):
        die(f"{f}: no such file (run with lips.record_inertia = true)")
    try:
        with h5py.File(f, "r") as h:
            run = {"layers": [n.decode() for n in h["layers"][()]], "middle": h["middle"][()].astype(bool),
                   "round": h["round"][()], "density": h["density"][()],
                   "algorithm": h.attrs["algorithm"], "lips": int(h.attrs["lips_enable"])}
            for key, (ds, _) in WHAT.items():
                run[key] = h[ds][()]
    except (OSError, KeyError) as e:
        die(f"{f}: not an inertia record ({e})")
    alg = run["algorithm"].decode() if isinstance(run["algorithm"], bytes) else run["algorithm"]
    run["label"] = f"{os.path.basename(os.path.dirname(os.path.abspath(f)))} ({alg}{'+LIPS' if run['lips'] else ''})"
    return run


def main():
    p = argparse.ArgumentParser(description="Heatmaps (layers x rounds) of the inertia record of one or two runs.",
                                epilog="RUN is a run folder holding inertia.h5, or the file itself.")
    p.add_argument("runs", nargs="+", metavar="RUN")
    p.add_argument("-o", "--output", required=True, metavar="OUT.png")
    p.add_argument("--what", default="cos,dist,update,gnorm,gdiv",
                   help="comma-separated quantities among " + ", ".join(WHAT))
    p.add_argument("--labels", metavar="A,B", help="titles of the runs (default: folder and algorithm)")
    a = p.parse_args()
    if len(a.runs) > 2:
        die("give one or two runs")
    what = [w.strip() for w in a.what.split(",") if w.strip()]
    bad = [w for w in what if w not in WHAT]
    if bad or not what:
        die(f"--what: unknown {','.join(bad) or '(empty)'}; choose among {', '.join(WHAT)}")
    runs = [load(r) for r in a.runs]
    if a.labels:
        labels = a.labels.split(",")
        if len(labels) != len(runs):
            die("--labels: give one label per run")
        for r, lab in zip(runs, labels):
            r["label"] = lab
    if len(runs) == 2 and runs[0]["layers"] != runs[1]["layers"]:
        die("the two runs have different layers (models)")

    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    nl = len(runs[0]["layers"])
    ylab = [("* " if m else "") + n.replace(".weight", "") for n, m in zip(runs[0]["layers"], runs[0]["middle"])]
    from matplotlib.colors import LogNorm, Normalize
    fig, axes = plt.subplots(len(what), len(runs), squeeze=False, constrained_layout=True,
                             figsize=(6.0 * len(runs) + 2.0, (0.28 * nl + 1.4) * len(what)))
    for i, w in enumerate(what):
        vals = np.concatenate([r[w][np.isfinite(r[w])] for r in runs])
        lo, hi = (float(vals.min()), float(vals.max())) if vals.size else (0.0, 1.0)
        if hi <= lo:
            hi = lo + 1e-12
        # norms and distances span decades over a run: a log colour scale
        norm = LogNorm(lo, hi) if w != "cos" and lo > 0 else Normalize(lo, hi)
        for j, r in enumerate(runs):
            ax = axes[i][j]
            z = np.ma.masked_invalid(r[w].T)  # [layers, rounds]
            rounds = r["round"]
            extent = (rounds[0] - 0.5, rounds[-1] + 0.5, nl - 0.5, -0.5) if len(rounds) else None
            im = ax.imshow(z, aspect="auto", interpolation="nearest", cmap="viridis", norm=norm, extent=extent)
            sparse = rounds[r["density"] < 1]
            for t in sparse:  # the rounds that start sparse
                ax.axvline(t, color="white", lw=0.5, alpha=0.6)
            ax.set_yticks(range(nl))
            ax.set_yticklabels(ylab if j == 0 else [], fontsize=7)
            ax.set_title(f"{r['label']}: {WHAT[w][1]}", fontsize=9)
            if i == len(what) - 1:
                ax.set_xlabel("round")
            if j == len(runs) - 1:
                fig.colorbar(im, ax=axes[i].tolist(), fraction=0.03, pad=0.01)
    fig.suptitle("layer-wise inertia (* middle layers; white lines: sparse starts)", fontsize=10)
    try:
        fig.savefig(a.output, dpi=110)
    except OSError as e:
        die(f"{a.output}: cannot write ({e})")
    print(f"wrote {a.output}")


if __name__ == "__main__":
    main()
