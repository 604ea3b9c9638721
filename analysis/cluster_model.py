#!/usr/bin/python3
"""A replay model of fedhpc's training rounds on a described cluster: the
round's sampled clients, their compute cost, where they run (run.schedule
static or balanced), and the collectives, each priced from a platform file
(cluster-configs/platforms/*.ini). It predicts seconds per round on rank
counts this machine does not have; `validate` compares it with real runs.

Round t on P ranks (training rounds; evaluation rounds are left out):

  T = bcast(4 n) + local + reduce(8 (n + 1)) + server + io     (reduce_bcast)
  T =              local + allreduce(8 (n + 1)) + server + io  (allreduce)

  n        the payload in floats (the model's parameters for FedAvg); the
           reduction carries it as int64 fixed point plus the weight sum
           (docs/outputs.md, comm/reduce_bytes)
  local    the largest rank's work: sum over the clients it runs of
           c_k = flops_row x rows_k x epochs / flop_rate + client_overhead,
           plus, under balanced, the cost of moving the clients it runs but
           does not host. Ranks beyond the cores of a node share them
           (processor sharing: k busy ranks on C cores run at min(1, C/k)).
  static   client k runs on the rank that hosts it: worker w of W hosts
           [w K / W, (w + 1) K / W) (src/fl/client_map.c)
  balanced the engine's rule (src/fl/schedule.c): longest processing time
           first with each move priced, moves that do not set the makespan
           sent home, and every client home when dealing does not shorten the
           round (see balanced()). A client run away from its host costs one
           message there (its rows, train and test, and its state) and one
           back (its state): alpha + beta x bytes each, inter-node parameters
           when the two ranks are on different nodes
  server   the server step on rank 0 (on every rank with allreduce), linear in
           n; io rank 0's metrics row plus a gather of 6 doubles per rank

Collectives are the cheaper of one flat level over all P ranks (at the larger
alpha and beta of the two links once there are two nodes) and an SMP-aware two-level
form (ranks placed in node-sized blocks):
  bcast     inter-node among node leaders, then inside each node
  reduce    inside each node, then among leaders
  allreduce inside each node (reduce), among leaders (allreduce), inside (bcast)
each level priced by the Hockney model (alpha + beta m per message, gamma m
per reduced byte) as the cheaper of two algorithms an MPI library chooses
between (Thakur, Rabenseifner and Gropp, IJHPCA 19(1), 2005):
  bcast      binomial tree  ceil(lg p)(alpha + m beta)
             scatter + ring allgather  (ceil(lg p) + p - 1) alpha + 2 (p-1)/p m beta
  reduce,    binomial tree / recursive doubling  ceil(lg p)(alpha + m beta + m gamma)
  allreduce  Rabenseifner  2 ceil(lg p) alpha + 2 (p-1)/p m beta + (p-1)/p m gamma

Commands:
  validate  calibrate flop_rate, client_overhead, server and io on the 1-rank
            runs of a series made by jobs/scaling --here, predict the others
            (same deck, more ranks) and print predicted vs measured seconds
            per round
  sweep     weak or strong scaling to many ranks for a deck's clients and a
            model, static and balanced, reduce_bcast and allreduce: a CSV for
            analysis/scaling.py --sim

Everything that fails is one line on stderr and exit status 2."""

import argparse
import configparser
import csv
import functools
import heapq
import math
import os
import statistics
import sys

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import fl_replay  # noqa: E402
import runfiles  # noqa: E402

import numpy as np  # noqa: E402

# Models of `fedhpc model`: parameters and training FLOPs per row (forward +
# backward, batch 1), and the bytes of one data row as the engine holds it
# (float32 features + int32 label). Image models on 3x32x32 inputs; fedhpc
# prints their GFLOP to 3 decimals, so theirs carry that rounding.
MODELS = {
    "mlp": dict(params=54410, flops_row=0.300e6, row_bytes=60 * 4 + 4,
                note="MLP 60-200-200-10 of the quick start (0.108 + 0.192 MFLOP per row)"),
    "resnet8": dict(params=1235274, flops_row=0.082e9, row_bytes=3 * 32 * 32 * 4 + 4,
                    note="resnet8 on 3x32x32 (0.029 + 0.053 GFLOP per row)"),
    "vgg11_bn": dict(params=9231114, flops_row=0.914e9, row_bytes=3 * 32 * 32 * 4 + 4,
                     note="vgg11_bn on 3x32x32 (0.306 + 0.608 GFLOP per row)"),
}
PARTS = ["local", "imbalance", "move", "communication", "server", "io"]


