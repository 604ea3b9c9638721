#!/usr/bin/env bash
# fedhpc encode: an mlp 64-32-10 trained for 2 rounds on the digits is the
# frozen encoder of the digits' train rows 700.. and test rows:
# - the file is bitwise the same on 1, 2 and 3 ranks;
# - its features are numpy's relu(W1 x + b1) of the normalised pixels,
#   centred on the mean feature of the encoder's training rows and
#   L2-normalised; the class embeddings are the normalised class means of the
#   training rows' features; the labels are the pool's; attributes as asked;
# - FST-CBDG runs on it; bad settings stop with one line;
# - with data.server_fraction (the encoder from `fedhpc pretrain` on the same
#   held-out rows): bitwise on 1 and 3 ranks; /train holds exactly the rows
#   not held out, in order, with numpy's features; the class embeddings are
#   numpy's prototypes of the held-out rows (centred on their mean), which
#   are round(f n_c) of each class; a skip_train beside it is refused.
source "$(dirname "$0")/lib.sh"
DIGITS="$SRC_DIR/input/digits.h5"
cat >"$TMP/enc.ini" <<EOF
[run]
algorithm = fedavg
rounds = 2
clients = 4
client_fraction = 1
[data]
source = hdf5
path = $DIGITS
[model]
arch = mlp
hidden = 32
[train]
lr = 0.05
[encode]
model = $TMP/pre/model.h5
skip_train = 700
logit_scale = 15
batch = 64
EOF
fh_mpirun 2 run "$TMP/enc.ini" --set output.dir="$TMP" --set output.name=pre >"$TMP/pre.log" 2>&1 \
  || { cat "$TMP/pre.log"; fail "pretraining the encoder"; }
for np in 1 2 3; do
  fh_mpirun "$np" encode "$TMP/enc.ini" --set encode.out="$TMP/f$np.h5" >"$TMP/enc$np.log" 2>&1 \
    || { cat "$TMP/enc$np.log"; fail "encode on $np ranks"; }
done
grep -q "encode: wrote $TMP/f3.h5: 738 train and 359 test rows of 32 features, 10 class embeddings" "$TMP/enc3.log" \
  || { cat "$TMP/enc3.log"; fail "no 'wrote' line"; }
"$PY" - "$TMP" "$DIGITS" <<'PY' || fail "the feature file"
import sys, h5py, numpy as np
tmp, digits = sys.argv[1], sys.argv[2]
def load(p):
    with h5py.File(p, "r") as f:
        out = {}
        f.visititems(lambda k, v: out.__setitem__(k, v[()]) if isinstance(v, h5py.Dataset) else None)
        return out, dict(f.attrs)
ref, attrs = load(f"{tmp}/f1.h5")
for n in (2, 3):
    other, _ = load(f"{tmp}/f{n}.h5")
    assert ref.keys() == other.keys()
    for k in ref:
        assert ref[k].tobytes() == other[k].tobytes(), f"{k} differs on {n} ranks"
with h5py.File(digits, "r") as f:
    scale, mean, std = f.attrs["value_scale"], f.attrs["mean"][0], f.attrs["std"][0]
    xtr = (f["train/x"][()].reshape(-1, 64) / scale - mean) / std
    xte = (f["test/x"][()].reshape(-1, 64) / scale - mean) / std
    ytr, yte = f["train/y"][()], f["test/y"][()]
with h5py.File(f"{tmp}/pre/model.h5", "r") as f:
    W1, b1 = f["params/fc1.weight"][()].astype(np.float64), f["params/fc1.bias"][()].astype(np.float64)
