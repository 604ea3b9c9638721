#!/usr/bin/python3
"""Speedup and parallel efficiency of a scaling series of fedhpc runs.

A series is several run folders of the same experiment on different rank
counts (jobs/scaling writes them). From each run's profile.h5 (/time, seconds
per round, rank and phase) the time of a round is split along rank 0's path
through it, which is the run's wall time:

  local          mean over ranks of local-training time
  imbalance      max minus mean over ranks of local-training time: rank 0
                 waits for the slowest rank inside the reduction
  communication  rank 0's broadcast + reduce, less that wait
  server         rank 0's server step
  eval           rank 0's evaluation (its share, then the reduction of counts)
  io             rank 0's metrics gathering and writing

The six parts add up to rank 0's time (the sum of its phases) exactly. Each is
summed over rounds and divided by the rounds, so runs of different lengths
compare.

Strong scaling (the same problem on every rank count): speedup
S(P) = T(P0) / T(P) against the smallest rank count P0, efficiency
S(P) / (P / P0). Weak scaling (clients grow with ranks): efficiency
T(P0) / T(P), scaled speedup efficiency * P / P0. --mode auto (default) takes
weak when run.clients grows in proportion to the rank count, strong when it is
the same on every run.

--sim CSV (instead of or beside nothing else): the same tables and plot for
simulated series written by analysis/cluster_model.py sweep, one series per
schedule, collective, model, client sizes and payload in the files, with a
seventh part, move (moving clients to the ranks that run them, balanced
only). The plot's left panel then holds every series' efficiency, its right
one each part's share of the round for the static and balanced series of one
collective (reduce_bcast, today's engine, where present)."""

import argparse
import configparser
import csv
import os
import sys

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import runfiles  # noqa: E402

import matplotlib  # noqa: E402

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402

DPI = 120
PARTS = ["local", "imbalance", "communication", "server", "eval", "io"]


def parse_args():
    p = argparse.ArgumentParser(
        description="Speedup and efficiency tables (markdown on stdout, optional CSV) "
        "and a plot for a scaling series of fedhpc runs, with the time per round split "
        "into local training, load imbalance, communication, server step, evaluation "
        "and I/O.",
        epilog="Each RUN is a run folder with metrics.h5 and profile.h5 (jobs/scaling "
        "writes NAME-strong-pP or NAME-weak-pP). The runs must share algorithm and model "
        "and differ in rank count. Exit status: 0 ok, 2 bad arguments or a missing or "
        "unusable file.")
    p.add_argument("runs", nargs="*", metavar="RUN", help="run folders, one per rank count")
    p.add_argument("--sim", action="append", metavar="SWEEP.csv",
                   help="simulated series from analysis/cluster_model.py sweep instead of run "
                   "folders (repeatable; the files must share weak or strong)")
    p.add_argument("--collective", choices=["reduce_bcast", "allreduce"],
                   help="with --sim: only the series of this collective")
    p.add_argument("--mode", choices=["auto", "strong", "weak"], default="auto",
                   help="scaling kind (default auto: from run.clients against ranks)")
    p.add_argument("--csv", metavar="OUT.csv", help="also write the table as CSV")
    p.add_argument("--plot", metavar="OUT.png", help="also draw speedup/efficiency and "
                   "the time split per rank count")
    p.add_argument("--title", metavar="T", help="plot and table title")
    p.add_argument("--size", default="1440x560", metavar="WxH",
                   help="plot size in pixels (default 1440x560, at %d dpi)" % DPI)
    return p.parse_args()


def config_of(h5):
    """The resolved deck stored in metrics.h5 -> ConfigParser."""
    cp = configparser.ConfigParser(interpolation=None, strict=False,
                                   inline_comment_prefixes=(";", "#"))
    try:
        cp.read_string(runfiles.attr_str(h5, "config"))
    except configparser.Error:
        pass
    return cp


