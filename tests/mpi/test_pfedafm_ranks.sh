#!/usr/bin/env bash
# pFedAFM with heterogeneous CNNs (cnn1, cnn3, cnn5 by client id, so every rank
# count puts different architectures on different ranks) on 3x32x32 synthetic
# images: metrics and the final G (model.h5) are bitwise identical on 1, 2 and
# 3 ranks, and with the client state in the hdf5 backend; every client is
# scored with its mixed model and there is no global model; model.h5 holds G
# alone (the extractor of cnn5), which is all that travels.
source "$(dirname "$0")/lib.sh"
common=(--set run.rounds=3 --set run.clients=6 --set run.client_fraction=0.5 --set run.eval_batch=20
        --set data.synthimg_train=150 --set data.synthimg_test=150 --set partition.test_per_client=10
        --set train.batch_size=10 --set hetero.epochs=1 --set hetero.models=cnn1,cnn3,cnn5
        --set output.dir="$TMP")
deck="$SRC_DIR/input/pfedafm_synthimg.ini"
for np in 1 2 3; do
  fh_mpirun "$np" run "$deck" "${common[@]}" --set output.name="np$np" >"$TMP/np$np.log" 2>&1 \
    || { cat "$TMP/np$np.log"; fail "pfedafm on $np ranks"; }
done
fh_mpirun 2 run "$deck" "${common[@]}" --set state.backend=hdf5 --set output.name=h5 >"$TMP/h5.log" 2>&1 \
  || { cat "$TMP/h5.log"; fail "pfedafm with the hdf5 state backend"; }
"$PY" "$(dirname "$0")/compare_runs.py" "$TMP" np1 np2 np3 h5 || fail "pfedafm runs differ"
ok "pfedafm: bitwise identical on 1, 2, 3 ranks and with the hdf5 state backend"

grep -q "pfedafm: shared extractor G = cnn5's (665048 parameters): 2660192 bytes each way" "$TMP/np2.log" \
  || { cat "$TMP/np2.log"; fail "no payload line naming G"; }
"$PY" - "$TMP/np1" <<'PY' || fail "outputs of a pfedafm run"
import sys, h5py, numpy as np
run = sys.argv[1]
with h5py.File(f"{run}/metrics.h5", "r") as f:
    acc, test = f["personal/accuracy"][()], f["test_accuracy"][()]
    assert np.all(np.isfinite(acc)) and np.all((acc > 0) & (acc <= 1)), acc
    assert np.all(np.isnan(test)), test  # no global model of the data
with h5py.File(f"{run}/model.h5", "r") as f:
    names = sorted(f["params"])
    n = sum(f["params"][k].size for k in names)
    assert n == 665048 and "fc3.weight" not in names, (n, names)  # G: cnn5 without its header
print(f"personal accuracy {acc[-1]:.4f}; model.h5 = G, {n} parameters: {', '.join(names)}")
PY
ok "pfedafm: scored with the mixed models; model.h5 is G alone"

# pfedafm.mode = authors_code (heterogeneous MLPs on small synthetic images,
# so that it is quick): the round's clients chained in id order along the
# ranks, bitwise identical on 1, 2 and 3 ranks; with every client in every
# round, alpha's and G's optimisers are one each (their step counts sum every
# client's steps of every round), F_k's restarts every round (its count is one
# round's), the shared alpha is the last client's, and it differs from paper.
am=(--set data.source=synthimg --set data.synthimg_height=8 --set data.synthimg_width=8 --set data.synthimg_train=600
    --set data.synthimg_test=300 --set partition.test_per_client=10 --set hetero.models=mlp-32-16,mlp-24-16
    --set pfedafm.shared=mlp-20-16 --set run.rounds=3 --set run.clients=7 --set train.batch_size=16
    --set model.arch=mlp --set model.hidden=16 --set checkpoint.every=3 --set pfedafm.mode=authors_code)
for np in 1 2 3; do
  fh_mpirun "$np" run "$deck" "${common[@]}" "${am[@]}" --set output.name="au$np" >"$TMP/au$np.log" 2>&1 \
    || { cat "$TMP/au$np.log"; fail "pfedafm authors_code on $np ranks"; }
done
"$PY" "$(dirname "$0")/compare_runs.py" "$TMP" au1 au2 au3 || fail "pfedafm authors_code runs differ"
ok "pfedafm authors_code: bitwise identical on 1, 2, 3 ranks"
for m in authors_code paper; do
  fh_mpirun 2 run "$deck" "${common[@]}" "${am[@]}" --set run.client_fraction=1 --set pfedafm.mode=$m \
    --set output.name="all_$m" >"$TMP/all_$m.log" 2>&1 || { cat "$TMP/all_$m.log"; fail "pfedafm $m, all clients"; }
done
"$PY" - "$TMP/all_authors_code" "$TMP/all_paper" <<'PY' || fail "pfedafm authors_code: shared state"
import sys, h5py, numpy as np
au, pa = h5py.File(f"{sys.argv[1]}/checkpoint.h5", "r"), h5py.File(f"{sys.argv[2]}/checkpoint.h5", "r")
d, R, K = 16, 3, 7
steps = au["state/pfedafm.steps/values"][()]  # per client: F_k, alpha, G (after its last round)
sh, sh_steps = au["server/pfedafm.shared_state"][()], au["server/pfedafm.shared_steps"][()]
per_round = steps[:, 0]                       # F_k's optimiser: one round's steps
assert np.all(per_round > 0), per_round
assert sh_steps[0] == sh_steps[1] == R * per_round.sum(), (sh_steps, per_round)
assert steps[K - 1, 1] == sh_steps[0] and steps[K - 1, 2] == sh_steps[1]
assert np.all(np.diff(steps[:, 1]) == per_round[1:]), steps  # the chain: each client goes on from the one before
alpha = au["state/pfedafm.alpha/values"][()]
assert np.array_equal(alpha[K - 1], sh[:d]), "the shared alpha is the last client's"
assert np.any(alpha[0] != alpha[K - 1])
psteps = pa["state/pfedafm.steps/values"][()]
assert np.all(psteps[:, 0] == R * per_round) and np.all(psteps[:, 1] == psteps[:, 0]), psteps
print(f"authors_code: alpha/G optimiser steps {sh_steps[0]:.0f} = {R} x {per_round.sum():.0f}; "
      f"mean alpha of the last client {alpha[K - 1].mean():.4f}")
PY
"$PY" "$(dirname "$0")/compare_runs.py" "$TMP" all_paper all_authors_code >/dev/null 2>&1 \
  && fail "authors_code and paper gave the same run"
ok "pfedafm authors_code: one alpha and one G/alpha optimiser chained through the clients in id order"
echo "$NCHECKS passed, 0 failed"
