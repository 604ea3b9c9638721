#!/usr/bin/env bash
# FedGC (input/fedgc_digits.ini, shortened):
# - the run with generated data is bitwise identical on 1, 2 and 3 ranks
#   (model, metrics and the membership score), for FedAvg with the deck's
#   defaults, FedProx with water-filling, real-data guidance, the
#   missing-classes mix, diagonal covariances and n_k weights, and SCAFFOLD
#   with the single design and prompt guidance;
# - the generated rows make the run differ from the one without them, and
#   each run that asks writes membership.h5 with an AUC in [0, 1] and the
#   generated rows it trained with (0 without FedGC);
# - an external pool of generated samples (fedgc.pool: HDF5 /x, /y made here
#   from digits rows) replaces the generator: rank-count invariant, needs no
#   server rows; its rows are dealt without replacement by default (a budget
#   larger than a class's pool rows is refused, naming fedgc.pool_draw, and
#   runs with fedgc.pool_draw = replace); the generator's keys set beside a
#   pool are warned about once; a channels-last pool is refused with both
#   shapes unless fedgc.pool_layout = nhwc, and a 3-channel pool stored
#   channels last and read with nhwc gives the same run bit for bit as the
#   same pool stored channels first;
# - a pool routed by /client or by /domain (the clients' domains in the data
#   file's /train/client_domain) runs bitwise on 1 and 3 ranks and differs
#   from the unrouted run; a client id or a domain no client has, both routes
#   at once, and /domain without /train/client_domain are refused (4) naming
#   the file and dataset;
# - the server's real hold-out rows in place of generated ones (fedgc.source
#   = holdout): with M = 1000 above the digits' 287 hold-out rows, dealt
#   cyclically, bitwise on 1, 2 and 3 ranks, membership.h5 counting the 1000
#   dealt rows as generated and the same members as the run without them;
#   within the hold-out's rows (M = 100) the cyclic deal is the disjoint deal bit for
#   bit; the generator's keys the deck sets are warned about once; a budget beyond a class's
#   hold-out rows under the default disjoint deal, a pool beside the
#   hold-out and no hold-out are refused (3), naming the keys;
# - decks that cannot work are refused naming the key or file: no server rows
#   and no pool (3), a pool of the wrong sample shape (4), a pool label out of
#   range (4).
source "$(dirname "$0")/lib.sh"
deck="$SRC_DIR/input/fedgc_digits.ini"
cd "$SRC_DIR" # the deck names input/digits.h5
common=(--set run.rounds=10 --set output.dir="$TMP")

variants=("fedavg|"
  "fedprox|--set run.algorithm=fedprox --set fedprox.mu=0.01 --set fedgc.budget=waterfill --set fedgc.guidance=real --set fedgc.class_mix=missing --set fedgc.covariance=diag --set fedgc.weights=real"
  "scaffold|--set run.algorithm=scaffold --set train.momentum=0 --set fedgc.design=single --set fedgc.guidance=prompt --set fedgc.budget=equal")
for spec in "${variants[@]}"; do
  IFS='|' read -r name settings <<<"$spec"
  read -ra extra <<<"$settings"
  for np in 1 2 3; do
    fh_mpirun "$np" run "$deck" "${common[@]}" "${extra[@]}" --set output.name="${name}_np$np" >"$TMP/${name}_np$np.log" 2>&1 \
      || { cat "$TMP/${name}_np$np.log"; fail "$name on $np ranks"; }
  done
  grep -q "fedgc: 1000 generated samples over 30 clients" "$TMP/${name}_np1.log" || { cat "$TMP/${name}_np1.log"; fail "$name: no generation line"; }
  "$PY" "$(dirname "$0")/compare_runs.py" "$TMP" "${name}_np1" "${name}_np2" "${name}_np3" >"$TMP/$name.cmp" \
    || { cat "$TMP/$name.cmp"; fail "$name: runs differ"; }
  "$PY" - "$TMP" "$name" <<'PY' || fail "$name: membership.h5 differs over rank counts or is out of range"
import sys, h5py
tmp, name = sys.argv[1:]
a = [dict(h5py.File(f"{tmp}/{name}_np{n}/membership.h5", "r").attrs) for n in (1, 2, 3)]
for k in ("auc", "members", "nonmembers", "generated_rows", "member_loss", "nonmember_loss"):
    assert a[0][k] == a[1][k] == a[2][k], (k, [x[k] for x in a])
assert 0 <= a[0]["auc"] <= 1 and a[0]["generated_rows"] == 1000, a[0]
PY
  ok "$name with generated data: 1, 2, 3 ranks bitwise, membership AUC the same"