def fail(msg):
    runfiles.fail(msg)


# ---- platform ---------------------------------------------------------------

def read_platform(path):
    """An INI platform file -> dict of floats (see cluster-configs/platforms)."""
    cp = configparser.ConfigParser(interpolation=None, inline_comment_prefixes=(";", "#"))
    try:
        with open(path) as f:
            cp.read_file(f)
    except OSError as e:
        fail(f"{path}: cannot read the platform file ({e.strerror or e})")
    except configparser.Error as e:
        fail(f"{path}: not an INI file ({str(e).splitlines()[0]})")
    need = {"platform": ["nodes", "cores_per_node"],
            "compute": ["flop_rate", "client_overhead", "server_per_float", "io_time"],
            "intra": ["latency", "bandwidth"], "inter": ["latency", "bandwidth"],
            "reduce": ["gamma"]}
    plat = {"name": cp.get("platform", "name", fallback=os.path.basename(path))}
    for sec, keys in need.items():
        for k in keys:
            if not cp.has_option(sec, k):
                fail(f"{path}: [{sec}] {k} is missing; every platform file sets "
                     + ", ".join(f"[{s}] {', '.join(v)}" for s, v in need.items()))
            try:
                v = float(cp.get(sec, k))
            except ValueError:
                fail(f"{path}: [{sec}] {k} = '{cp.get(sec, k)}' is not a number")
            if not (v >= 0 and math.isfinite(v)) or (k in ("nodes", "cores_per_node", "flop_rate",
                                                           "bandwidth") and v <= 0):
                fail(f"{path}: [{sec}] {k} = {v:g} is out of range (must be positive)")
            plat[f"{sec}.{k}"] = v
    return plat


# ---- collectives ------------------------------------------------------------

def lg(p):
    return math.ceil(math.log2(p)) if p > 1 else 0


def level_cost(kind, p, m, alpha, beta, gamma):
    """One level of a collective among p processes on m bytes (seconds)."""
    if p <= 1 or m < 0:
        return 0.0
    L, f = lg(p), (p - 1) / p
    if kind == "bcast":
        return min(L * (alpha + m * beta), (L + p - 1) * alpha + 2 * f * m * beta)
    # reduce and allreduce: binomial / recursive doubling against Rabenseifner
    return min(L * (alpha + m * beta + m * gamma), 2 * L * alpha + 2 * f * m * beta + f * m * gamma)


def placement(P, plat):
    """Ranks per node c and nodes N for P ranks placed in node-sized blocks."""
    c = int(min(P, plat["platform.cores_per_node"]))
    return c, int(math.ceil(P / c))


def collective(kind, P, m, plat):
    """Seconds of bcast, reduce or allreduce of m bytes on P ranks: the cheaper
    of the two-level form and one flat level over all P ranks (priced at the
    slowest link present: the larger alpha and the larger beta)."""
    c, N = placement(P, plat)
    g = plat["reduce.gamma"]
    ia, ib = plat["intra.latency"], 1.0 / plat["intra.bandwidth"]
    ea, eb = plat["inter.latency"], 1.0 / plat["inter.bandwidth"]
    fa, fb = (max(ia, ea), max(ib, eb)) if N > 1 else (ia, ib)
    flat = level_cost(kind, P, m, fa, fb, g)
    if kind == "bcast":
        two = level_cost("bcast", N, m, ea, eb, g) + level_cost("bcast", c, m, ia, ib, g)
    elif kind == "reduce":
        two = level_cost("reduce", c, m, ia, ib, g) + level_cost("reduce", N, m, ea, eb, g)
    elif kind == "allreduce":
        two = (level_cost("reduce", c, m, ia, ib, g) + level_cost("allreduce", N, m, ea, eb, g)
               + level_cost("bcast", c, m, ia, ib, g))
    else:
        raise ValueError(kind)
    return min(flat, two)


