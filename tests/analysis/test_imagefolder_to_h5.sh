#!/bin/bash
# scripts/imagefolder_to_h5.py on tiny PNG trees made here: a flat tree
# (CLASS/IMAGE, non-square images, a stray text file) and a two-level one
# (DOMAIN/CLASS/IMAGE, domains of different image sizes). Checked with h5py:
# the layout of docs/dataset-format.md (uint8 [N, C, H, W], int32 labels,
# num_classes, class_names, value_scale, mean and std of the train rows), every
# image in exactly one split with its own pixels and label, the per-class test
# counts, the same file from the same seed, client_offsets whose clients each
# hold one domain and /train/client_domain naming it (none for pooled
# domains), the pooled form, --grey, --size. Then fedhpc reads the files: a
# one-round run on the flat file (IID) and on the natural clients (and
# run.clients = 3 on them exits 4 asking for 4), a FedGC pool routed by
# /domain on the natural clients (which needs /train/client_domain),
# `fedhpc partition` with
# Dirichlet(0.1) on the pooled file (its client x class counts). Errors (empty
# class folder, unreadable image, classes that differ across domains, mixed
# sizes without --size) exit 1 with one line naming the file, and leave no
# output file.
# Skips (exit 77) where python3 cannot import PIL (Debian's python3-pil).
# Env (from ctest): FEDHPC, SRC_DIR, and the OMPI root variables.
set -euo pipefail

: "${FEDHPC:?FEDHPC must point to the fedhpc binary}"
: "${SRC_DIR:?SRC_DIR must point to the source tree}"
MPIRUN=${MPIEXEC:-mpirun}
PY=/usr/bin/python3
CONV="$SRC_DIR/scripts/imagefolder_to_h5.py"
if ! "$PY" -c "import PIL, h5py, numpy" 2>/dev/null; then
  echo "skip: $PY cannot import PIL, h5py and numpy (Debian's python3-pil, python3-h5py, python3-numpy)"
  exit 77
fi

TMP=$(mktemp -d "${TMPDIR:-/tmp}/fh_imagefolder.XXXXXX")
trap 'rm -rf "$TMP"' EXIT
failures=0
pass() { echo "ok:   $*"; }
fail() { echo "FAIL: $*"; failures=$((failures + 1)); }

# Trees: image i of class c (of domain d) has random pixels from the seed
# (d, c, i); flat/ has classes cat, dog, fish with 6 images of 10x8 (W x H);
# dom/ has domains a (8x8) and b (12x12) with 5 images per class.
"$PY" - "$TMP" <<'PY'
import os, sys
import numpy as np
from PIL import Image
tmp = sys.argv[1]
def tree(root, d, n, w, h):
    for c, cls in enumerate(["cat", "dog", "fish"]):
        os.makedirs(os.path.join(root, cls))
        for i in range(n):
            a = np.random.default_rng([d, c, i]).integers(0, 256, (h, w, 3), dtype=np.uint8)
            Image.fromarray(a).save(os.path.join(root, cls, "%s_%d.png" % (cls, i)))
tree(os.path.join(tmp, "flat"), 9, 6, 10, 8)
open(os.path.join(tmp, "flat", "cat", "notes.txt"), "w").write("not an image\n")
tree(os.path.join(tmp, "dom", "a"), 0, 5, 8, 8)
tree(os.path.join(tmp, "dom", "b"), 1, 5, 12, 12)
PY

convert() { # OUT ARGS...: the script, which must succeed
  local out=$1
  shift
  if "$PY" "$CONV" "$@" "$out" >"$TMP/conv.log" 2>&1; then pass "imagefolder_to_h5.py $* -> $(tail -1 "$TMP/conv.log")"
  else fail "imagefolder_to_h5.py $*: $(cat "$TMP/conv.log")"; fi
}
convert "$TMP/flat.h5" "$TMP/flat" --test-fraction 0.34 --seed 3
convert "$TMP/flat_again.h5" "$TMP/flat" --test-fraction 0.34 --seed 3
convert "$TMP/flat_grey.h5" "$TMP/flat" --test-fraction 0.34 --seed 3 --grey --size 6
convert "$TMP/dom_clients.h5" "$TMP/dom" --domains clients --clients-per-domain 2 --size 8 --test-fraction 0.4
convert "$TMP/dom_pool.h5" "$TMP/dom" --domains pool --size 8 --test-fraction 0.4 --name pooled