done

# without generated data: another run, and the score says so
fh_mpirun 2 run "$deck" "${common[@]}" --set fedgc.enabled=false --set output.name=plain >"$TMP/plain.log" 2>&1 \
  || { cat "$TMP/plain.log"; fail "plain FedAvg"; }
! grep -q "generated samples" "$TMP/plain.log" || fail "plain FedAvg generated samples"
! "$PY" "$(dirname "$0")/compare_runs.py" "$TMP" fedavg_np1 plain >/dev/null 2>&1 || fail "generated data changed nothing"
"$PY" -c 'import sys,h5py; a=h5py.File(sys.argv[1],"r").attrs; sys.exit(not (a["generated_rows"]==0 and 0<=a["auc"]<=1))' \
  "$TMP/plain/membership.h5" || fail "plain FedAvg: membership.h5"
ok "without generated data: the run differs, membership.h5 counts 0 generated rows"

# an external pool: 400 rows of digits as "generated" samples, raw uint8
"$PY" - "$SRC_DIR/input/digits.h5" "$TMP" <<'PY'
import sys, h5py, numpy as np
src, tmp = sys.argv[1:]
with h5py.File(src, "r") as f:
    x, y = f["train/x"][:400], f["train/y"][:400]
with h5py.File(f"{tmp}/pool.h5", "w") as g:
    g["x"], g["y"] = x, y.astype(np.int32)
with h5py.File(f"{tmp}/pool_shape.h5", "w") as g:
    g["x"], g["y"] = x.reshape(400, -1)[:, :60], y
with h5py.File(f"{tmp}/pool_nhwc.h5", "w") as g:
    g["x"], g["y"] = x.reshape(400, 8, 8, 1), y.astype(np.int32)
rng = np.random.default_rng(5)
x3 = rng.random((300, 3, 8, 8), dtype=np.float32)
y3 = rng.integers(0, 4, 300).astype(np.int32)
with h5py.File(f"{tmp}/pool3_nchw.h5", "w") as g:
    g["x"], g["y"] = x3, y3
with h5py.File(f"{tmp}/pool3_nhwc.h5", "w") as g:
    g["x"], g["y"] = np.ascontiguousarray(x3.transpose(0, 2, 3, 1)), y3
with h5py.File(f"{tmp}/pool_label.h5", "w") as g:
    y2 = y.astype(np.int32).copy(); y2[7] = 10
    g["x"], g["y"] = x, y2
PY
for np in 1 3; do
  fh_mpirun "$np" run "$deck" "${common[@]}" --set data.server_fraction=0 --set fedgc.pool="$TMP/pool.h5" \
    --set fedgc.total=200 --set fedgc.design=single \
    --set output.name="pool_np$np" >"$TMP/pool_np$np.log" 2>&1 || { cat "$TMP/pool_np$np.log"; fail "pool on $np ranks"; }
done
[[ $(grep -c "built-in generator's keys do nothing: fedgc.design" "$TMP/pool_np1.log") -eq 1 ]] \
  || { cat "$TMP/pool_np1.log"; fail "fedgc.design beside a pool is not warned about once"; }
fh_mpirun 2 run "$deck" "${common[@]}" --set data.server_fraction=0 --set fedgc.pool="$TMP/pool.h5" \
  --set fedgc.pool_draw=replace --set output.name=pool_replace >"$TMP/pool_replace.log" 2>&1 \
  || { cat "$TMP/pool_replace.log"; fail "pool with replacement"; }
ok "pool with replacement: 1000 draws from 400 rows"
grep -q "fedgc: 400 generated samples from the pool" "$TMP/pool_np1.log" || { cat "$TMP/pool_np1.log"; fail "pool not read"; }
"$PY" "$(dirname "$0")/compare_runs.py" "$TMP" pool_np1 pool_np3 >/dev/null || fail "pool runs differ over rank counts"
ok "external pool: read, 1 and 3 ranks bitwise"