def read_run(arg):
    """-> dict with name, ranks, clients, rounds, algorithm, arch, and the six
    parts (seconds per round) plus total (rank 0's seconds per round)."""
    if not os.path.isdir(arg):
        runfiles.fail(f"{arg}: not a run folder (expected output.dir/NAME with metrics.h5 and profile.h5)")
    mpath, name, mpartial = runfiles.resolve(arg, "metrics.h5")
    ppath, _, ppartial = runfiles.resolve(arg, "profile.h5")
    with runfiles.open_h5(mpath) as m:
        runfiles.require_dataset(m, "round", mpath, "metrics")
        cfg = config_of(m)
        algorithm = runfiles.attr_str(m, "algorithm", "?")
        sampled = m["clients_sampled"][:] if "clients_sampled" in m else np.array([np.nan])
    with runfiles.open_h5(ppath) as p:
        time = np.asarray(runfiles.require_dataset(p, "time", ppath, "profile")[:], dtype=float)
        phases = [s for s in runfiles.attr_str(p, "phases").split(",") if s]
    if time.ndim != 3 or time.shape[0] == 0:
        runfiles.fail(f"{ppath}: 'time' has shape {time.shape}, expected [rounds>0, ranks, phases]")
    need = ["broadcast", "local", "reduce", "server", "eval", "io"]
    missing = [ph for ph in need if ph not in phases]
    if missing or len(phases) != time.shape[2]:
        runfiles.fail(f"{ppath}: phases '{','.join(phases)}' lack {','.join(missing) or 'a name per column'}")
    if mpartial or ppartial:
        print(f"{os.path.basename(sys.argv[0])}: {arg}: run not finished; using the rounds it recorded",
              file=sys.stderr)
    ph = {n: time[:, :, i] for i, n in enumerate(phases)}  # each [rounds, ranks]
    rounds = time.shape[0]
    loc = ph["local"]
    wait0 = loc.max(axis=1) - loc[:, 0]  # rank 0's wait for the slowest rank, per round
    # not clipped at 0: a round where another rank started local work before
    # rank 0 comes out slightly negative, and the parts still add up
    comm = ph["broadcast"][:, 0] + ph["reduce"][:, 0] - wait0
    parts = {
        "local": loc.mean(axis=1).sum(),
        "imbalance": (loc.max(axis=1) - loc.mean(axis=1)).sum(),
        "communication": comm.sum(),
        "server": ph["server"][:, 0].sum(),
        "eval": ph["eval"][:, 0].sum(),
        "io": ph["io"][:, 0].sum(),
    }
    parts = {k: v / rounds for k, v in parts.items()}
    total = time[:, 0, :].sum() / rounds
    clients = cfg.getint("run", "clients", fallback=0) if cfg.has_section("run") else 0
    arch = cfg.get("model", "arch", fallback="?") if cfg.has_section("model") else "?"
    return dict(name=name, path=arg, ranks=time.shape[1], clients=clients, rounds=rounds,
                sampled=float(np.mean(sampled)), algorithm=algorithm, arch=arch,
                total=total, **parts)


def detect_mode(runs):
    c = np.array([r["clients"] for r in runs], dtype=float)
    p = np.array([r["ranks"] for r in runs], dtype=float)
    if np.all(c == c[0]):
        return "strong"
    if np.all(c > 0) and np.allclose(c / p, c[0] / p[0], rtol=1e-9):
        return "weak"
    runfiles.fail("cannot tell strong from weak scaling: run.clients is "
                  + ", ".join(f"{int(x)} on {int(q)} ranks" for x, q in zip(c, p))
                  + " (neither equal nor proportional to ranks); give --mode")


def compute(runs, mode):
    base = runs[0]
    for r in runs:
        rel = r["ranks"] / base["ranks"]
        if mode == "strong":
            r["speedup"] = base["total"] / r["total"]
            r["efficiency"] = r["speedup"] / rel
        else:
            r["efficiency"] = base["total"] / r["total"]
            r["speedup"] = r["efficiency"] * rel  # scaled speedup


def fmt(x, digits=4):
    return f"{x:.{digits}f}"