"$PY" - "$TMP" <<'PY' || failures=$((failures + 1))
import os, sys
import h5py
import numpy as np
from PIL import Image
tmp = sys.argv[1]
failures = 0
def check(ok, what):
    global failures
    print(("ok:   " if ok else "FAIL: ") + what)
    failures += not ok
def strs(a):
    return [s.decode() if isinstance(s, bytes) else s for s in a]
def image(d, c, i, w, h):
    return np.random.default_rng([d, c, i]).integers(0, 256, (h, w, 3), dtype=np.uint8)

with h5py.File(os.path.join(tmp, "flat.h5"), "r") as f:
    x = {s: f[s + "/x"][()] for s in ("train", "test")}
    y = {s: f[s + "/y"][()] for s in ("train", "test")}
    check(f["train/x"].dtype == np.uint8 and x["train"].shape[1:] == (3, 8, 10) and x["test"].shape[1:] == (3, 8, 10),
          "flat: x is uint8 [N, 3, 8, 10] (channels first, H = 8, W = 10), got %s" % (x["train"].shape,))
    check(f["train/y"].dtype == np.int32 and "client_offsets" not in f["train"], "flat: int32 labels, no offsets")
    check(int(f.attrs["num_classes"]) == 3 and strs(f.attrs["class_names"]) == ["cat", "dog", "fish"]
          and strs([f.attrs["name"]]) == ["flat"], "flat: num_classes 3, class_names in folder order, name")
    # 6 images per class, round(0.34 * 6) = 2 in test; notes.txt skipped.
    check([int((y["test"] == c).sum()) for c in range(3)] == [2, 2, 2] and len(y["train"]) == 12,
          "flat: 2 test and 4 train images per class, test labels %s" % list(y["test"]))
    # Every image once, with its own pixels and label.
    refs = {(c, i): image(9, c, i, 10, 8).transpose(2, 0, 1) for c in range(3) for i in range(6)}
    found = []
    for s in ("train", "test"):
        for row, label in zip(x[s], y[s]):
            found += [k for k, r in refs.items() if k[0] == label and np.array_equal(r, row)]
    check(sorted(found) == sorted(refs), "flat: every image in exactly one split with its pixels and label")
    v = x["train"].astype(np.float64) / 255
    check(float(f.attrs["value_scale"]) == 255 and np.allclose(f.attrs["mean"], v.mean(axis=(0, 2, 3)))
          and np.allclose(f.attrs["std"], v.std(axis=(0, 2, 3))), "flat: value_scale 255, mean and std of train x/255")
    with h5py.File(os.path.join(tmp, "flat_again.h5"), "r") as g:
        check(all(np.array_equal(f[k][()], g[k][()]) for k in ("train/x", "train/y", "test/x", "test/y")),
              "flat: the same seed gives the same file")

with h5py.File(os.path.join(tmp, "flat_grey.h5"), "r") as f:
    check(f["train/x"].shape[1:] == (1, 6, 6) and len(f.attrs["mean"]) == 1, "--grey --size 6: [N, 1, 6, 6]")

