#!/bin/bash
# analysis/cluster_model.py and analysis/fl_replay.py: the replay model of the
# training rounds.
#  - fl_replay draws the engine's rounds: every rank's analytic FLOPs in every
#    round of real runs on 1 and 3 ranks (100 clients, 3 not dividing them) are
#    its replayed clients' rows x epochs x the same FLOPs per row
#  - the collectives, the gather and a message against costs worked out by hand
#    from the Hockney formulas on a made-up two-node platform
#  - static and balanced assignments and makespans of a hand-worked round, the
#    cost of moving a client, processor sharing on a hand-worked case
#  - LPT against brute-force optimal makespans: within Graham's 4/3 - 1/(3P)
#    bound (Graham, SIAM J. Appl. Math. 17(2), 1969), never below the optimum;
#    and a round where the static blocks beat LPT (so "balanced is never worse"
#    is not a property the model may assume)
#  - validate on the real runs, sweep -> scaling.py --sim (tables, CSV, PNG)
#  - bad input: one line on stderr, exit 2
# No timing is asserted. Env (from ctest): FEDHPC, SRC_DIR, OMPI root variables.
set -euo pipefail
: "${FEDHPC:?FEDHPC must point to the fedhpc binary}"
: "${SRC_DIR:?SRC_DIR must point to the source tree}"
PY=/usr/bin/python3
CM=$SRC_DIR/analysis/cluster_model.py
TMP=$(mktemp -d "${TMPDIR:-/tmp}/fh_cluster_model.XXXXXX")
trap 'rm -rf "$TMP"' EXIT
export OPENBLAS_NUM_THREADS=1

failures=0
pass() { echo "ok:   $*"; }
fail() { echo "FAIL: $*"; failures=$((failures + 1)); }

# --- real runs: quick start, 6 rounds, evaluation only after the last ---------
for p in 1 3; do
  mpirun --oversubscribe -np $p "$FEDHPC" run "$SRC_DIR/input/quickstart.ini" --set run.rounds=6 \
    --set run.eval_every=6 --set output.dir="$TMP/runs" --set output.name=p$p >"$TMP/run$p.log" 2>&1 \
    || { cat "$TMP/run$p.log"; fail "fedhpc run on $p ranks"; exit 1; }
done

res=$("$PY" - "$SRC_DIR/analysis" "$TMP/runs" <<'PY'
import configparser, sys
import h5py, numpy as np
sys.path.insert(0, sys.argv[1])
import fl_replay, cluster_model as cm
errs = []
for p in (1, 3):
    run = f"{sys.argv[2]}/p{p}"
    cp = configparser.ConfigParser(interpolation=None, strict=False, inline_comment_prefixes=(";", "#"))
    cp.read(run + "/config.ini")
    d = fl_replay.deck_rounds(cp)
    fl = h5py.File(run + "/profile.h5", "r")["flops"][:, :, 1]
    owner = cm.block_owner(d["K"], p)
    rows = np.zeros(fl.shape)
    for t in range(fl.shape[0]):
        s = fl_replay.sampled(d["seed"], d["K"], d["m"], t)
        if len(s) != d["m"] or sorted(set(s)) != s:
            errs.append(f"round {t}: {len(s)} clients, not {d['m']} distinct")
        for k in s:
            rows[t, owner[k]] += d["rows"][k] * d["epochs"]
    per_row = fl / np.where(rows > 0, rows, np.nan)
    f = np.nanmedian(per_row)
    if not np.allclose(fl, rows * f, rtol=1e-12, atol=0):
        errs.append(f"{p} ranks: FLOPs per rank and round are not replayed rows x {f:g}: {per_row.tolist()}")
    if abs(f - 0.3e6) > 1:  # the MLP 60-200-200-10: (0.108 + 0.192) MFLOP per row
        errs.append(f"{p} ranks: {f} FLOPs per row, want 300000")
# fh_client_owner: 100 clients on 3 ranks -> 33, 33, 34
o = cm.block_owner(100, 3)
if [int((o == r).sum()) for r in range(3)] != [33, 33, 34] or o[32] != 0 or o[33] != 1 or o[66] != 2:
    errs.append(f"block_owner(100, 3): {[int((o == r).sum()) for r in range(3)]}")
print("; ".join(errs) if errs else "ok")
PY
)
[[ $res == ok ]] && pass "replay = engine: every rank's FLOPs in every round on 1 and 3 ranks are its replayed clients' rows x 5 epochs x 0.3 MFLOP" \
  || fail "replay: $res"