def markdown(runs, mode, title, parts=PARTS, what=None):
    lines = []
    if title:
        lines += [f"### {title}", ""]
    kind = "speedup" if mode == "strong" else "scaled speedup"
    what = what or f"{mode} scaling, {runs[0]['algorithm']} / {runs[0]['arch']}"
    lines.append(f"{what}, baseline {runs[0]['ranks']} rank(s); seconds per round")
    lines.append("")
    lines.append(f"| ranks | clients | sampled/round | rounds | s/round | {kind} | efficiency |")
    lines.append("|---:|---:|---:|---:|---:|---:|---:|")
    for r in runs:
        lines.append(f"| {r['ranks']} | {r['clients']} | {r['sampled']:.0f} | {r['rounds']} | "
                     f"{fmt(r['total'])} | {r['speedup']:.2f} | {r['efficiency']:.2f} |")
    lines.append("")
    lines.append("| ranks | " + " | ".join(parts) + " | total |")
    lines.append("|---:|" + "---:|" * (len(parts) + 1))
    for r in runs:
        lines.append(f"| {r['ranks']} | " + " | ".join(fmt(r[k]) for k in parts)
                     + f" | {fmt(r['total'])} |")
    lines.append("")
    lines.append("| ranks | " + " | ".join(f"{k} %" for k in parts) + " |")
    lines.append("|---:|" + "---:|" * len(parts))
    for r in runs:
        tot = r["total"] if r["total"] > 0 else 1.0
        lines.append(f"| {r['ranks']} | " + " | ".join(f"{100 * r[k] / tot:.1f}" for k in parts) + " |")
    return "\n".join(lines)


def write_csv(path, runs, mode):
    cols = ["run", "mode", "ranks", "clients", "sampled_per_round", "rounds", "seconds_per_round",
            "speedup", "efficiency"] + [f"{k}_s" for k in PARTS]
    try:
        with open(path, "w", newline="") as f:
            w = csv.writer(f)
            w.writerow(cols)
            for r in runs:
                w.writerow([r["name"], mode, r["ranks"], r["clients"], f"{r['sampled']:.6g}", r["rounds"],
                            f"{r['total']:.9g}", f"{r['speedup']:.6g}", f"{r['efficiency']:.6g}"]
                           + [f"{r[k]:.9g}" for k in PARTS])
    except OSError as e:
        runfiles.fail(f"{path}: cannot write ({e.strerror or e})")


def plot(path, runs, mode, title, size):
    width, height = size
    fig, (ax1, ax2) = plt.subplots(1, 2, figsize=(width / DPI, height / DPI), dpi=DPI)
    p = np.array([r["ranks"] for r in runs], dtype=float)
    s = np.array([r["speedup"] for r in runs])
    e = np.array([r["efficiency"] for r in runs])
    ax1.plot(p, s, "o-", color="C0", label="speedup" if mode == "strong" else "scaled speedup")
    ax1.plot(p, p / p[0], "--", color="gray", linewidth=1, label="ideal")
    ax1.set_xlabel("MPI ranks")
    ax1.set_ylabel("speedup (vs %d rank%s)" % (p[0], "s" if p[0] > 1 else ""))
    ax1.set_xscale("log", base=2)
    ax1.set_xticks(p)
    ax1.set_xticklabels([str(int(x)) for x in p])
    ax1.grid(True, alpha=0.3)
    axe = ax1.twinx()
    axe.plot(p, e, "s:", color="C3", label="efficiency")
    axe.set_ylabel("parallel efficiency")
    axe.set_ylim(0, max(1.1, e.max() * 1.1))
    h1, l1 = ax1.get_legend_handles_labels()
    h2, l2 = axe.get_legend_handles_labels()
    ax1.legend(h1 + h2, l1 + l2, fontsize="small", loc="upper left")
    ax1.set_title(f"{mode} scaling", fontsize="medium")

    x = np.arange(len(runs))
    bottom = np.zeros(len(runs))
    for j, k in enumerate(PARTS):
        vals = np.array([r[k] for r in runs])
        ax2.bar(x, vals, 0.6, bottom=bottom, label=k, color=f"C{j}", linewidth=0)
        bottom += vals
    ax2.set_xticks(x)
    ax2.set_xticklabels([f"{r['ranks']}" for r in runs])
    ax2.set_xlabel("MPI ranks")
    ax2.set_ylabel("seconds per round (rank 0's path)")
    ax2.set_ylim(0, bottom.max() * 1.1 if bottom.max() > 0 else 1)
    ax2.grid(True, axis="y", alpha=0.3)
    ax2.set_axisbelow(True)
    handles, labels = ax2.get_legend_handles_labels()
    ax2.legend(handles[::-1], labels[::-1], fontsize="small", loc="upper left",
               bbox_to_anchor=(1.01, 1.0))
    ax2.set_title("time per round", fontsize="medium")
    if title:
        fig.suptitle(title, fontsize="medium")
    fig.tight_layout()
    try:
        fig.savefig(path, dpi=DPI)
    except OSError as e:
        runfiles.fail(f"{path}: cannot write ({e.strerror or e})")


