# Shared by the checkpoint tests (sourced after lib.sh): the deck, and the
# comparison of a resumed run with an uninterrupted one.

# The cases whose resumed runs must equal uninterrupted ones come from the
# registry (fh_cases in lib.sh): ALGORITHMS the full set of checks
# (FH_TEST_RESUME), RESUME_ALGORITHMS one rank pair only (3 -> 2 ranks;
# FH_TEST_RESUME_SHORT), which keeps the test short (the model-heterogeneous
# baselines). ALGORITHM_OF gives a case's run.algorithm, ALGORITHM_SETS its
# overrides as --set arguments; why each needs them is said beside its table.
ALGORITHMS=()
RESUME_ALGORITHMS=()
declare -A ALGORITHM_SETS=() ALGORITHM_OF=()
while IFS='|' read -r name alg sets _; do
  ALGORITHMS+=("$name")
  ALGORITHM_OF[$name]=$alg ALGORITHM_SETS[$name]=$sets
done < <(fh_cases resume)
while IFS='|' read -r name alg sets _; do
  RESUME_ALGORITHMS+=("$name")
  ALGORITHM_OF[$name]=$alg ALGORITHM_SETS[$name]=$sets
done < <(fh_cases resume-short)
[[ ${#ALGORITHMS[@]} -gt 0 || -n ${FH_TEST_ONLY:-} ]] || fail "no resume cases in the registry"

CK_DECK="$SRC_DIR/input/quickstart.ini"

# ck_compare REF RUN: RUN's model.h5 parameters and every metrics.h5 dataset but
# wall_time, time/* and schedule/* (where clients ran) are bitwise identical to REF's, and both are complete.
ck_compare() {
  "$PY" - "$TMP/$1" "$TMP/$2" <<'PY' || fail "$2 differs from $1"
import sys, h5py, numpy as np
def load(run):
    out = {}
    with h5py.File(f"{run}/model.h5", "r") as f:
        for k in f["params"]:
            out["params/" + k] = f["params"][k][()]
    with h5py.File(f"{run}/metrics.h5", "r") as f:
        status = f.attrs["status"]
        status = status.decode() if isinstance(status, bytes) else status
        assert status == "complete", f"{run}: status {status}"
        def visit(name, obj):
            if isinstance(obj, h5py.Dataset) and name != "wall_time" and not name.startswith(("time/", "schedule/")):
                out["metrics/" + name] = obj[()]
        f.visititems(visit)
    return out
ref, run = load(sys.argv[1]), load(sys.argv[2])
if ref.keys() != run.keys():
    sys.exit(f"datasets differ: {sorted(ref.keys() ^ run.keys())}")
for k in ref:
    if ref[k].shape != run[k].shape or ref[k].tobytes() != run[k].tobytes():
        sys.exit(f"{k} differs: {ref[k].ravel()[:8]} vs {run[k].ravel()[:8]}")
# the global model's accuracy, or the clients' own models' where there is none
assert len(ref["metrics/round"]) > 0 and (np.isfinite(ref["metrics/test_accuracy"][-1])
                                          or np.isfinite(ref["metrics/personal/accuracy"][-1]))
PY
  ok "$2 equals $1 bit for bit (model and metrics)"
}

# ck_attr FILE NAME: a root attribute of an HDF5 file, as text.
ck_attr() {
  "$PY" -c 'import sys, h5py
v = h5py.File(sys.argv[1], "r").attrs[sys.argv[2]]
print(v.decode() if isinstance(v, bytes) else v)' "$1" "$2"
}