with h5py.File(os.path.join(tmp, "dom_clients.h5"), "r") as f:
    # 2 domains x 3 classes x 5 images, round(0.4 * 5) = 2 to test: 18 + 12.
    off = {s: f[s + "/client_offsets"][()] for s in ("train", "test")}
    dom = {s: f[s + "/domain"][()] for s in ("train", "test")}
    check(f["train/x"].shape == (18, 3, 8, 8) and f["test/x"].shape == (12, 3, 8, 8),
          "domains: --size 8 gives [18 + 12, 3, 8, 8]")
    check(list(off["train"]) == [0, 5, 9, 14, 18] and list(off["test"]) == [0, 3, 6, 9, 12],
          "domains: 2 clients per domain, offsets %s / %s" % (list(off["train"]), list(off["test"])))
    check(all(len(set(dom[s][off[s][k]:off[s][k + 1]])) == 1 and dom[s][off[s][k]] == k // 2
              for s in ("train", "test") for k in range(4)), "domains: clients 0, 1 hold domain a; 2, 3 domain b")
    check(strs(f.attrs["domain_names"]) == ["a", "b"], "domains: domain_names")
    check(f["train/client_domain"].dtype == np.int32 and list(f["train/client_domain"][()]) == [0, 0, 1, 1],
          "domains: /train/client_domain = [0, 0, 1, 1]")
    # Domain b resized from 12x12: its rows match the resized images.
    ref = np.asarray(Image.fromarray(image(1, 0, 0, 12, 12)).resize((8, 8), Image.BILINEAR)).transpose(2, 0, 1)
    rows = np.concatenate([f["train/x"][()], f["test/x"][()]])
    check(any(np.array_equal(ref, r) for r in rows), "domains: a 12x12 image of domain b resized to 8x8")

with h5py.File(os.path.join(tmp, "dom_pool.h5"), "r") as f:
    check("client_offsets" not in f["train"] and f["train/x"].shape[0] == 18 and strs([f.attrs["name"]]) == ["pooled"]
          and list(np.bincount(f["train/domain"][()])) == [9, 9] and "client_domain" not in f["train"],
          "pool: no offsets and no client domains, 9 train rows per domain, --name")
sys.exit(1 if failures else 0)
PY

# fedhpc reads the files.
deck() { # PATH CLIENTS
  cat <<EOF
[run]
clients = $2
rounds = 1
seed = 1
[data]
source = hdf5
path = $1
[model]
arch = mlp
hidden = 16
[train]
batch_size = 4
[output]
dir = $TMP/runs
EOF
}
fedhpc() { # WHAT LOG -- ARGS...
  local what=$1 log=$2 rc=0
  shift 3
  "$MPIRUN" -np 2 --oversubscribe -x OPENBLAS_NUM_THREADS=1 "$FEDHPC" "$@" >"$log" 2>&1 || rc=$?
  if [[ $rc == 0 ]]; then pass "$what"; else fail "$what: exit $rc"; cat "$log"; fi
}
deck "$TMP/flat.h5" 3 >"$TMP/flat.ini"
fedhpc "fedhpc run: one round on the flat file, 3 clients (IID)" "$TMP/flat.log" -- run "$TMP/flat.ini"
deck "$TMP/dom_clients.h5" 4 >"$TMP/clients.ini"
fedhpc "fedhpc run: one round on the domains' 4 natural clients" "$TMP/clients.log" -- run "$TMP/clients.ini"
# The file's offsets are read: 3 clients against its 4 stop the run.
rc=0
"$MPIRUN" -np 2 --oversubscribe -x OPENBLAS_NUM_THREADS=1 "$FEDHPC" run "$TMP/clients.ini" --set run.clients=3 \
  >"$TMP/clients3.log" 2>&1 || rc=$?
if [[ $rc == 4 ]] && grep -q "set run.clients = 4" "$TMP/clients3.log"; then
  pass "fedhpc reads the 4 natural clients: run.clients = 3 exits 4 asking for 4"
else fail "run.clients = 3 on dom_clients.h5: exit $rc, $(grep -m1 error "$TMP/clients3.log")"; fi
# A pool routed by domain: the file's test rows as "generated" ones, each
# with its domain (the routing itself is checked in tests/unit/test_fl_fedgc.c).
"$PY" - "$TMP" <<'PY' || fail "routed pool file"
import sys, h5py, numpy as np
tmp = sys.argv[1]
with h5py.File(f"{tmp}/dom_clients.h5", "r") as f:
    x, y, d = f["test/x"][()], f["test/y"][()], f["test/domain"][()]
