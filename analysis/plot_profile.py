#!/usr/bin/python3
"""Per-rank time breakdown of a fedhpc run from its profile.h5.

One stacked bar per rank: total seconds over all rounds spent in each phase
(broadcast, local, reduce, server, eval, io), so load imbalance between ranks
shows as bars of different heights. Prints min/mean/max over ranks per phase."""

import argparse
import os
import sys

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import runfiles  # noqa: E402

import matplotlib  # noqa: E402

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402

DPI = 120


def parse_args():
    p = argparse.ArgumentParser(
        description="Stacked bar per MPI rank of the total time spent in each phase of a "
        "fedhpc run (from profile.h5), and a table on stdout of min/mean/max over ranks "
        "per phase.",
        epilog="RUN is a run folder (output.dir/NAME; its profile.h5 is read, or "
        "profile.h5.partial for a run that is still going or failed, which is said on "
        "stderr) or the path of a profile.h5 file. Times are wall-clock seconds summed "
        "over rounds. Exit status: 0 ok, 2 bad arguments or a missing/unusable file.")
    p.add_argument("run", metavar="RUN", help="run folder or profile.h5 path")
    p.add_argument("-o", "--output", required=True, metavar="OUT.png", help="PNG file to write")
    p.add_argument("--title", metavar="T", help="figure title (default: run name, ranks, rounds)")
    p.add_argument("--size", default="1080x600", metavar="WxH",
                   help="image size in pixels (default 1080x600, at %d dpi)" % DPI)
    return p.parse_args()


def read_profile(arg):
    """-> (time [rounds, ranks, phases] seconds, phase names, run name, partial)."""
    path, run_name, partial = runfiles.resolve(arg, "profile.h5")
    with runfiles.open_h5(path) as h5:
        time = np.asarray(runfiles.require_dataset(h5, "time", path, "profile")[:], dtype=float)
        phases = [s for s in runfiles.attr_str(h5, "phases").split(",") if s]
        status = runfiles.attr_str(h5, "status", "unknown")
    if time.ndim != 3:
        runfiles.fail(f"{path}: 'time' has shape {time.shape}, expected [rounds, ranks, phases]")
    if len(phases) != time.shape[2]:
        phases = [f"phase {i}" for i in range(time.shape[2])]
    if partial:
        print(f"{os.path.basename(sys.argv[0])}: {arg}: reading {path} "
              f"(run not finished, status '{status}')", file=sys.stderr)
    return time, phases, run_name, partial


def print_table(per_rank, phases):
    """per_rank [ranks, phases] seconds -> table on stdout."""
    nranks = per_rank.shape[0]
    print(f"time per phase over {nranks} ranks (s, summed over rounds)")
    print(f"  {'phase':<12}{'min':>11}{'mean':>11}{'max':>11}{'max/mean':>10}")
    rows = list(zip(phases, per_rank.T)) + [("total", per_rank.sum(axis=1))]
    for name, col in rows:
        mean = col.mean()
        ratio = f"{col.max() / mean:10.2f}" if mean > 0 else f"{'-':>10}"
        print(f"  {name:<12}{col.min():11.4f}{mean:11.4f}{col.max():11.4f}{ratio}")


def main():
    args = parse_args()
    width, height = runfiles.parse_size(args.size)
    time, phases, run_name, partial = read_profile(args.run)
    rounds, nranks, _ = time.shape
    per_rank = time.sum(axis=0)  # [ranks, phases]
    print_table(per_rank, phases)

    fig, ax = plt.subplots(figsize=(width / DPI, height / DPI), dpi=DPI)
    ranks = np.arange(nranks)
    bottom = np.zeros(nranks)
    bar_width = 0.8 if nranks > 1 else 0.4
    bars = []
    for j, name in enumerate(phases):
        bars.append(ax.bar(ranks, per_rank[:, j], bar_width, bottom=bottom, label=name,
                           color=f"C{j % 10}", linewidth=0))
        bottom += per_rank[:, j]
    extra = []
    if nranks > 1:
        extra.append(ax.axhline(bottom.mean(), color="black", linestyle="--", linewidth=1,
                                label=f"mean total {bottom.mean():.3g} s"))
    ax.set_xlabel("MPI rank")
    ax.set_ylabel("wall time summed over rounds (s)")
    if nranks <= 32:
        ax.set_xticks(ranks)
    else:
        ax.xaxis.get_major_locator().set_params(integer=True)
    ax.set_xlim(-0.6, nranks - 0.4)
    # stacked bars pin the autoscaled limit to the tallest bar; leave headroom
    top = bottom.max()
    ax.set_ylim(0, top * 1.08 if top > 0 else 1.0)
    ax.grid(True, axis="y", alpha=0.3)
    ax.set_axisbelow(True)
    # legend top-down in the order of the stack (last phase on top)
    handles = bars[::-1] + extra
    ax.legend(handles, [h.get_label() for h in handles], fontsize="small",
              loc="upper left", bbox_to_anchor=(1.01, 1.0))
    title = args.title or (f"{run_name}{' (partial)' if partial else ''}: time per phase, "
                           f"{nranks} ranks, {rounds} rounds")
    ax.set_title(title, fontsize="medium")
    fig.tight_layout()
    try:
        fig.savefig(args.output, dpi=DPI)
    except OSError as e:
        runfiles.fail(f"{args.output}: cannot write ({e.strerror or e})")
    print(args.output)


if __name__ == "__main__":
    main()