enc = lambda x: np.maximum(x @ W1.T + b1, 0)
ftr = enc(xtr)
mu = ftr.mean(0)
unit = lambda z: z / np.linalg.norm(z, axis=1, keepdims=True)
ztr, zte = unit(ftr - mu), unit(enc(xte) - mu)
T = unit(np.stack([ztr[ytr == c].mean(0) for c in range(10)]))
err = max(np.abs(ref["train/x"] - ztr[700:]).max(), np.abs(ref["test/x"] - zte).max(), np.abs(ref["class_embeddings"] - T).max())
assert err < 2e-5, f"features differ from numpy's by {err}"
assert (ref["train/y"] == ytr[700:]).all() and (ref["test/y"] == yte).all()
assert ref["train/x"].shape == (738, 32) and ref["class_embeddings"].shape == (10, 32) and len(ref["class_names"]) == 10
assert attrs["logit_scale"] == 15 and attrs["skip_train"] == 700 and attrs["num_classes"] == 10
zs = np.mean((zte @ T.T).argmax(1) == yte)
print(f"ok: features within {err:.1e} of numpy's; zero-shot accuracy of the prototypes on the test rows {zs:.3f}")
PY
ok "encode: bitwise the same on 1, 2, 3 ranks, and numpy's extractor features, centring and prototypes"

fh_mpirun 2 run "$SRC_DIR/input/fstcbdg_small.ini" --set data.path="$TMP/f2.h5" --set run.rounds=3 \
  --set output.dir="$TMP" --set output.name=fst >"$TMP/fst.log" 2>&1 || { cat "$TMP/fst.log"; fail "fstcbdg on the file"; }
grep -q "fstcbdg (cbdg): linear head on 32-dimensional features, 10 classes, logit scale 15" "$TMP/fst.log" \
  || { cat "$TMP/fst.log"; fail "fstcbdg did not read the file's classes and scale"; }
ok "fstcbdg runs on the encoded file"

# refusals: exit code and message
refuse() {
  local code=$1 msg=$2 rc=0
  shift 2
  timeout 60 "$FEDHPC" encode "$TMP/enc.ini" --set encode.out="$TMP/bad.h5" "$@" >"$TMP/bad.log" 2>&1 || rc=$?
  [[ $rc -eq $code ]] && grep -qF -- "$msg" "$TMP/bad.log" || { cat "$TMP/bad.log"; fail "expected exit $code and '$msg'"; }
  [[ ! -e $TMP/bad.h5 ]] || fail "a failed encode left $TMP/bad.h5"
  ok "refused ($code): $msg"
}
refuse 4 "encode.model = '$TMP/none.h5': no such file" --set encode.model="$TMP/none.h5"
refuse 3 "encode.skip_train = 1438 leaves none of the 1438 train rows" --set encode.skip_train=1438
refuse 3 "are 3x8x8 samples but the encoder $TMP/pre/model.h5 takes 1x8x8" --set data.source=synthimg \
  --set data.synthimg_height=8 --set data.synthimg_width=8
fh_mpirun 1 run "$TMP/enc.ini" --set model.hidden= --set run.rounds=1 --set output.dir="$TMP" --set output.name=flat \
  >"$TMP/flat.log" 2>&1 || fail "softmax regression run"
refuse 3 "is a single Linear layer (model.hidden empty): it has no feature extractor" --set encode.model="$TMP/flat/model.h5"

# the labelled split held out by data.server_fraction: pretrain on it, encode the rest
srv=(--set data.server_fraction=0.3 --set pretrain.epochs=3 --set pm.path="$TMP/pm.h5" --set encode.skip_train=0
  --set encode.model="$TMP/pm.h5")
fh_mpirun 2 pretrain "$TMP/enc.ini" "${srv[@]}" >"$TMP/pm.log" 2>&1 || { cat "$TMP/pm.log"; fail "pretrain"; }
for np in 1 3; do
  fh_mpirun "$np" encode "$TMP/enc.ini" "${srv[@]}" --set encode.out="$TMP/s$np.h5" >"$TMP/s$np.log" 2>&1 \
    || { cat "$TMP/s$np.log"; fail "encode with server rows on $np ranks"; }
