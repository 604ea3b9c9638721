#!/usr/bin/env bash
# Names, lengths and messages: output.name must be a plain name; a run whose
# config.ini holds long values (a deep data.path) resumes from it; a long
# comment line is read; a malformed --set is a bad command line (exit 2); a
# data file's wrong num_classes, an int64 label beyond int32 and a truncated
# file are exit 4 naming the cause; a model or data too big for the node's memory are
# refused before it is allocated; pretrain makes its output folder.
source "$(dirname "$0")/lib.sh"
DECK="$SRC_DIR/input/quickstart.ini"

fh_expect name-dotdot 3 "output.name = '../../x'.*plain folder name" 1 -- run "$DECK" --set output.dir="$TMP/out" \
  --set output.name=../../x
[[ ! -e $TMP/x ]] || fail "name-dotdot: wrote outside output.dir"
long=$(printf 'n%.0s' $(seq 300))
fh_expect name-300 3 "output.name = 'nnn.*\(300 bytes\).*at most 255 bytes" 3 -- run "$DECK" --set output.dir="$TMP/out" \
  --set output.name="$long"
fh_expect set-without-value 2 "--set run.rounds: expected section.key=value" 1 -- run "$DECK" --set run.rounds

# a deep data.path (over 200 characters) and a long comment: config.ini is read back and resumes
deep=$TMP/$(printf 'd%.0s' $(seq 120))/$(printf 'e%.0s' $(seq 120))
mkdir -p "$deep"
ln -s "$SRC_DIR/input/digits.h5" "$deep/digits.h5"
printf '; %s\n' "$(printf 'c%.0s' $(seq 400))" >"$TMP/long.ini"
cat "$DECK" >>"$TMP/long.ini"
fh_mpirun 2 run "$TMP/long.ini" --set data.source=hdf5 --set data.path="$deep/digits.h5" --set run.rounds=2 \
  --set train.epochs=1 --set checkpoint.every=2 --set output.dir="$TMP" --set output.name=deep >"$TMP/deep.log" 2>&1 \
  || { cat "$TMP/deep.log"; fail "a deck with a 400-character comment and a deep data.path"; }
[[ $(grep -c "^path = .\{240,\}" "$TMP/deep/config.ini") -eq 1 ]] || fail "config.ini lacks the long data.path"
fh_mpirun 3 run "$TMP/deep/config.ini" --set run.rounds=3 --resume "$TMP/deep" >"$TMP/deep-resume.log" 2>&1 \
  || { cat "$TMP/deep-resume.log"; fail "the resume from a config.ini with a long line"; }
ok "a 400-character comment is read; config.ini with a ${#deep}-character folder in data.path resumes"

# data files: made with h5py
"$PY" - "$TMP" <<'PY'
import sys, h5py, numpy as np
t = sys.argv[1]
rng = np.random.default_rng(0)
def make(name, num_classes=3, y_dtype=np.int32, bad_label=None):
    with h5py.File(f"{t}/{name}.h5", "w") as f:
        f.attrs["num_classes"] = np.int64(num_classes)
        f["train/x"] = rng.random((40, 5), dtype=np.float32)
        y = rng.integers(0, 3, 40).astype(y_dtype)
        if bad_label is not None: y[11] = bad_label
        f["train/y"] = y
        f["test/x"] = rng.random((20, 5), dtype=np.float32)
        f["test/y"] = rng.integers(0, 3, 20).astype(np.int32)
make("huge_classes", num_classes=2**31 - 1)
make("int64_label", y_dtype=np.int64, bad_label=2**33 + 3)
make("truncated")
PY
truncate -s 3000 "$TMP/truncated.h5"
data=(--set data.source=hdf5 --set run.clients=4 --set run.rounds=1 --set output.dir="$TMP/out")
fh_expect num-classes 4 "huge_classes.h5: root attribute num_classes = 2147483647" 2 -- run "$DECK" "${data[@]}" \
  --set data.path="$TMP/huge_classes.h5"
fh_expect int64-label 4 "int64_label.h5: /train/y\[11\] = 8589934595 is outside \[0, 3\)" 2 -- run "$DECK" "${data[@]}" \
  --set data.path="$TMP/int64_label.h5"
fh_expect truncated-data 4 "truncated.h5.*truncated or damaged" 2 -- run "$DECK" "${data[@]}" --set data.path="$TMP/truncated.h5"

# a model far too big for any node: refused with the estimate, before allocation
fh_expect too-big 3 "model.hidden = 200000,200000: the model has .* parameters and needs about .* GiB per rank" 2 -- \
  run "$DECK" --set model.hidden=200000,200000 --set output.dir="$TMP/out"

# data far too big for any node (2048x2048 images): refused with the estimate, before allocation
fh_expect data-too-big 3 "the data of this rank's 50 clients \(30000 rows of 12582912 values\) needs about .* GiB per rank" \
  2 -- run "$DECK" --set data.source=synthimg --set data.synthimg_height=2048 --set data.synthimg_width=2048 \
  --set output.dir="$TMP/out"

# pretrain into an output.dir that does not exist yet
fh_mpirun 2 pretrain "$SRC_DIR/input/augfl_digits.ini" --set output.dir="$TMP/new/sub" \
  --set data.path="$SRC_DIR/input/digits.h5" --set data.server_shards=4 --set pretrain.epochs=1 --set pm.hidden=16 \
  >"$TMP/pretrain.log" 2>&1 || { cat "$TMP/pretrain.log"; fail "pretrain into a new output.dir"; }
[[ -f $TMP/new/sub/augfl_digits.pm.h5 ]] || fail "pretrain: no $TMP/new/sub/augfl_digits.pm.h5"
ok "pretrain creates output.dir"
echo "$NCHECKS passed, 0 failed ($FAULT_CASES fault cases)"