expect_fail() { # expect_fail CODE TEXT ARGS...
  local code=$1 text=$2 rc=0
  shift 2
  fh_mpirun 2 run "$deck" "${common[@]}" "$@" --set output.name=bad >"$TMP/bad.log" 2>&1 || rc=$?
  [[ $rc -eq $code ]] && grep -qF "$text" "$TMP/bad.log" || { cat "$TMP/bad.log"; fail "$*: exit $rc, expected $code"; }
  ok "refused ($code): $*"
}
expect_fail 3 "data.server_fraction = 0 holds none out" --set data.server_fraction=0
expect_fail 4 "samples of 60 values, but digits has samples of 1 x 8 x 8 = 64" --set fedgc.pool="$TMP/pool_shape.h5"
expect_fail 4 "/y[7] = 10 is not a class of digits" --set fedgc.pool="$TMP/pool_label.h5"
expect_fail 3 "fedgc.pool_draw = disjoint: the clients need" --set data.server_fraction=0 --set fedgc.pool="$TMP/pool.h5"
expect_fail 4 "channels last (NHWC)" --set data.server_fraction=0 --set fedgc.pool="$TMP/pool_nhwc.h5" --set fedgc.total=200
expect_fail 4 "fedgc.pool_layout = nhwc needs [N, 8, 8, 1]" --set data.server_fraction=0 --set fedgc.pool="$TMP/pool.h5" \
  --set fedgc.pool_layout=nhwc --set fedgc.total=200
img=(--set data.source=synthimg --set data.synthimg_channels=3 --set data.synthimg_height=8 --set data.synthimg_width=8
  --set data.synthimg_classes=4 --set data.synthimg_train=600 --set data.synthimg_test=200 --set data.server_fraction=0
  --set fedgc.total=200 --set partition.method=iid)
fh_mpirun 2 run "$deck" "${common[@]}" "${img[@]}" --set fedgc.pool="$TMP/pool3_nchw.h5" --set output.name=p3c \
  >"$TMP/p3c.log" 2>&1 || { cat "$TMP/p3c.log"; fail "3-channel pool, channels first"; }
fh_mpirun 2 run "$deck" "${common[@]}" "${img[@]}" --set fedgc.pool="$TMP/pool3_nhwc.h5" --set fedgc.pool_layout=nhwc \
  --set output.name=p3l >"$TMP/p3l.log" 2>&1 || { cat "$TMP/p3l.log"; fail "3-channel pool, channels last"; }
"$PY" "$(dirname "$0")/compare_runs.py" "$TMP" p3c p3l >/dev/null || fail "the channels-last pool read with nhwc differs"
ok "a 3-channel pool stored channels last and read with fedgc.pool_layout = nhwc equals the channels-first run"

# routed pools: every digits train row, by client (30 clients) or by domain (3)
"$PY" - "$SRC_DIR/input/digits.h5" "$TMP" <<'PY'
import sys, shutil, h5py, numpy as np
src, tmp = sys.argv[1:]
with h5py.File(src, "r") as f:
    x, y = f["train/x"][:], f["train/y"][:].astype(np.int32)
n = len(y)
def pool(name, **routes):
    with h5py.File(f"{tmp}/{name}.h5", "w") as g:
        g["x"], g["y"] = x, y
        for k, v in routes.items():
            g[k] = np.asarray(v, dtype=np.int32)
pool("pool_all")
pool("pool_client", client=np.arange(n) % 30)
pool("pool_domain", domain=np.arange(n) % 3)
pool("pool_badclient", client=np.where(np.arange(n) == 11, 30, np.arange(n) % 30))
pool("pool_baddomain", domain=np.where(np.arange(n) == 5, 3, np.arange(n) % 3))
pool("pool_both", client=np.arange(n) % 30, domain=np.arange(n) % 3)
shutil.copy(src, f"{tmp}/digits_dom.h5")
with h5py.File(f"{tmp}/digits_dom.h5", "a") as f:
    f["train/client_domain"] = (np.arange(30) % 3).astype(np.int32)
PY
routed=(--set data.server_fraction=0 --set fedgc.total=200 --set fedgc.budget=equal)
for route in client domain; do
  dpath=()
  [[ $route == domain ]] && dpath=(--set data.path="$TMP/digits_dom.h5")
  for np in 1 3; do
    fh_mpirun "$np" run "$deck" "${common[@]}" "${routed[@]}" "${dpath[@]}" --set fedgc.pool="$TMP/pool_$route.h5" \
      --set output.name="route_${route}_np$np" >"$TMP/route_${route}_np$np.log" 2>&1 \
      || { cat "$TMP/route_${route}_np$np.log"; fail "pool routed by $route on $np ranks"; }
  done
  grep -q "routed by /$route" "$TMP/route_${route}_np1.log" || { cat "$TMP/route_${route}_np1.log"; fail "no routing line"; }
  "$PY" "$(dirname "$0")/compare_runs.py" "$TMP" "route_${route}_np1" "route_${route}_np3" >/dev/null \
    || fail "pool routed by $route differs over rank counts"
  ok "pool routed by /$route: 1 and 3 ranks bitwise"
done
fh_mpirun 1 run "$deck" "${common[@]}" "${routed[@]}" --set fedgc.pool="$TMP/pool_all.h5" --set output.name=route_none \
  >"$TMP/route_none.log" 2>&1 || { cat "$TMP/route_none.log"; fail "unrouted pool"; }