# ---- simulated series (analysis/cluster_model.py sweep) ----------------------

SIM_PARTS = ["local", "imbalance", "move", "communication", "server", "io"]
SIM_KEYS = ["mode", "schedule", "collective", "model", "sizes", "payload_floats"]


def read_sim(paths):
    """Sweep CSVs -> (mode, [series]); a series is a list of records (the keys
    of read_run's, plus move) over rank counts, one per SIM_KEYS value."""
    need = SIM_KEYS + ["ranks", "clients", "sampled", "rounds", "seconds_per_round"] + [f"{k}_s" for k in SIM_PARTS]
    groups = {}
    for path in paths:
        try:
            with open(path, newline="") as f:
                rows = list(csv.DictReader(f))
        except OSError as e:
            runfiles.fail(f"{path}: cannot read ({e.strerror or e})")
        if not rows or any(c not in rows[0] for c in need):
            runfiles.fail(f"{path}: not a cluster_model.py sweep CSV (columns {', '.join(need)})")
        for row in rows:
            try:
                rec = dict(ranks=int(row["ranks"]), clients=int(row["clients"]), sampled=float(row["sampled"]),
                           rounds=int(row["rounds"]), total=float(row["seconds_per_round"]),
                           **{k: float(row[f"{k}_s"]) for k in SIM_PARTS}, eval=0.0)
            except ValueError:
                runfiles.fail(f"{path}: a row for {row.get('ranks', '?')} ranks holds a value that is not a number")
            key = tuple(row[k] for k in SIM_KEYS)
            rec.update(zip(SIM_KEYS, key), algorithm=f"{key[1]}, {key[2]}", arch=f"{key[3]} ({key[4]} sizes)",
                       name=path, path=path)
            groups.setdefault(key, {})
            if rec["ranks"] in groups[key]:
                runfiles.fail(f"{path}: two rows for {rec['ranks']} ranks in one series ({', '.join(key)})")
            groups[key][rec["ranks"]] = rec
    modes = {k[0] for k in groups}
    if len(modes) > 1:
        runfiles.fail("the sweeps mix weak and strong scaling; give the files of one kind")
    order = sorted(groups, key=lambda k: (k[2] != "reduce_bcast", k[2], k[3], k[4], int(k[5]), k[1] != "static"))
    series = [sorted(groups[k].values(), key=lambda r: r["ranks"]) for k in order]
    for sr in series:
        if len(sr) < 2:
            runfiles.fail(f"series {', '.join(sr[0][k] for k in SIM_KEYS)} has one rank count; a series needs two")
    return modes.pop(), series


def sim_label(sr, series):
    """The fields that tell this series from the others."""
    vary = [k for k in SIM_KEYS[1:] if len({s[0][k] for s in series}) > 1] or ["schedule"]
    return ", ".join(sr[0][k] + (" floats" if k == "payload_floats" else "") for k in vary)


