#!/usr/bin/env bash
# What a run writes and prints: progress lines, summary, metrics.h5 and
# profile.h5 layout and attributes, PAPI events the machine cannot count
# (one warning, run goes on), the resolved config.ini reproducing the run, and
# the informational commands.
source "$(dirname "$0")/lib.sh"
R=5
# Which counters this machine has decides what profile.h5 must hold: a VM
# without a PMU (and without perf_event software events) counts nothing.
fh_mpirun 1 info >"$TMP/info" 2>&1 || { cat "$TMP/info"; fail "info"; }
TASK_CLOCK=0
grep -q "perf::TASK-CLOCK=yes" "$TMP/info" && TASK_CLOCK=1
echo "perf::TASK-CLOCK countable here: $TASK_CLOCK"
fh_mpirun 3 run "$SRC_DIR/input/quickstart.ini" --set run.rounds=$R --set run.eval_every=2 \
  --set profile.papi_events=PAPI_TOT_INS,perf::TASK-CLOCK,NOT_AN_EVENT --set output.dir="$TMP" \
  >"$TMP/out" 2>"$TMP/err" || { cat "$TMP/out" "$TMP/err"; fail "run"; }
cat "$TMP/out"
n=$(grep -cE '^round +[0-9]+/5  train loss +([0-9.]+|-)  test acc +([0-9.]+%|-)  local loss [0-9.]+  [0-9.]+ s  ETA [0-9:]+$' "$TMP/out")
[[ $n -eq $R ]] || fail "expected $R progress lines, got $n"
ok "one progress line per round"
grep -q '^done: 5 rounds' "$TMP/out" || fail "no summary line"
grep -qE '^  local +[0-9.]+ +[0-9.]+ +[0-9.]+' "$TMP/out" || fail "no per-phase summary"
ok "summary with per-phase min/mean/max"
n=$(grep -c 'warning: this machine cannot count PAPI event' "$TMP/err" || true)
[[ $n -eq 1 ]] || { cat "$TMP/err"; fail "expected one PAPI warning, got $n"; }
grep -q 'NOT_AN_EVENT' "$TMP/err" || fail "warning does not name NOT_AN_EVENT"
ok "one warning names the PAPI events that cannot be counted"

if [[ $TASK_CLOCK -eq 0 ]]; then
  grep -q 'perf::TASK-CLOCK' "$TMP/err" || fail "warning does not name perf::TASK-CLOCK, which this machine cannot count"
fi
"$PY" - "$TMP/quickstart" $R $TASK_CLOCK <<'PY'
import sys, h5py, numpy as np
run, R, task_clock = sys.argv[1], int(sys.argv[2]), int(sys.argv[3])
s = lambda v: v.decode() if isinstance(v, bytes) else v
with h5py.File(f"{run}/metrics.h5", "r") as f:
    a = f.attrs
    assert s(a["status"]) == "complete"
    assert int(a["nranks"]) == 3
    assert "rounds = 5" in s(a["config"]) and "[data]" in s(a["config"])
    for lib in ["MPI", "HDF5", "OpenBLAS", "ScaLAPACK", "PAPI"]:
        assert lib in s(a["versions"]), lib
    assert len(s(a["source_revision"])) > 0
    assert list(f["round"][()]) == list(range(1, R + 1))
    acc = f["test_accuracy"][()]
    assert np.isnan(acc[0]) and np.isfinite(acc[1]) and np.isnan(acc[2]) and np.isfinite(acc[4]), acc
    for k in ["broadcast", "local", "reduce", "server", "eval", "io"]:
        t = f["time"][k][()]
        assert t.shape == (R,) and (t >= 0).all(), k
    assert (f["time"]["local"][()] > 0).all()
    assert (f["time"]["io"][()] > 0).all(), "a row must hold its own I/O time"
    assert (f["wall_time"][()] > 0).all()
    lo, p10, mean, p90, hi = (f["client_accuracy"][k][()][4] for k in ["min", "p10", "mean", "p90", "max"])
    assert 0 <= lo <= p10 <= p90 <= hi <= 1 and lo <= mean <= hi
    tl = f["train_loss"][()]
    assert np.isnan(tl[0]) and np.isfinite(tl[1]) and tl[1] > 0, tl
    assert np.isfinite(f["local_loss"][()]).all()
print("ok: metrics.h5 attributes and per-round datasets")
with h5py.File(f"{run}/profile.h5", "r") as f:
    t = f["time"][()]
    assert t.shape == (R, 3, 6), t.shape
    assert (t[:, :, 5] > 0).all() and (t[:, :, 1] > 0).all(), t
    assert s(f.attrs["phases"]) == "broadcast,local,reduce,server,eval,io"
    ev = [e for e in s(f.attrs["events"]).split(",") if e]
    assert "NOT_AN_EVENT" not in ev, ev
    if task_clock:
        assert "perf::TASK-CLOCK" in ev, ev
        c = f["counters"][()]
        assert c.shape == (R, 3, 6, len(ev))
        i = ev.index("perf::TASK-CLOCK")
        # task clock (ns) of the local phase is positive and at most its wall time
        loc = c[:, :, 1, i].sum() * 1e-9
        assert loc > 0 and loc <= 1.5 * t[:, :, 1].sum() + 0.05, (loc, t[:, :, 1].sum())
    else:
        assert ev == [] and "counters" not in f, (ev, list(f))
print("ok: profile.h5 per round x rank x phase" + (", counters for perf::TASK-CLOCK" if task_clock else ", no counters on this machine"))
with h5py.File(f"{run}/model.h5", "r") as f:
    assert s(f.attrs["arch"]) == "mlp"
    assert f["params"]["fc1.weight"].shape == (200, 60)
    assert sum(f["params"][k].size for k in f["params"]) == int(f.attrs["nparams"])
print("ok: model.h5 named parameters")
PY
ls "$TMP/quickstart" | grep -q partial && fail "partial files left behind"

# The resolved config.ini is a deck that reproduces the run bit for bit.
fh_mpirun 2 run "$TMP/quickstart/config.ini" --set output.name=again >"$TMP/out2" 2>&1 || { cat "$TMP/out2"; fail "rerun"; }
"$PY" -c "
import h5py, sys
a = h5py.File('$TMP/quickstart/model.h5')['params']; b = h5py.File('$TMP/again/model.h5')['params']
assert all(a[k][()].tobytes() == b[k][()].tobytes() for k in a), 'rerun from config.ini differs'
"
ok "config.ini reproduces the run bitwise"

for w in MPI HDF5 OpenBLAS ScaLAPACK PAPI "preset events" "perf::TASK-CLOCK="; do
  grep -q "$w" "$TMP/info" || { cat "$TMP/info"; fail "info lacks $w"; }
done
ok "fedhpc info lists library versions and countable events"
fh_mpirun 1 --help >"$TMP/help" 2>&1 || fail "--help"
grep -q "run DECK" "$TMP/help" || fail "--help lacks run"
fh_mpirun 1 help keys >"$TMP/keys" 2>&1 || fail "help keys"
"$PY" - "$TMP/keys" <<'PY' || fail "help keys lacks a key"
import sys
section, keys = None, set()
for line in open(sys.argv[1]):
    if line.startswith("["):
        section = line.strip()[1:-1]
    elif line.startswith("  ") and section:
        keys.add(section + "." + line.split()[0])
need = "run.rounds run.seed run.clients output.dir profile.papi_events model.hidden train.lr data.source".split()
missing = [k for k in need if k not in keys]
assert not missing, missing
PY
ok "--help and help keys"
echo "$NCHECKS passed, 0 failed"