# --- hand-worked costs on a made-up platform -----------------------------------
cat >"$TMP/hand.ini" <<'EOF'
[platform]
name = hand
nodes = 2
cores_per_node = 2
[compute]
flop_rate = 1e9
client_overhead = 0
server_per_float = 0
io_time = 0
[intra]
latency = 1e-6
bandwidth = 1e9
[inter]
latency = 1e-5
bandwidth = 1e8
[reduce]
gamma = 0
EOF
res=$("$PY" - "$SRC_DIR/analysis" "$TMP/hand.ini" <<'PY'
import sys
import numpy as np
sys.path.insert(0, sys.argv[1])
import cluster_model as cm
plat = cm.read_platform(sys.argv[2])
errs = []
def near(name, got, want):
    if abs(got - want) > 1e-12 + 1e-9 * abs(want):
        errs.append(f"{name}: {got!r}, by hand {want!r}")
# P = 4: 2 ranks per node, 2 nodes. Broadcast of 1000 floats (4000 B):
#   leaders: binomial 1e-5 + 4000/1e8 = 5e-5 (scatter+allgather: 2e-5 + 4e-5 = 6e-5)
#   node:    1e-6 + 4000/1e9 = 5e-6                               -> 5.5e-5
near("bcast", cm.collective("bcast", 4, 4000.0, plat), 5.5e-5)
# reduction of 8 x 1001 = 8008 B: node binomial 1e-6 + 8.008e-6 (Rabenseifner
# 2e-6 + 8.008e-6), leaders 1e-5 + 8.008e-5 (2e-5 + 8.008e-5) -> 9.9088e-5
near("reduce", cm.collective("reduce", 4, 8008.0, plat), 9.9088e-5)
# allreduce: node reduce 9.008e-6 + leaders 9.008e-5 + node bcast 9.008e-6
near("allreduce", cm.collective("allreduce", 4, 8008.0, plat), 1.08096e-4)
# the flat form is dearer on 4 ranks (binomial bcast 2 (1e-5 + 4e-5) = 1e-4), but
# on one node the allreduce of 2 ranks is one exchange: 1e-6 + 8.008e-6, not the
# two-level reduce + bcast (twice that)
near("allreduce, 2 ranks", cm.collective("allreduce", 2, 8008.0, plat), 9.008e-6)
# one level, 1 MB among 16 processes: Rabenseifner 2*4*1e-5 + 2*(15/16)*1e6/1e8 = 8e-5 + 1.875e-2 beats
# binomial 4*(1e-5 + 1e-2)
near("level allreduce", cm.level_cost("allreduce", 16, 1e6, 1e-5, 1e-8, 0.0), 8e-5 + 1.875e-2)
near("level bcast", cm.level_cost("bcast", 16, 1e6, 1e-5, 1e-8, 0.0), (4 + 15) * 1e-5 + 2 * (15 / 16) * 1e-2)
# gather of 48 B per rank: node 1e-6 + 48/1e9, leaders 1e-5 + 2*48/1e8
near("gather", cm.gather(4, 48.0, plat), 1e-6 + 48e-9 + 1e-5 + 96e-8)
near("p2p same node", cm.p2p(0, 1, 1000.0, 4, plat), 1e-6 + 1e-6)
near("p2p across", cm.p2p(1, 2, 1000.0, 4, plat), 1e-5 + 1e-5)
# processor sharing: 4 x 1 s on 2 cores -> 2 s; 1 s and 3 s on 1 core -> 4 s
near("ps 4 on 2", cm.ps_makespan([1, 1, 1, 1], 2), 2.0)
near("ps 1+3 on 1", cm.ps_makespan([1, 3], 1), 4.0)
near("ps 3 on 4", cm.ps_makespan([1, 2, 3], 4), 3.0)
# one round: 8 clients, all sampled, cost (ms) 8,1,1,1,1,1,1,1; hosts 0,0,1,1,2,2,3,3
cost = np.array([8, 1, 1, 1, 1, 1, 1, 1]) * 1e-3
owner = cm.block_owner(8, 4)
zero = [(0.0, 0.0)] * 8
comp, move = cm.rank_work(range(8), cost, zero, owner, 4, plat, "static")
near("static makespan", comp.max(), 9e-3)
# plain LPT: 0 -> r0; 1, 2, 3 -> r1, r2, r3; 4 -> r1; 5 -> r2; 6 -> r3; 7 -> r1
w = cm.lpt(list(range(8)), cost, 4)
if [w[k] for k in range(8)] != [0, 1, 2, 3, 1, 2, 3, 1]:
    errs.append(f"lpt: {[w[k] for k in range(8)]}, by hand [0, 1, 2, 3, 1, 2, 3, 1]")
# the engine's rule, moves of 1000 B there and 100 B back: 3.1e-6 s inside a
# node, 3.1e-5 s across. Pass 1: 0 -> r0 (8); 1 -> r1 (1.0031 ms < 9 at home);
# 2 -> r2, 3 -> r3 (1.031 < 2.0031 at home); 4 home r2 (2.031 beats 2.0341 on
# r1 and r3); 5 -> r1 (2.0341 < 3.031; r3 ties, lower rank wins); 6, 7 home.
# Pass 2, cheapest first against makespan 8: 5, 3, 2 go home (their hosts stay
# under 8), 1 cannot (r0 would reach 9). Left: only client 1 moved.
mb = [(1000.0, 100.0)] * 8
w = cm.balanced(list(range(8)), cost, mb, owner, 4, plat)
if [w[k] for k in range(8)] != [0, 1, 1, 1, 2, 2, 3, 3]:
    errs.append(f"balanced: {[w[k] for k in range(8)]}, by hand [0, 1, 1, 1, 2, 2, 3, 3]")
comp, move = cm.rank_work(range(8), cost, mb, owner, 4, plat, "balanced")
near("balanced makespan", comp.max(), 8e-3)
near("rank 1 compute", comp[1], 3e-3)
near("rank 1 moves", move[1], (1e-6 + 1e-6) + (1e-6 + 1e-7))
near("other moves", move[0] + move[2] + move[3], 0.0)
parts = cm.round_parts(list(range(8)), cost, mb, owner, 4, plat, "balanced", "reduce_bcast", 1000)
near("round total", sum(parts.values()), 8e-3 + 5.5e-5 + 9.9088e-5 + cm.gather(4, 48.0, plat))
near("round local", parts["local"], 15e-3 / 4)
# moves dearer than what they save: costs 2,2,1,1,1,1,1,1 ms on the same hosts
# (static makespan 4 ms) with a move at 1.1 ms (1100 B at 1e6 B/s): no dealing
# ends before 4 ms, so every client stays home
slow = dict(plat, **{"intra.bandwidth": 1e6, "inter.bandwidth": 1e6})
w = cm.balanced(list(range(8)), np.array([2, 2, 1, 1, 1, 1, 1, 1]) * 1e-3, mb, owner, 4, slow)
if any(w[k] != owner[k] for k in range(8)):
    errs.append(f"moves of 1.1 ms for 1 ms of imbalance: {[w[k] for k in range(8)]}, want all home")
# static beats plain LPT here: costs 3,3,2,2,2 on 2 ranks; blocks {0,1} {2,3,4}:
# 6 and 6; LPT: 3 | 3, then 2 -> r0, 2 -> r1, 2 -> r0: 7. The engine's rule
# then keeps every client home (6)
c5 = np.array([3.0, 3, 2, 2, 2])
o5 = cm.block_owner(5, 2)
st = cm.rank_work(range(5), c5, [(0, 0)] * 5, o5, 2, plat, "static")[0].max()
w = cm.lpt(range(5), c5, 2)
lp = max(sum(c5[k] for k in range(5) if w[k] == r) for r in range(2))
bal = cm.rank_work(range(5), c5, [(0, 0)] * 5, o5, 2, plat, "balanced")[0].max()
if (st, lp, bal) != (6.0, 7.0, 6.0):
    errs.append(f"3,3,2,2,2 on 2 ranks: static {st}, LPT {lp}, balanced {bal}; by hand 6, 7, 6")
print("; ".join(errs) if errs else "ok")
PY
)
[[ $res == ok ]] && pass "hand-worked: two-level bcast/reduce/allreduce, gather, messages, processor sharing, a round's static, LPT and balanced assignment, moves, total, moves that do not pay kept home; static 6 < LPT 7 on 3,3,2,2,2, balanced 6" \
  || fail "hand-worked: $res"

