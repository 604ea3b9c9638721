#!/usr/bin/python3
"""Learning curves of one or more fedhpc runs from their metrics.h5.

Two panels side by side: test accuracy (%) against round, with the p10-p90
band of per-client accuracy as a light fill, and the sample-weighted training
loss against round. One line per run."""

import argparse
import os
import sys

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import runfiles  # noqa: E402

import matplotlib  # noqa: E402

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import matplotlib.ticker  # noqa: E402
import numpy as np  # noqa: E402

DPI = 120


def parse_args():
    p = argparse.ArgumentParser(
        description="Plot test accuracy and weighted training loss per round for one or "
        "more fedhpc runs (two panels side by side, one line per run).",
        epilog="Each RUN_OR_METRICS is a run folder (output.dir/NAME; its metrics.h5 is read, "
        "or metrics.h5.partial for a run that is still going or failed, which is said on "
        "stderr and marked '(partial)' in the legend) or the path of a metrics.h5 file. "
        "Accuracy is drawn in percent; rounds without evaluation are skipped. "
        "Exit status: 0 ok, 2 bad arguments or a missing/unusable file.")
    p.add_argument("runs", nargs="+", metavar="RUN_OR_METRICS",
                   help="run folder or metrics.h5 path")
    p.add_argument("-o", "--output", required=True, metavar="OUT.png",
                   help="PNG file to write")
    p.add_argument("--labels", metavar="A,B,...",
                   help="comma-separated legend labels, one per run "
                   "(default: run folder name and algorithm)")
    p.add_argument("--title", metavar="T", help="figure title")
    p.add_argument("--size", default="1440x560", metavar="WxH",
                   help="image size in pixels (default 1440x560, at %d dpi)" % DPI)
    p.add_argument("--log-loss", action="store_true",
                   help="logarithmic y axis for the training loss")
    return p.parse_args()


def read_run(arg):
    """-> dict of series [rounds] (round, acc, loss; p10, p90 when present) plus
    path, name (run folder), algorithm, partial."""
    path, run_name, partial = runfiles.resolve(arg, "metrics.h5")
    with runfiles.open_h5(path) as h5:
        acc = runfiles.require_dataset(h5, "test_accuracy", path, "metrics")[:]
        rounds = runfiles.require_dataset(h5, "round", path, "metrics")[:]
        loss = runfiles.require_dataset(h5, "train_loss", path, "metrics")[:]
        status = runfiles.attr_str(h5, "status", "unknown")
        algorithm = runfiles.attr_str(h5, "algorithm")
        series = {"round": rounds, "acc": acc, "loss": loss}
        if isinstance(h5.get("local_loss"), runfiles.h5py.Dataset):
            series["local"] = h5["local_loss"][:]
        if all(isinstance(h5.get(f"client_accuracy/{q}"), runfiles.h5py.Dataset)
               for q in ("p10", "p90")):
            series["p10"] = h5["client_accuracy/p10"][:]
            series["p90"] = h5["client_accuracy/p90"][:]
    if partial:
        print(f"{os.path.basename(sys.argv[0])}: {arg}: reading {path} "
              f"(run not finished, status '{status}')", file=sys.stderr)
    # A live run appends dataset by dataset; keep the rounds every series has.
    n = min(len(v) for v in series.values())
    series = {k: np.asarray(v[:n], dtype=float) for k, v in series.items()}
    if n == 0:
        print(f"{os.path.basename(sys.argv[0])}: {path}: no rounds recorded yet",
              file=sys.stderr)
    return dict(series, path=path, name=run_name, algorithm=algorithm, partial=partial)


def default_labels(runs):
    """Run folder name plus algorithm; runs whose folders share a name (the same
    deck written under different output.dir) get the parent folder too."""
    names = [r["name"] for r in runs]
    labels = []
    for run in runs:
        name = run["name"]
        if names.count(name) > 1:
            parent = os.path.basename(os.path.dirname(os.path.dirname(os.path.abspath(run["path"]))))
            name = f"{parent}/{name}"
        labels.append(f"{name} ({run['algorithm']})" if run["algorithm"] else name)
    return labels


def main():
    args = parse_args()
    width, height = runfiles.parse_size(args.size)
    runs = [read_run(a) for a in args.runs]

    if args.labels is not None:
        labels = [s.strip() for s in args.labels.split(",")]
        if len(labels) != len(runs):
            runfiles.fail(f"--labels gives {len(labels)} labels for {len(runs)} runs")
    else:
        labels = default_labels(runs)
    labels = [lab + " (partial)" if r["partial"] else lab for lab, r in zip(labels, runs)]

    fig, (ax_acc, ax_loss) = plt.subplots(1, 2, figsize=(width / DPI, height / DPI), dpi=DPI)
    any_band = False
    for i, (run, label) in enumerate(zip(runs, labels)):
        color = f"C{i % 10}"
        rounds = run["round"]
        evaluated = np.isfinite(run["acc"])
        ax_acc.plot(rounds[evaluated], 100 * run["acc"][evaluated], color=color,
                    marker="o" if evaluated.sum() < 30 else None, markersize=3, label=label)
        if "p10" in run:
            banded = np.isfinite(run["p10"]) & np.isfinite(run["p90"])
            if banded.any():
                any_band = True
                ax_acc.fill_between(rounds[banded], 100 * run["p10"][banded],
                                    100 * run["p90"][banded], color=color, alpha=0.12,
                                    linewidth=0)
        finite = np.isfinite(run["loss"])
        ax_loss.plot(rounds[finite], run["loss"][finite], color=color,
                     marker="o" if finite.sum() < 30 else None, markersize=3, label=label)
        if "local" in run:
            fin = np.isfinite(run["local"])
            ax_loss.plot(rounds[fin], run["local"][fin], color=color, linestyle=":", alpha=0.6,
                         label=label + ", local epochs")

    ax_acc.set_xlabel("round")
    ax_acc.set_ylabel("test accuracy (%)")
    ax_acc.set_title("Test accuracy" + (" (band: client accuracy p10–p90)" if any_band else ""),
                     fontsize="medium")
    ax_acc.set_ylim(bottom=0)
    ax_loss.set_xlabel("round")
    ax_loss.set_ylabel("training loss (sample-weighted mean)")
    ax_loss.set_title("Training loss: global model (solid), clients' last local epoch (dotted)",
                      fontsize="medium")
    if args.log_loss:
        ax_loss.set_yscale("log")
        # labelled ticks at 1, 2, 5 x 10^k: a loss spanning about a decade would
        # otherwise get a single labelled tick
        ax_loss.yaxis.set_major_locator(matplotlib.ticker.LogLocator(subs=(1.0, 2.0, 5.0)))
        ax_loss.yaxis.set_major_formatter(matplotlib.ticker.FormatStrFormatter("%g"))
        ax_loss.yaxis.set_minor_formatter(matplotlib.ticker.NullFormatter())
    for ax in (ax_acc, ax_loss):
        ax.grid(True, alpha=0.3)
        ax.xaxis.get_major_locator().set_params(integer=True)
        if ax.get_legend_handles_labels()[0]:
            ax.legend(fontsize="small")
    if args.title:
        fig.suptitle(args.title)
    fig.tight_layout()
    try:
        fig.savefig(args.output, dpi=DPI)
    except OSError as e:
        runfiles.fail(f"{args.output}: cannot write ({e.strerror or e})")
    print(args.output)


if __name__ == "__main__":
    main()