for route in client domain; do
  ! "$PY" "$(dirname "$0")/compare_runs.py" "$TMP" route_none "route_${route}_np1" >/dev/null 2>&1 \
    || fail "routing by $route changed nothing"
done
ok "the same rows routed by client or by domain give other runs than unrouted"
expect_fail 4 "/client[11] = 30 is not a client of this run" "${routed[@]}" --set fedgc.pool="$TMP/pool_badclient.h5"
expect_fail 4 "/domain[5] = 3 is the domain of no client (data.path = $TMP/digits_dom.h5, /train/client_domain)" \
  "${routed[@]}" --set data.path="$TMP/digits_dom.h5" --set fedgc.pool="$TMP/pool_baddomain.h5"
expect_fail 4 "holds both /client and /domain" "${routed[@]}" --set fedgc.pool="$TMP/pool_both.h5"
expect_fail 4 "no /train/client_domain" "${routed[@]}" --set fedgc.pool="$TMP/pool_domain.h5"

# the hold-out's real rows as the baseline of the generator fitted on them
ho=(--set fedgc.source=holdout --set fedgc.pool_draw=cycle)
for np in 1 2 3; do
  fh_mpirun "$np" run "$deck" "${common[@]}" "${ho[@]}" --set output.name="ho_np$np" >"$TMP/ho_np$np.log" 2>&1 \
    || { cat "$TMP/ho_np$np.log"; fail "hold-out rows on $np ranks"; }
done
grep -q "fedgc: 1000 real hold-out rows over 30 clients" "$TMP/ho_np1.log" || { cat "$TMP/ho_np1.log"; fail "no hold-out line"; }
[[ $(grep -c "fedgc.source = holdout deals real rows, so the built-in generator's keys do nothing: fedgc.design, fedgc.guidance, fedgc.strength, fedgc.pca_dims, fedgc.components$" \
  "$TMP/ho_np3.log") -eq 1 ]] || { cat "$TMP/ho_np3.log"; fail "the deck's generator keys beside the hold-out not warned once"; }
"$PY" "$(dirname "$0")/compare_runs.py" "$TMP" ho_np1 ho_np2 ho_np3 >/dev/null || fail "hold-out runs differ over rank counts"
! "$PY" "$(dirname "$0")/compare_runs.py" "$TMP" ho_np1 fedavg_np1 >/dev/null 2>&1 || fail "hold-out rows = generated rows"
"$PY" - "$TMP" <<'PY' || fail "hold-out: membership.h5"
import sys, h5py
tmp = sys.argv[1]
a = [dict(h5py.File(f"{tmp}/{n}/membership.h5", "r").attrs) for n in ("ho_np1", "ho_np3", "plain")]
assert a[0]["generated_rows"] == a[1]["generated_rows"] == 1000 and a[0]["auc"] == a[1]["auc"], a[:2]
assert a[0]["members"] == a[2]["members"] and a[0]["nonmembers"] == a[2]["nonmembers"], (a[0], a[2])
PY
ok "hold-out rows (M = 1000 > 287 rows, cyclic): 1, 2, 3 ranks bitwise; dealt rows not members"
for draw in disjoint cycle; do
  fh_mpirun 2 run "$deck" "${common[@]}" --set fedgc.source=holdout --set fedgc.total=100 --set fedgc.budget=waterfill --set fedgc.pool_draw=$draw \
    --set output.name="ho100_$draw" >"$TMP/ho100_$draw.log" 2>&1 \
    || { cat "$TMP/ho100_$draw.log"; fail "100 hold-out rows, $draw"; }
done
"$PY" "$(dirname "$0")/compare_runs.py" "$TMP" ho100_disjoint ho100_cycle >/dev/null || fail "cycle differs from disjoint"
ok "100 hold-out rows (water-filling): the cyclic deal is the disjoint one bit for bit"
expect_fail 3 "the clients need 93 rows of class 0 but the server's hold-out holds 28; lower fedgc.total, raise data.server_fraction, or set fedgc.pool_draw = cycle" \
  --set fedgc.source=holdout
expect_fail 3 "fedgc.source = holdout deals the server's real rows, and fedgc.pool = $TMP/pool.h5 names a second source" \
  --set fedgc.source=holdout --set fedgc.pool="$TMP/pool.h5"
expect_fail 3 "fedgc.source = holdout deals the server's hold-out rows, and data.server_fraction = 0 holds none out" \
  --set fedgc.source=holdout --set data.server_fraction=0 --set fedgc.total=100
echo "$NCHECKS passed, 0 failed"