def gather(P, m, plat):
    """Binomial gather of m bytes from each of P ranks to rank 0 (two levels):
    lg(c) alpha + (c - 1) m beta inside a node, then lg(N) alpha + (N - 1) c m
    beta among leaders."""
    c, N = placement(P, plat)
    t = lg(c) * plat["intra.latency"] + (c - 1) * m / plat["intra.bandwidth"]
    if N > 1:
        t += lg(N) * plat["inter.latency"] + (N - 1) * c * m / plat["inter.bandwidth"]
    return t


def p2p(src, dst, m, P, plat):
    """One message of m bytes from rank src to rank dst."""
    c, _ = placement(P, plat)
    lvl = "intra" if src // c == dst // c else "inter"
    return plat[f"{lvl}.latency"] + m / plat[f"{lvl}.bandwidth"]


# ---- schedules --------------------------------------------------------------

def block_owner(K, P):
    """[K] host rank of each client: worker w hosts [w K / P, (w + 1) K / P)."""
    owner = np.empty(K, dtype=int)
    for w in range(P):
        owner[K * w // P:K * (w + 1) // P] = w
    return owner


def lpt(clients, cost, P):
    """Plain longest processing time first -> {client: rank}: clients by cost
    descending, ties by smaller id; each to the least loaded rank, ties by
    lower rank (Graham 1969; balanced() is this with moves priced, a return
    pass and a fallback to static)."""
    heap = [(0.0, q) for q in range(P)]  # (load, rank): the heap's order is the tie rule
    where = {}
    for k in sorted(clients, key=lambda k: (-cost[k], k)):
        load, r = heapq.heappop(heap)
        where[k] = r
        heapq.heappush(heap, (load + cost[k], r))
    return where


def ps_makespan(work, cores):
    """Finish time of the last of len(work) processes sharing `cores` cores
    equally (each runs at min(1, cores / busy) until it is done)."""
    w = sorted(x for x in work if x > 0)
    t, done, n = 0.0, 0.0, len(w)
    for i, x in enumerate(w):
        busy = n - i
        speed = min(1.0, cores / busy)
        t += (x - done) / speed
        done = x
    return t


# ---- one round --------------------------------------------------------------

def move_costs(h, there, back, P, plat):
    """[P] seconds of running a client hosted by h on each rank: its bundle
    there and its state back (0 on h itself)."""
    c, _ = placement(P, plat)
    same = np.arange(P) // c == h // c
    a = np.where(same, plat["intra.latency"], plat["inter.latency"])
    bw = np.where(same, plat["intra.bandwidth"], plat["inter.bandwidth"])
    mv = 2 * a + (there + back) / bw
    mv[h] = 0.0
    return mv


def balanced(clients, cost, move_bytes, owner, P, plat):
    """run.schedule = balanced as the engine deals a round (src/fl/schedule.c,
    fh_lpt_assign) -> {client: rank}:
      1. clients by cost descending, ties by smaller id; each to the rank where
         it would end first, its move counted off its host; the host wins ties,
         then the lower rank
      2. cheapest first, a moved client goes home when that does not raise the
         makespan (fewer bytes for the same round)
      3. if the makespan is not below every client at home, every client at home
    The engine prices a move per client (measured seconds per byte); here it is
    priced per pair of ranks (inside a node or across)."""
    order = sorted(clients, key=lambda k: (-cost[k], k))
    load = np.zeros(P)
    where, mv = {}, {}
    for k in order:
        h = int(owner[k])
        mv[k] = move_costs(h, *move_bytes[k], P, plat)
        end = load + cost[k] + mv[k]
        r = h if end[h] <= end.min() else int(np.argmin(end))
        where[k] = r
        load[r] = end[r]
    mk = load.max()
    for k in reversed(order):
        h, r = int(owner[k]), where[k]
        if r != h and load[h] + cost[k] <= mk:
            load[r] -= cost[k] + mv[k][r]
            load[h] += cost[k]
            where[k] = h
    home = np.zeros(P)
    for k in clients:
        home[int(owner[k])] += cost[k]
    if load.max() >= home.max():
        return {k: int(owner[k]) for k in clients}
    return where


def rank_work(sampled, cost, move_bytes, owner, P, plat, schedule):
    """-> (comp [P], move [P]): seconds of local training and of moving
    clients in, per rank, for one round's sampled clients. move_bytes[k]:
    (bytes to the executing rank, bytes back)."""
    if schedule == "static":
        where = {k: int(owner[k]) for k in sampled}
    else:
        where = balanced(sampled, cost, move_bytes, owner, P, plat)
    comp = np.zeros(P)
    move = np.zeros(P)
    for k in sampled:
        r = where[k]
        comp[r] += cost[k]
        h = int(owner[k])
        if r != h:
            there, back = move_bytes[k]
            move[r] += p2p(h, r, there, P, plat) + p2p(r, h, back, P, plat)
    return comp, move


def round_parts(sampled, cost, move_bytes, owner, P, plat, schedule, coll, n_floats, share=None):
    """Seconds of one training round, split like analysis/scaling.py: local
    (mean over ranks of compute), imbalance (the makespan's excess over it,
    processor sharing included), move, communication, server, io. share: a
    measured fraction of a core each rank got (a loaded machine) instead of
    processor sharing on the platform's cores."""
    comp, move = rank_work(sampled, cost, move_bytes, owner, P, plat, schedule)
    if share:
        comp, move = comp / share, move / share
    c, N = placement(P, plat)
    cores = plat["platform.cores_per_node"]
    busy = comp + move
    span = busy.max() if share else max(ps_makespan(busy[i * c:(i + 1) * c], cores) for i in range(N))
    mean = comp.mean()
    mv = move[np.argmax(busy)] if span > 0 else 0.0
    nbytes = 8.0 * (n_floats + 1)
    if coll == "allreduce":
        comm = collective("allreduce", P, nbytes, plat)
    else:
        comm = collective("bcast", P, 4.0 * n_floats, plat) + collective("reduce", P, nbytes, plat)
    io = plat["compute.io_time"] + gather(P, 6 * 8.0, plat)
    imb = span - mean - mv
    if abs(imb) <= 1e-12 * span:  # rounding of equal loads
        imb = 0.0
    return dict(local=mean, imbalance=imb, move=mv, communication=comm,
                server=plat["compute.server_per_float"] * n_floats, io=io)


def client_costs(rows, epochs, flops_row, plat):
    """[K] seconds of each client's local update on one rank."""
    r = np.asarray(rows, dtype=float)
    return r * epochs * flops_row / plat["compute.flop_rate"] + plat["compute.client_overhead"]


@functools.lru_cache(maxsize=4096)
def sampled_round(seed, K, m, t):
    """fl_replay.sampled, kept: every schedule and collective replays the same rounds."""
    return tuple(fl_replay.sampled(seed, K, m, t))


def simulate(d, P, plat, schedule, coll, n_floats, flops_row, row_bytes, state_floats, rounds, share=None):
    """Mean parts over `rounds` training rounds of deck d (fl_replay.deck_rounds)."""
    cost = client_costs(d["rows"], d["epochs"], flops_row, plat)
    mb = [(4.0 * state_floats + row_bytes * (r + q), 4.0 * state_floats) for r, q in zip(d["rows"], d["test_rows"])]
    owner = block_owner(d["K"], P)
    acc = dict.fromkeys(PARTS, 0.0)
    for t in rounds:
        s = sampled_round(d["seed"], d["K"], d["m"], t)
        for k, v in round_parts(s, cost, mb, owner, P, plat, schedule, coll, n_floats, share).items():
            acc[k] += v
    return {k: v / len(rounds) for k, v in acc.items()}


# ---- validate ---------------------------------------------------------------

def load_run(path):
    """A run folder -> dict: P, the replayed deck d, profile time [R, P, 6],
    flops, cpu (TASK-CLOCK seconds [R, P, 6] or None) and the training rounds."""
    if not os.path.isdir(path):
        fail(f"{path}: not a run folder (expected one with config.ini, metrics.h5 and profile.h5)")
    ppath, name, partial = runfiles.resolve(path, "profile.h5")
    if partial:
        fail(f"{path}: the run did not finish (only profile.h5.partial); validate finished runs")
    cp = configparser.ConfigParser(interpolation=None, strict=False, inline_comment_prefixes=(";", "#"))
    cfg_path = os.path.join(path, "config.ini")
    try:
        with open(cfg_path) as f:
            cp.read_file(f)
    except (OSError, configparser.Error) as e:
        fail(f"{cfg_path}: cannot read the run's resolved deck ({e})")
    cpu = None
    with runfiles.open_h5(ppath) as p:
        time = np.asarray(runfiles.require_dataset(p, "time", ppath, "profile")[:], dtype=float)
        flops = np.asarray(runfiles.require_dataset(p, "flops", ppath, "profile")[:], dtype=float)
        phases = [s for s in runfiles.attr_str(p, "phases").split(",") if s]
        events = [s for s in runfiles.attr_str(p, "events").split(",") if s]
        first = int(p.attrs.get("first_round", 1))
        if "perf::TASK-CLOCK" in events and "counters" in p:
            cpu = p["counters"][:, :, :, events.index("perf::TASK-CLOCK")].astype(float) * 1e-9
    if first != 1:
        fail(f"{ppath}: history starts at round {first} (a resumed run); validate runs from round 1")
    if time.ndim != 3 or phases[:6] != ["broadcast", "local", "reduce", "server", "eval", "io"]:
        fail(f"{ppath}: 'time' {time.shape} with phases {phases}: not a fedhpc profile")
    if cp.get("run", "dedicated_server", fallback="false").strip().lower() in ("true", "1", "yes", "on"):
        fail(f"{cfg_path}: run.dedicated_server = true is not modelled (rank 0 hosts no clients); "
             "validate runs without it")
    try:
        d = fl_replay.deck_rounds(cp)
    except ValueError as e:
        fail(f"{cfg_path}: {e}")
    # training rounds: no evaluation in them; the first is left out (warm-up)
    train = [t for t in range(1, time.shape[0]) if time[t, :, 4].max() == 0.0]
    if len(train) < 3:
        fail(f"{path}: {len(train)} rounds without evaluation after the first; set run.eval_every "
             "to run.rounds and run.rounds >= 5")
    return dict(path=path, name=name, cfg=cp, d=d, P=time.shape[1], time=time, flops=flops, cpu=cpu,
                train=train)


def calibrate(runs1, plat, n):
    """flop_rate and client_overhead from 1-rank runs: local[t] = flops[t] /
    rate + m x overhead by least squares over their training rounds, local
    being the CPU seconds (perf::TASK-CLOCK) where the runs counted them, else
    wall seconds; server_per_float the median server step over the payload
    floats n, io_time the median metrics row."""
    x, y, srv, io = [], [], [], []
    for r in runs1:
        loc = r["cpu"] if r["cpu"] is not None else r["time"]
        for t in r["train"]:
            x.append(r["flops"][t, 0, 1])
            y.append(loc[t, 0, 1])
            srv.append(r["time"][t, 0, 3])
            io.append(r["time"][t, 0, 5])
    m = runs1[0]["d"]["m"]
    A = np.column_stack([np.asarray(x), np.ones(len(x))])
    (slope, icpt), *_ = np.linalg.lstsq(A, np.asarray(y), rcond=None)
    if slope <= 0:
        fail("the 1-rank runs' local time does not grow with their FLOPs: too few rounds or too "
             "noisy to calibrate; run more rounds")
    out = dict(plat)
    out["compute.flop_rate"] = 1.0 / slope
    out["compute.client_overhead"] = max(icpt, 0.0) / m
    out["compute.server_per_float"] = statistics.median(srv) / n
    out["compute.io_time"] = statistics.median(io)
    return out


def flops_row_of(r, per_rank=True):
    """FLOPs per training row from the run's own profile, and whether every
    rank's FLOPs in every round are its replayed clients' rows x epochs x that
    (the replay's sampling, sizes and static map are the engine's);
    per_rank=False compares each round's total only (balanced runs, whose
    clients run where the engine's measured costs sent them)."""
    d, P = r["d"], r["P"]
    owner = block_owner(d["K"], P)
    rows = np.zeros(r["flops"].shape[:2])
    for t in range(rows.shape[0]):
        for k in fl_replay.sampled(d["seed"], d["K"], d["m"], t):
            rows[t, owner[k]] += d["rows"][k] * d["epochs"]
    f = r["flops"][:, :, 1].sum() / rows.sum()
    got, want = r["flops"][:, :, 1], rows * f
    if not per_rank:
        got, want = got.sum(axis=1), want.sum(axis=1)
    return f, bool(np.allclose(got, want, rtol=1e-9, atol=0))


def share_of(r):
    """Fraction of a core the run's ranks got in their local phases (CPU over
    wall seconds, all ranks and training rounds), None without CPU counters."""
    if r["cpu"] is None:
        return None
    t = r["train"]
    return float(r["cpu"][t, :, 1].sum() / r["time"][t, :, 1].sum())


def cmd_validate(a):
    plat = read_platform(a.platform)
    runs = [load_run(p) for p in a.runs]
    decks = {(r["d"]["seed"], r["d"]["K"], r["d"]["m"], r["d"]["epochs"], tuple(r["d"]["rows"])) for r in runs}
    if len(decks) > 1:
        fail("the runs are not one deck (clients, sampling, epochs or sizes differ); validate one series")
    runs1 = [r for r in runs if r["P"] == 1]
    if not runs1:
        fail("no 1-rank run among the runs: the model is calibrated on the 1-rank runs")
    cal = calibrate(runs1, plat, a.params)
    fr, _ = flops_row_of(runs1[0])
    # a Synthetic row as the engine holds and moves it: float32 features, int32 label
    row_bytes = 4.0 * int(runs1[0]["cfg"].get("data", "synthetic_dim", fallback="60")) + 4.0
    for r in runs:
        if not flops_row_of(r, a.schedule == "static")[1]:
            fail(f"{r['path']}: its FLOPs per rank and round are not the replayed clients' rows x epochs x "
                 f"{fr:.6g}: the replay does not reproduce this run's rounds")
    rows = []
    for P in sorted({r["P"] for r in runs}):
        rs = [r for r in runs if r["P"] == P]
        d, train = rs[0]["d"], rs[0]["train"]
        sim = functools.partial(simulate, d, P, cal, a.schedule, "reduce_bcast", a.params, fr, row_bytes,
                                a.state_floats)
        ded = sum(sim(train).values())
        w = dict(ranks=P, reps=len(rs), each=[], adj=[], cpu_meas=[], share=[])
        for r in rs:
            w["each"].append(float(r["time"][r["train"], 0, :].sum(axis=1).mean()))
            s = share_of(r)
            if s:
                w["share"].append(s)
                w["adj"].append(sum(sim(r["train"], share=s).values()))
                w["cpu_meas"].append(float(r["cpu"][r["train"], :, 1].max(axis=1).mean()))
        # the busiest rank's CPU seconds of local training per round, predicted
        cost = client_costs(d["rows"], d["epochs"], fr, cal)
        owner = block_owner(d["K"], P)
        mb = [(4.0 * a.state_floats + row_bytes * (x + q), 4.0 * a.state_floats)
              for x, q in zip(d["rows"], d["test_rows"])]
        w["cpu_pred"] = float(np.mean([rank_work(sampled_round(d["seed"], d["K"], d["m"], t), cost, mb, owner, P,
                                                 cal, a.schedule)[0].max() for t in train]))
        w["measured"] = statistics.median(w["each"])
        w["dedicated"] = ded
        rows.append(w)
    med = lambda v: statistics.median(v) if v else float("nan")  # noqa: E731
    err = lambda p, m: 100.0 * (p - m) / m  # noqa: E731
    match = ("every run's FLOPs per rank and round match the replay" if a.schedule == "static"
             else "every round's FLOPs match the replay")
    print(f"validation on {plat['name']}: run.schedule = {a.schedule}; calibrated on {len(runs1)} 1-rank "
          f"run(s) ({'CPU' if runs1[0]['cpu'] is not None else 'wall'} seconds): flop_rate "
          f"{cal['compute.flop_rate'] / 1e9:.2f} GFLOP/s, client_overhead "
          f"{cal['compute.client_overhead'] * 1e3:.3f} ms, server "
          f"{cal['compute.server_per_float'] * 1e9:.3f} ns/float, io {cal['compute.io_time'] * 1e3:.3f} ms; "
          f"{fr / 1e6:.4f} MFLOP per row; payload {a.params} floats; {match}")
    print()
    print("| ranks | runs | measured s/round (median) | each run | predicted, dedicated cores | error % "
          "| core share (median) | predicted at that share | error % "
          "| busiest rank's local CPU s: measured | predicted | error % |")
    print("|---:|---:|---:|---|---:|---:|---:|---:|---:|---:|---:|---:|")
    for w in rows:
        adj, cm = med(w["adj"]), med(w["cpu_meas"])
        print(f"| {w['ranks']} | {w['reps']} | {w['measured']:.4f} | " + ", ".join(f"{x:.4f}" for x in w["each"])
              + f" | {w['dedicated']:.4f} | {err(w['dedicated'], w['measured']):+.1f} | {med(w['share']):.2f} | "
              f"{adj:.4f} | {err(adj, w['measured']):+.1f} | {cm:.4f} | {w['cpu_pred']:.4f} | "
              f"{err(w['cpu_pred'], cm):+.1f} |")
    if a.csv:
        cols = ["ranks", "runs", "measured_s", "predicted_dedicated_s", "share", "predicted_at_share_s",
                "local_cpu_measured_s", "local_cpu_predicted_s"]
        try:
            with open(a.csv, "w", newline="") as f:
                wr = csv.writer(f)
                wr.writerow(cols)
                for w in rows:
                    wr.writerow([w["ranks"], w["reps"]] + [f"{v:.9g}" for v in (
                        w["measured"], w["dedicated"], med(w["share"]), med(w["adj"]), med(w["cpu_meas"]),
                        w["cpu_pred"])])
        except OSError as e:
            fail(f"{a.csv}: cannot write ({e.strerror or e})")


# ---- sweep ------------------------------------------------------------------

def cmd_sweep(a):
    plat = read_platform(a.platform)
    try:
        ranks = sorted({int(x) for x in a.ranks.split(",")})
    except ValueError:
        fail(f"--ranks '{a.ranks}': give a comma-separated list of rank counts such as 1,2,4,8")
    if ranks[0] < 1:
        fail(f"--ranks '{a.ranks}': rank counts start at 1")
    cap = plat["platform.nodes"] * plat["platform.cores_per_node"]
    if ranks[-1] > cap:
        fail(f"--ranks: {ranks[-1]} ranks do not fit {plat['name']} ({cap:.0f} cores); "
             "raise [platform] nodes")
    mdl = dict(MODELS[a.model])
    if a.params:
        mdl["params"] = a.params
    if a.flops_row:
        mdl["flops_row"] = a.flops_row
    if a.payload_scale != 1.0:
        mdl["params"] = int(round(mdl["params"] * a.payload_scale))
    sigma = 0.0 if a.sizes == "equal" else a.sigma
    # equal sizes: every client the log-normal's mean size (same work on average)
    mu = a.mu + (a.sigma ** 2 / 2 if a.sizes == "equal" else 0.0)
    rounds = list(range(a.rounds))
    sizes = "equal" if a.sizes == "equal" else f"lognormal s={a.sigma:g}"
    out = []
    for P in ranks:
        K = a.clients_per_rank * P if a.mode == "weak" else a.clients
        if K < 1:
            fail("no clients: give --clients (strong) or --clients-per-rank (weak)")
        cfg = configparser.ConfigParser()
        cfg.read_dict({"run": {"seed": a.seed, "clients": K, "client_fraction": a.fraction},
                       "data": {"synthetic_size_mu": mu, "synthetic_size_sigma": sigma},
                       "train": {"epochs": a.epochs}})
        d = fl_replay.deck_rounds(cfg)
        for sched in ("static", "balanced"):
            for coll in ("reduce_bcast", "allreduce"):
                parts = simulate(d, P, plat, sched, coll, mdl["params"], mdl["flops_row"], mdl["row_bytes"],
                                 a.state_floats, rounds)
                row = dict(mode=a.mode, schedule=sched, collective=coll, model=a.model, sizes=sizes, ranks=P,
                           clients=K, sampled=d["m"], rounds=len(rounds), payload_floats=mdl["params"],
                           seconds_per_round=f"{sum(parts.values()):.9g}")
                row.update({f"{k}_s": f"{v:.9g}" for k, v in parts.items()})
                out.append(row)
    cols = list(out[0])
    try:
        f = open(a.csv, "w", newline="") if a.csv != "-" else sys.stdout
        wr = csv.writer(f)
        wr.writerow(cols)
        for o in out:
            wr.writerow([o[c] for c in cols])
        if f is not sys.stdout:
            f.close()
    except OSError as e:
        fail(f"{a.csv}: cannot write ({e.strerror or e})")


def parse_args(argv=None):
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                formatter_class=argparse.RawDescriptionHelpFormatter,
                                epilog="Exit status: 0 ok, 2 bad arguments or an unusable file.")
    sub = p.add_subparsers(dest="cmd", required=True)
    v = sub.add_parser("validate", help="predicted vs measured seconds per round of real runs")
    v.add_argument("runs", nargs="+", metavar="RUN", help="run folders of one deck on several rank counts, "
                   "1 rank included (repetitions allowed: medians are compared)")
    v.add_argument("--platform", required=True, metavar="FILE.ini", help="the machine the runs ran on "
                   "(its compute section is replaced by the calibration)")
    v.add_argument("--schedule", choices=["static", "balanced"], default="static",
                   help="the run.schedule the runs used (default static)")
    v.add_argument("--params", type=int, default=MODELS["mlp"]["params"],
                   help="payload floats (default %(default)s, the quick start's MLP)")
    v.add_argument("--state-floats", type=int, default=0,
                   help="client-state floats that move with a client under balanced (default 0: FedAvg)")
    v.add_argument("--csv", metavar="OUT.csv", help="also write the table as CSV")
    s = sub.add_parser("sweep", help="simulated weak or strong scaling series (CSV for scaling.py --sim)")
    s.add_argument("--platform", required=True, metavar="FILE.ini")
    s.add_argument("--mode", choices=["weak", "strong"], required=True)
    s.add_argument("--ranks", default="1,2,4,8,16,32,64,128,256,512,1024")
    s.add_argument("--clients", type=int, default=10000, help="strong: clients (default %(default)s)")
    s.add_argument("--clients-per-rank", type=int, default=10, help="weak: clients per rank (default %(default)s)")
    s.add_argument("--fraction", type=float, default=0.1, help="clients sampled per round (default %(default)s)")
    s.add_argument("--sizes", choices=["lognormal", "equal"], default="lognormal",
                   help="Synthetic client sizes: floor(lognormal(mu, sigma)) + 50 rows (the engine's draw), "
                   "or every client the mean of that (default lognormal)")
    s.add_argument("--mu", type=float, default=4.0, help="data.synthetic_size_mu (default 4)")
    s.add_argument("--sigma", type=float, default=2.0, help="data.synthetic_size_sigma (default 2)")
    s.add_argument("--epochs", type=int, default=5)
    s.add_argument("--model", choices=sorted(MODELS), default="mlp")
    s.add_argument("--params", type=int, help="payload floats instead of the model's parameters")
    s.add_argument("--flops-row", type=float, help="training FLOPs per row instead of the model's")
    s.add_argument("--payload-scale", type=float, default=1.0, help="multiply the payload (what-if)")
    s.add_argument("--state-floats", type=int, default=0,
                   help="client-state floats that move with a client under balanced (0: FedAvg; "
                   "SCAFFOLD: the model's parameters)")
    s.add_argument("--rounds", type=int, default=20, help="rounds replayed per point (default %(default)s)")
    s.add_argument("--seed", type=int, default=1)
    s.add_argument("--csv", default="-", metavar="OUT.csv", help="output (default stdout)")
    a = p.parse_args(argv)
    if a.cmd == "sweep":
        if not 0 < a.fraction <= 1:
            fail(f"--fraction {a.fraction:g}: a share of the clients in (0, 1]")
        if a.rounds < 1 or a.epochs < 1:
            fail("--rounds and --epochs must be at least 1")
    return a


def main():
    a = parse_args()
    (cmd_validate if a.cmd == "validate" else cmd_sweep)(a)


if __name__ == "__main__":
    main()