def sim_markdown(mode, series, title):
    out = []
    for sr in series:
        r0 = sr[0]
        what = (f"simulated {mode} scaling, run.schedule = {r0['schedule']}, {r0['collective']}, "
                f"{r0['model']} ({r0['payload_floats']} floats), {r0['sizes']} client sizes, {r0['rounds']} rounds")
        out.append(markdown(sr, mode, title if sr is series[0] else None, SIM_PARTS, what))
    # side by side: seconds per round and efficiency of every series
    head = [sim_label(sr, series) for sr in series]
    ranks = sorted({r["ranks"] for sr in series for r in sr})
    lines = ["", "| ranks | " + " | ".join(f"{h}: s/round | eff." for h in head) + " |",
             "|---:|" + "---:|---:|" * len(series)]
    for p in ranks:
        cells = []
        for sr in series:
            r = next((x for x in sr if x["ranks"] == p), None)
            cells.append(f"{fmt(r['total'])} | {r['efficiency']:.2f}" if r else " | ")
        lines.append(f"| {p} | " + " | ".join(cells) + " |")
    return "\n\n".join(out) + "\n" + "\n".join(lines)


def sim_csv(path, mode, series):
    cols = SIM_KEYS + ["ranks", "clients", "sampled", "seconds_per_round", "speedup", "efficiency"] + \
        [f"{k}_s" for k in SIM_PARTS]
    try:
        with open(path, "w", newline="") as f:
            w = csv.writer(f)
            w.writerow(cols)
            for sr in series:
                for r in sr:
                    w.writerow([r[k] for k in SIM_KEYS] + [r["ranks"], r["clients"], f"{r['sampled']:.6g}",
                                                           f"{r['total']:.9g}", f"{r['speedup']:.6g}",
                                                           f"{r['efficiency']:.6g}"]
                               + [f"{r[k]:.9g}" for k in SIM_PARTS])
    except OSError as e:
        runfiles.fail(f"{path}: cannot write ({e.strerror or e})")


def sim_plot(path, mode, series, title, size):
    width, height = size
    fig, (ax1, ax2) = plt.subplots(1, 2, figsize=(width / DPI, height / DPI), dpi=DPI)
    styles = {"static": "o-", "balanced": "s--"}
    for i, sr in enumerate(series):
        p = [r["ranks"] for r in sr]
        ax1.plot(p, [r["efficiency"] for r in sr], styles.get(sr[0]["schedule"], "^:"),
                 color=f"C{i // 2 if len(series) > 2 else i}", label=sim_label(sr, series), markersize=4)
    allp = sorted({r["ranks"] for sr in series for r in sr})
    ax1.set_xscale("log", base=2)
    ax1.set_xticks(allp)
    ax1.set_xticklabels([str(x) for x in allp], fontsize="small")
    ax1.set_xlabel("MPI ranks")
    ax1.set_ylabel("parallel efficiency" + (" (T(P0)/T(P))" if mode == "weak" else " (speedup / (P/P0))"))
    ax1.set_ylim(0, 1.05)
    ax1.grid(True, alpha=0.3)
    ax1.legend(fontsize="x-small", loc="lower left")
    ax1.set_title(f"simulated {mode} scaling", fontsize="medium")
    if len({sr[0]["payload_floats"] for sr in series}) > 1:
        # payloads compared: the collectives' share of the round per series
        for i, sr in enumerate(series):
            ax2.plot([allp.index(r["ranks"]) for r in sr],
                     [100 * r["communication"] / r["total"] if r["total"] > 0 else 0 for r in sr],
                     styles.get(sr[0]["schedule"], "^:"), color=f"C{i // 2 if len(series) > 2 else i}",
                     label=sim_label(sr, series), markersize=4)
        ax2.set_xticks(range(len(allp)))
        ax2.set_xticklabels([str(x) for x in allp], fontsize="small")
        ax2.set_xlabel("MPI ranks")
        ax2.set_ylabel("communication, % of the round")
        ax2.set_ylim(0, 100)
        ax2.axhline(50, color="gray", linewidth=0.8, linestyle=":")
        ax2.grid(True, alpha=0.3)
        ax2.legend(fontsize="x-small", loc="upper left")
        ax2.set_title("share of the collectives", fontsize="medium")
        return finish_plot(fig, path, title)
    bars = [sr for sr in series if sr[0]["collective"] == series[0][0]["collective"]
            and sr[0]["model"] == series[0][0]["model"] and sr[0]["sizes"] == series[0][0]["sizes"]
            and sr[0]["payload_floats"] == series[0][0]["payload_floats"]][:2]
    wbar = 0.8 / len(bars)
    for j, sr in enumerate(bars):
        x = np.array([allp.index(r["ranks"]) for r in sr]) + (j - (len(bars) - 1) / 2) * wbar
        bottom = np.zeros(len(sr))
        for i, k in enumerate(SIM_PARTS):
            frac = np.array([100 * r[k] / r["total"] if r["total"] > 0 else 0 for r in sr])
            ax2.bar(x, frac, wbar * 0.95, bottom=bottom, color=f"C{i}", linewidth=0,
                    hatch="//" if sr[0]["schedule"] == "balanced" else None,
                    label=k if j == 0 else None)
            bottom += frac
    ax2.set_xticks(range(len(allp)))
    ax2.set_xticklabels([str(x) for x in allp], fontsize="small")
    ax2.set_xlabel("MPI ranks" + ("  (left bar static, hatched balanced)" if len(bars) == 2 else ""))
    ax2.set_ylabel("share of the round (%)")
    ax2.set_ylim(0, 100)
    handles, labels = ax2.get_legend_handles_labels()
    ax2.legend(handles[::-1], labels[::-1], fontsize="small", loc="upper left", bbox_to_anchor=(1.01, 1.0))
    ax2.set_title(f"time split, {bars[0][0]['collective']}, {bars[0][0]['sizes']}", fontsize="medium")
    finish_plot(fig, path, title)