res=$("$PY" - "$SRC_DIR/analysis" "$TMP/hand.ini" <<'PY'
import itertools, random, sys
sys.path.insert(0, sys.argv[1])
import cluster_model as cm
rng = random.Random(7)
errs, n_cases = [], 0
for P in (2, 3):
    for n in range(P + 1, 9):
        for _ in range(15):
            cost = [rng.choice([1, 2, 3, 5, 8, 13]) * rng.random() + 0.1 for _ in range(n)]
            opt = min(max(sum(c for c, a in zip(cost, asg) if a == r) for r in range(P))
                      for asg in itertools.product(range(P), repeat=n))
            w = cm.lpt(list(range(n)), cost, P)
            span = max(sum(cost[k] for k in range(n) if w[k] == r) for r in range(P))
            n_cases += 1
            if span < opt - 1e-12 or span > (4 / 3 - 1 / (3 * P)) * opt + 1e-12:
                errs.append(f"P={P} costs {cost}: LPT {span}, optimum {opt}")
# balanced never has a longer makespan (moves included) than static: random
# rounds of a lognormal deck on a two-node platform
plat = cm.read_platform(sys.argv[2])
K = 40
rows = [int(rng.lognormvariate(4, 2)) + 40 for _ in range(K)]
cost = [r * 1e-4 for r in rows]
mb = [(244.0 * r, 0.0) for r in rows]
for P in (2, 3, 4):
    owner = cm.block_owner(K, P)
    for _ in range(40):
        s = sorted(rng.sample(range(K), rng.randint(1, K)))
        st = cm.rank_work(s, cost, mb, owner, P, plat, "static")
        ba = cm.rank_work(s, cost, mb, owner, P, plat, "balanced")
        n_cases += 1
        if (ba[0] + ba[1]).max() > st[0].max() * (1 + 1e-12):
            errs.append(f"P={P} round {s}: balanced {(ba[0] + ba[1]).max()} > static {st[0].max()}")
print("; ".join(errs[:3]) if errs else f"ok {n_cases}")
PY
)
[[ $res == ok* ]] && pass "LPT within Graham's bound of the brute-force optimum; balanced (moves included) never longer than static (${res#ok } random rounds)" \
  || fail "LPT bound / balanced vs static: $res"

