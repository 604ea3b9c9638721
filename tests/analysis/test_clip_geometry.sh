#!/bin/bash
# scripts/make_clip_geometry_features.py: the file it writes is a feature file
# fedhpc reads, its measured geometry (attributes) is what numpy measures on
# the file, and its zero-shot accuracy (numpy: arg-max of the cosine to the
# class embeddings) equals fedhpc's zeroshot variant on the same test rows;
# --close-gap moves the embeddings into the image cone (own cosine grows);
# bad parameters -> one line and a non-zero exit.
# Env (from ctest): FEDHPC, SRC_DIR, and the OMPI root variables.
set -euo pipefail
: "${FEDHPC:?FEDHPC must point to the fedhpc binary}"
: "${SRC_DIR:?SRC_DIR must point to the source tree}"
MPIRUN=${MPIEXEC:-mpirun}
PY=/usr/bin/python3
GEN="$SRC_DIR/scripts/make_clip_geometry_features.py"
TMP=$(mktemp -d "${TMPDIR:-/tmp}/fh_clipgeo.XXXXXX")
trap 'rm -rf "$TMP"' EXIT
fail() { echo "FAIL: $*" >&2; exit 1; }

"$PY" "$GEN" "$TMP/g.h5" --train 3000 --test 1000 --dim 64 --seed 3 || fail "generator"
"$PY" "$GEN" "$TMP/c.h5" --train 3000 --test 1000 --dim 64 --seed 3 --close-gap || fail "generator --close-gap"
[ ! -e "$TMP/g.h5.partial" ] || fail "a .partial file was left"
timeout 120 "$MPIRUN" --allow-run-as-root --oversubscribe -np 2 -x OPENBLAS_NUM_THREADS=1 "$FEDHPC" run \
  "$SRC_DIR/input/fstcbdg_clipgeo.ini" --set data.path="$TMP/g.h5" --set run.rounds=2 \
  --set fstcbdg.variant=zeroshot --set output.dir="$TMP" --set output.name=zs >"$TMP/zs.log" 2>&1 \
  || { cat "$TMP/zs.log"; fail "fedhpc zeroshot run on the file"; }
"$PY" - "$TMP" <<'PY' || fail "geometry"
import sys, h5py, numpy as np
tmp = sys.argv[1]
def measure(path):
    with h5py.File(path, "r") as f:
        x = f["test/x"][()].astype(np.float64); y = f["test/y"][()]
        T = f["class_embeddings"][()].astype(np.float64)
        attrs = dict(f.attrs)
    x /= np.linalg.norm(x, axis=1, keepdims=True); T /= np.linalg.norm(T, axis=1, keepdims=True)
    cos = x @ T.T
    own = cos[np.arange(len(y)), y].mean()
    acc = np.mean(np.argmax(cos, axis=1) == y)
    return own, acc, attrs
own, acc, a = measure(f"{tmp}/g.h5")
assert abs(own - a["cos_own"]) < 1e-4, (own, a["cos_own"])
assert abs(acc - a["zeroshot_accuracy"]) < 1e-9, (acc, a["zeroshot_accuracy"])
assert a["logit_scale"] == 100.0
assert 0.0 < a["zeroshot_accuracy"] < a["class_mean_accuracy"] <= 1.0, dict(a)
with h5py.File(f"{tmp}/zs/metrics.h5", "r") as f:
    fh = f["global_test/accuracy"][()][-1]
assert abs(fh - acc) < 1e-6, ("fedhpc zero-shot", fh, "numpy", acc)
own_c, _, _ = measure(f"{tmp}/c.h5")
assert own_c > own + 0.1, ("--close-gap should raise the own cosine", own, own_c)
print(f"ok: cos_own {own:.3f}, zero-shot {acc:.4f} (fedhpc {fh:.4f}), closed gap cos_own {own_c:.3f}")
PY
if "$PY" "$GEN" "$TMP/bad.h5" --text-align 1.5 2>"$TMP/err"; then fail "--text-align 1.5 accepted"; fi
grep -q "text-align" "$TMP/err" || fail "the error does not name --text-align: $(cat "$TMP/err")"
echo "test_clip_geometry: all passed"