def finish_plot(fig, path, title):
    if title:
        fig.suptitle(title, fontsize="medium")
    fig.tight_layout()
    try:
        fig.savefig(path, dpi=DPI)
    except OSError as e:
        runfiles.fail(f"{path}: cannot write ({e.strerror or e})")


def main_sim(args, size):
    if args.runs:
        runfiles.fail("give run folders or --sim files, not both")
    mode, series = read_sim(args.sim)
    if args.collective:
        series = [sr for sr in series if sr[0]["collective"] == args.collective]
        if not series:
            runfiles.fail(f"--collective {args.collective}: no such series in the sweeps")
    if args.mode != "auto" and args.mode != mode:
        runfiles.fail(f"--mode {args.mode}, but the sweeps are {mode} scaling")
    for sr in series:
        compute(sr, mode)
    print(sim_markdown(mode, series, args.title))
    if args.csv:
        sim_csv(args.csv, mode, series)
    if args.plot:
        sim_plot(args.plot, mode, series, args.title, size)


def main():
    args = parse_args()
    size = runfiles.parse_size(args.size) if args.plot else None
    if args.sim:
        return main_sim(args, size)
    if len(args.runs) < 2:
        runfiles.fail("a scaling series needs at least two runs on different rank counts")
    runs = sorted((read_run(a) for a in args.runs), key=lambda r: r["ranks"])
    ranks = [r["ranks"] for r in runs]
    if len(set(ranks)) != len(ranks):
        runfiles.fail("two runs have the same rank count (" + ", ".join(
            f"{r['name']}: {r['ranks']}" for r in runs) + "); give one run per rank count")
    kinds = {(r["algorithm"], r["arch"]) for r in runs}
    if len(kinds) > 1:
        runfiles.fail("the runs are not one experiment: algorithm/model "
                      + ", ".join(sorted(f"{a}/{m}" for a, m in kinds)))
    mode = detect_mode(runs) if args.mode == "auto" else args.mode
    compute(runs, mode)
    print(markdown(runs, mode, args.title))
    if args.csv:
        write_csv(args.csv, runs, mode)
    if args.plot:
        plot(args.plot, runs, mode, args.title, size)


if __name__ == "__main__":
    main()
