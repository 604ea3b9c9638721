#!/usr/bin/env python3
"""run.schedule = static vs balanced: local-phase imbalance and round time.

    OPENBLAS_NUM_THREADS=1 scripts/schedule_bench.py [--reps 3] [--out /tmp/schedule-bench]

Runs input/quickstart.ini (30 rounds, reduced from 200) and
input/synthetic_1000.ini (20 rounds) on 2 and 4 ranks (--oversubscribe), each
schedule, --reps times, evaluating only after the last round, and prints per
configuration the medians over the repetitions of:
  local max/mean  sum over rounds 2.. of the slowest rank's local phase over
                  the sum of the ranks' mean (profile.h5 time[:, :, local])
  train max/mean  the same for the time training clients only (balanced: the
                  run's last line, round 1 included; the local phase also
                  holds moves and a host's wait for returned state, which
                  make it look more even than the training was; static: the
                  local phase, which is all training)
  round s         median wall_time over rounds 2..
  moved/round, MB/round, move s/round   schedule/* of metrics.h5 (balanced)
  model dealt, model static   balanced: the cost model's local max/mean over
                  the run (its last line), dealt and as static would have it:
                  what ranks that own their cores would see
Round 1 is left out: the balanced schedule's first round runs on prior
estimates (schedule.h). The docs' table (docs/scaling.md, "Schedules") is
this script's output."""
import argparse
import os
import re
import statistics
import subprocess
import sys

import h5py
import numpy as np

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
DECKS = [("quickstart", 30), ("synthetic_1000", 20)]


def run(deck, rounds, np_, sched, rep, out):
    name = f"{deck}_np{np_}_{sched}_{rep}"
    cmd = ["mpirun", "--allow-run-as-root", "--oversubscribe", "-np", str(np_), "-x", "OPENBLAS_NUM_THREADS=1",
           f"{ROOT}/build/fedhpc", "run", f"{ROOT}/input/{deck}.ini", "--set", f"run.rounds={rounds}",
           "--set", f"run.eval_every={rounds}", "--set", f"run.schedule={sched}", "--set", f"output.dir={out}",
           "--set", f"output.name={name}"]
    log = subprocess.run(cmd, check=True, capture_output=True, text=True).stdout
    # balanced: the cost model's local max/mean over the run (schedule.c's last line), dealt and static
    est = re.search(r"estimated local max/mean ([0-9.]+) \(static: ([0-9.]+)\) from the cost model, measured ([0-9.]+)",
                    log)
    d = f"{out}/{name}"
    with h5py.File(f"{d}/profile.h5", "r") as f:
        ph = f.attrs["phases"]
        phases = (ph.decode() if isinstance(ph, bytes) else ph).split(",")
        loc = f["time"][1:, :, phases.index("local")]  # [R-1, P]
    with h5py.File(f"{d}/metrics.h5", "r") as f:
        wall = f["wall_time"][1:]
        mv = [f[f"schedule/{k}"][1:].mean() for k in ("moved_clients", "move_bytes", "move_seconds")]
    local = loc.max(axis=1).sum() / loc.mean(axis=1).sum()
    nan = float("nan")
    return [local, float(est.group(3)) if est else local, float(np.median(wall)), mv[0], mv[1] / 1e6, mv[2],
            float(est.group(1)) if est else nan, float(est.group(2)) if est else nan]


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--reps", type=int, default=3)
    ap.add_argument("--out", default="/tmp/schedule-bench")
    a = ap.parse_args()
    print(f"{'deck':<16}{'ranks':>6} {'schedule':<9}{'local max/mean':>15}{'train max/mean':>15}{'round s':>9}"
          f"{'moved/round':>12}"
          f"{'MB/round':>9}{'move s/round':>13}{'model dealt':>12}{'model static':>13}")
    for deck, rounds in DECKS:
        for np_ in (2, 4):
            for sched in ("static", "balanced"):
                rows = [run(deck, rounds, np_, sched, r, a.out) for r in range(a.reps)]
                med = [statistics.median(c) for c in zip(*rows)]
                print(f"{deck:<16}{np_:>6} {sched:<9}{med[0]:>15.3f}{med[1]:>15.3f}{med[2]:>9.4f}{med[3]:>12.1f}"
                      f"{med[4]:>9.3f}{med[5]:>13.5f}{med[6]:>12.3f}{med[7]:>13.3f}", flush=True)


if __name__ == "__main__":
    sys.exit(main())