# --- validate and sweep --------------------------------------------------------
rc=0
"$CM" validate --platform "$SRC_DIR/cluster-configs/platforms/local.ini" "$TMP/runs/p1" "$TMP/runs/p3" \
  --csv "$TMP/val.csv" >"$TMP/out" 2>"$TMP/err" || rc=$?
if [[ $rc == 0 ]] && grep -q "match the replay" "$TMP/out" && grep -qE "^\| 3 \| 1 \|" "$TMP/out" \
  && [[ $(wc -l <"$TMP/val.csv") == 3 ]]; then pass "validate: 1- and 3-rank runs, a row per rank count, CSV"
else fail "validate: exit $rc: $(cat "$TMP/err") $(head -3 "$TMP/out")"; fi

for sz in lognormal equal; do
  "$CM" sweep --platform "$SRC_DIR/cluster-configs/platforms/example-national-lab.ini" --mode weak --ranks 1,4,16 \
    --clients-per-rank 10 --rounds 3 --sizes $sz --csv "$TMP/w-$sz.csv" 2>"$TMP/err" || fail "sweep $sz: $(cat "$TMP/err")"
done
res=$("$PY" - "$TMP/w-lognormal.csv" "$TMP/w-equal.csv" <<'PY'
import csv, sys
errs = []
for path in sys.argv[1:]:
    rows = list(csv.DictReader(open(path)))
    if len(rows) != 12:
        errs.append(f"{path}: {len(rows)} rows, want 3 rank counts x 2 schedules x 2 collectives")
    for r in rows:
        parts = sum(float(r[k]) for k in r if k.endswith("_s"))
        if abs(parts - float(r["seconds_per_round"])) > 1e-7 * parts:
            errs.append(f"{path}: parts {parts} != total {r['seconds_per_round']}")
        if int(r["clients"]) != 10 * int(r["ranks"]) or int(r["sampled"]) != int(r["ranks"]):
            errs.append(f"{path}: {r['ranks']} ranks: {r['clients']} clients, {r['sampled']} sampled")
        if r["schedule"] == "static" and float(r["move_s"]) != 0:
            errs.append("static moves clients")
    one = [r for r in rows if r["ranks"] == "1"]
    if len({r["seconds_per_round"] for r in one}) != 1:
        errs.append(f"{path}: schedules or collectives differ on 1 rank")
print("; ".join(errs) if errs else "ok")
PY
)
[[ $res == ok ]] && pass "sweep: a row per rank count, schedule and collective; parts add up; weak clients 10 x P, 10 % sampled" \
  || fail "sweep: $res"