done
fh_mpirun 2 encode "$TMP/enc.ini" "${srv[@]}" --set encode.center=false --set encode.out="$TMP/snc.h5" \
  >"$TMP/snc.log" 2>&1 || { cat "$TMP/snc.log"; fail "encode with server rows, uncentred"; }
grep -q "class embeddings from its 434 server rows (data.server_fraction = 0.3), which leave the encoded train pool" \
  "$TMP/s1.log" || { cat "$TMP/s1.log"; fail "no server-rows line"; }
! grep -q "warning" "$TMP/s1.log" || { cat "$TMP/s1.log"; fail "a warning with matching decks"; }
"$PY" - "$TMP" "$DIGITS" <<'PY' || fail "the feature file with server rows"
import sys, h5py, numpy as np
tmp, digits = sys.argv[1], sys.argv[2]
with h5py.File(f"{tmp}/s1.h5", "r") as a, h5py.File(f"{tmp}/s3.h5", "r") as b:
    for k in ("train/x", "train/y", "test/x", "class_embeddings"):
        assert a[k][()].tobytes() == b[k][()].tobytes(), f"{k} differs on 3 ranks"
    fx, fy, T, nsrv = a["train/x"][()], a["train/y"][()], a["class_embeddings"][()], a.attrs["server_rows"]
with h5py.File(digits, "r") as f:
    scale, mean, std = f.attrs["value_scale"], f.attrs["mean"][0], f.attrs["std"][0]
    x = (f["train/x"][()].reshape(-1, 64) / scale - mean) / std
    y = f["train/y"][()]
with h5py.File(f"{tmp}/pm.h5", "r") as f:
    W1, b1 = f["params/fc1.weight"][()].astype(np.float64), f["params/fc1.bias"][()].astype(np.float64)
feat = np.maximum(x @ W1.T + b1, 0)
unit = lambda z: z / np.linalg.norm(z, axis=1, keepdims=True)
with h5py.File(f"{tmp}/snc.h5", "r") as f: # encode.center = false: z = unit(f)
    gx, gy, GT = f["train/x"][()], f["train/y"][()], f["class_embeddings"][()]
assert (gy == fy).all() and len(fy) == len(y) - nsrv == len(y) - 434, (len(fy), nsrv)
z = unit(feat)
keep, j = [], 0  # the kept rows are ascending: walk both in order
for i in range(len(gy)):
    while not (y[j] == gy[i] and np.abs(z[j] - gx[i]).max() < 2e-5):
        j += 1
    keep.append(j)
    j += 1
held = np.setdiff1d(np.arange(len(y)), keep)
for c in range(10):
    assert (y[held] == c).sum() == np.floor(0.3 * (y == c).sum() + 0.5), c
T_np = unit(np.stack([z[held][y[held] == c].mean(0) for c in range(10)]))
err = np.abs(T_np - GT).max()
assert err < 2e-5, f"class embeddings differ from numpy's prototypes of the held-out rows by {err}"
print(f"ok: /train = the {len(keep)} rows not held out, in order; prototypes of the {len(held)} held-out rows within {err:.1e}")
PY
ok "encode with data.server_fraction: bitwise on 1 and 3 ranks, /train the rows not held out, prototypes of the held-out rows"
refuse 3 "encode.skip_train = 5 and data.server_fraction = 0.3 both pick the labelled rows" --set data.server_fraction=0.3 \
  --set encode.skip_train=5
fh_mpirun 1 encode "$TMP/enc.ini" "${srv[@]}" --set data.server_fraction=0.2 --set encode.out="$TMP/w.h5" >"$TMP/w.log" 2>&1 \
  || { cat "$TMP/w.log"; fail "encode with another fraction"; }
grep -q "the class embeddings' rows are not the rows the encoder was trained on" "$TMP/w.log" \
  || { cat "$TMP/w.log"; fail "no warning for another fraction than the encoder's"; }
ok "another data.server_fraction than the encoder's is warned about"
echo "$NCHECKS passed, 0 failed"