with h5py.File(f"{tmp}/gen_domain.h5", "w") as g:
    g["x"], g["y"], g["domain"] = x, y.astype(np.int32), d.astype(np.int32)
PY
fedhpc "fedhpc run: a FedGC pool routed by /domain on the natural clients" "$TMP/gen.log" -- run "$TMP/clients.ini" \
  --set fedgc.enabled=true --set fedgc.pool="$TMP/gen_domain.h5" --set fedgc.total=8 --set fedgc.budget=equal \
  --set fedgc.pool_draw=replace --set output.name=gen
grep -q "routed by /domain" "$TMP/gen.log" || fail "the pool was not routed by domain: $(grep -m1 fedgc "$TMP/gen.log")"
deck "$TMP/dom_pool.h5" 3 >"$TMP/pool.ini"
fedhpc "fedhpc partition: Dirichlet(0.1) on the pooled domains" "$TMP/pool.log" -- \
  partition "$TMP/pool.ini" --set partition.method=dirichlet --set partition.alpha=0.1 \
  --set partition.min_size=1 --out "$TMP/part.h5"
"$PY" - "$TMP/part.h5" <<'PY' || fail "partition.h5 does not deal the 18 train rows of 3 classes to 3 clients"
import sys, h5py, numpy as np
c = h5py.File(sys.argv[1], "r")["train_counts"][()]
sys.exit(0 if c.shape == (3, 3) and c.sum() == 18 and list(c.sum(axis=0)) == [6, 6, 6] else 1)
PY

# Errors: exit 1, one line on stderr naming the problem, no output file.
"$PY" - "$TMP" <<'PY'
import os, shutil, sys
tmp = sys.argv[1]
os.makedirs(os.path.join(tmp, "empty", "cat"))
shutil.copytree(os.path.join(tmp, "flat", "dog"), os.path.join(tmp, "empty", "dog"))
shutil.copytree(os.path.join(tmp, "flat"), os.path.join(tmp, "broken"))
open(os.path.join(tmp, "broken", "dog", "dog_3.png"), "wb").write(b"\x89PNG\r\n\x1a\n truncated")
shutil.copytree(os.path.join(tmp, "dom"), os.path.join(tmp, "mismatch"))
os.rename(os.path.join(tmp, "mismatch", "b", "fish"), os.path.join(tmp, "mismatch", "b", "bird"))
PY
expect_error() { # PATTERN WHAT ARGS...
  local pattern=$1 what=$2 rc=0
  shift 2
  rm -f "$TMP/bad.h5"
  "$PY" "$CONV" "$@" "$TMP/bad.h5" >"$TMP/out" 2>"$TMP/err" || rc=$?
  if [[ $rc == 1 && $(wc -l <"$TMP/err") == 1 && ! -e $TMP/bad.h5 && ! -e $TMP/bad.h5.tmp ]] &&
    grep -q -- "$pattern" "$TMP/err"; then
    pass "$what: $(cat "$TMP/err")"
  else
    fail "$what: exit $rc, stderr: $(cat "$TMP/err")"
  fi
}
expect_error "empty/cat: no images" "empty class folder" "$TMP/empty"
expect_error "dog_3.png: cannot read the image" "unreadable image" "$TMP/broken"
expect_error "mismatch/b: classes differ.*missing: fish; extra: bird" "classes differ across domains" \
  "$TMP/mismatch" --domains pool
expect_error "give --size" "domains of different image sizes without --size" "$TMP/dom" --domains pool
expect_error "no such folder" "missing root" "$TMP/nowhere"

if ((failures)); then
  echo "$failures check(s) failed"
  exit 1
fi
echo "all checks passed"