rc=0
"$SRC_DIR/analysis/scaling.py" --sim "$TMP/w-lognormal.csv" --sim "$TMP/w-equal.csv" --csv "$TMP/sim.csv" \
  --plot "$TMP/sim.png" --size 1000x400 >"$TMP/out" 2>"$TMP/err" || rc=$?
if [[ $rc == 0 ]] && grep -q "^simulated weak scaling, run.schedule = balanced" "$TMP/out" \
  && grep -q "| ranks | local | imbalance | move | communication | server | io | total |" "$TMP/out" \
  && [[ $(wc -l <"$TMP/sim.csv") == 25 && $(stat -c %s "$TMP/sim.png") -gt 10240 ]]; then
  pass "scaling.py --sim: tables per series with the move part, CSV of 24 rows, PNG"
else fail "scaling.py --sim: exit $rc: $(cat "$TMP/err")"; fi
res=$("$PY" - "$TMP/sim.csv" <<'PY'
import csv, sys
rows = list(csv.DictReader(open(sys.argv[1])))
errs = []
base = {}
for r in rows:
    key = tuple(r[k] for k in ("schedule", "collective", "sizes"))
    if r["ranks"] == "1":
        base[key] = float(r["seconds_per_round"])
for r in rows:
    key = tuple(r[k] for k in ("schedule", "collective", "sizes"))
    eff = base[key] / float(r["seconds_per_round"])
    if abs(float(r["efficiency"]) - eff) > 1e-5 * eff:
        errs.append(f"{key} {r['ranks']}: efficiency {r['efficiency']}, want T1/TP = {eff}")
print("; ".join(errs) if errs else "ok")
PY
)
[[ $res == ok ]] && pass "scaling.py --sim: weak efficiency T(1)/T(P) per series" || fail "scaling.py --sim: $res"

# --- bad input ------------------------------------------------------------------
expect_error() {
  local what=$1 rc=0
  shift
  "$@" >"$TMP/out" 2>"$TMP/err" || rc=$?
  if [[ $rc == 2 && $(wc -l <"$TMP/err") == 1 ]]; then pass "$what: exit 2: $(cat "$TMP/err")"
  else fail "$what: exit $rc, stderr: $(cat "$TMP/err")"; fi
}
grep -v "^gamma" "$TMP/hand.ini" >"$TMP/nogamma.ini"
sed 's/^bandwidth = 1e9/bandwidth = fast/' "$TMP/hand.ini" >"$TMP/nan.ini"
expect_error "platform without [reduce] gamma" "$CM" sweep --platform "$TMP/nogamma.ini" --mode weak --ranks 1,2
expect_error "platform value not a number" "$CM" sweep --platform "$TMP/nan.ini" --mode weak --ranks 1,2
expect_error "missing platform file" "$CM" sweep --platform "$TMP/none.ini" --mode weak --ranks 1,2
expect_error "more ranks than the platform's cores" "$CM" sweep --platform "$TMP/hand.ini" --mode weak --ranks 1,8
expect_error "bad rank list" "$CM" sweep --platform "$TMP/hand.ini" --mode weak --ranks 1,two
expect_error "validate without a 1-rank run" "$CM" validate --platform "$TMP/hand.ini" "$TMP/runs/p3"
expect_error "validate a missing run" "$CM" validate --platform "$TMP/hand.ini" "$TMP/runs/p1" "$TMP/runs/p9"
"$CM" sweep --platform "$TMP/hand.ini" --mode strong --ranks 1,2 --clients 20 --rounds 2 --csv "$TMP/s.csv"
expect_error "scaling.py --sim mixing weak and strong" "$SRC_DIR/analysis/scaling.py" --sim "$TMP/s.csv" --sim "$TMP/w-equal.csv"
expect_error "scaling.py --sim with run folders too" "$SRC_DIR/analysis/scaling.py" "$TMP/runs/p1" --sim "$TMP/s.csv"
expect_error "scaling.py --sim on a file that is not a sweep" "$SRC_DIR/analysis/scaling.py" --sim "$TMP/val.csv"

if ((failures > 0)); then
  echo "$failures check(s) failed"
  exit 1
fi
echo "all checks passed"
