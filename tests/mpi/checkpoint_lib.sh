# Shared by the checkpoint tests (sourced after lib.sh): the deck, and the
# comparison of a resumed run with an uninterrupted one.

# Algorithms whose resumed runs must equal uninterrupted ones: add one here.
# A name "alg+variant" runs run.algorithm = alg with the variant's overrides.
ALGORITHMS=(fedavg scaffold fstcbdg augfl pfedafm fedavg+lips fedavg+fedgc)
# Algorithms resumed on one rank pair only (3 -> 2 ranks), which keeps the test
# short: the model-heterogeneous baselines, on the heterogeneous MLPs below
# (FML's and FedKD's shared model an mlp-16 too; FedKD's student update as
# factors of rank 4 at most, so that factors, not dense matrices, travel, and
# its energy schedule over the 6 rounds of the longest run).
RESUME_ALGORITHMS=(standalone lg_fedavg fml fedkd fedproto fedgh pfedafm+authors)
HETERO_SETS="--set hetero.models=mlp-32-16,mlp-24-16,mlp-20-16 --set hetero.epochs=2"
# Overrides an algorithm needs on top of the shared deck (SCAFFOLD's c_k update
# assumes plain SGD: no momentum; FST-CBDG learns a linear head on the feature
# file of the tests, with its pseudo-labels in the client store, and enough
# generated features per round that a run lasts long enough to be signalled;
# AugFL's ADMM needs every client in every round, and the synthetic deck has no
# server rows for a pretrained model; minibatch client steps keep the 200-round
# signal test short; pFedAFM's models must take the deck's 60-feature vectors:
# heterogeneous MLPs ending in 16 features; LIPS needs images and a ResNet,
# its per-client gradients and biases/BatchNorm are client state, its round-3
# snapshot a server vector, and its schedule's T is fixed by lips.rounds, as
# the resumed parts change run.rounds; fedavg+fedgc is FedAvg with FedGC's
# generated data on the digits, whose server rows train the generator: the
# data are regenerated on resume, on any rank count).
declare -A ALGORITHM_SETS=([scaffold]="--set train.momentum=0"
  [fstcbdg]="--set data.source=features --set data.path=$SRC_DIR/tests/fixtures/features_small.h5 --set model.hidden= --set partition.method=dirichlet --set train.lr=1 --set fstcbdg.samples_per_class=1000"
  [augfl]="--set run.client_fraction=1 --set augfl.lambda=0 --set augfl.rho=1.5 --set augfl.batch=16"
  [pfedafm]="--set hetero.models=mlp-32-16,mlp-24-16,mlp-20-16 --set pfedafm.shared=mlp-16 --set hetero.epochs=2"
  [pfedafm+authors]="--set hetero.models=mlp-32-16,mlp-24-16,mlp-20-16 --set pfedafm.shared=mlp-16 --set hetero.epochs=2 --set pfedafm.mode=authors_code"
  [standalone]="$HETERO_SETS" [lg_fedavg]="$HETERO_SETS" [fedproto]="$HETERO_SETS" [fedgh]="$HETERO_SETS"
  [fml]="$HETERO_SETS --set model.hidden=16" [fedkd]="$HETERO_SETS --set model.hidden=16 --set fedkd.max_rank=4 --set fedkd.energy_rounds=6"
  [fedavg+lips]="--set data.source=synthimg --set data.synthimg_channels=1 --set data.synthimg_height=8 --set data.synthimg_width=8 --set data.synthimg_classes=4 --set data.synthimg_train=300 --set data.synthimg_test=100 --set model.arch=resnet4 --set lips.enable=true --set lips.d0=0.3 --set lips.every=2 --set lips.rounds=6 --set lips.record_inertia=true"
  [fedavg+fedgc]="--set data.source=hdf5 --set data.path=$SRC_DIR/input/digits.h5 --set data.server_fraction=0.2 --set data.server_shards=6 --set partition.method=dirichlet --set partition.alpha=0.3 --set partition.min_size=2 --set fedgc.enabled=true --set fedgc.total=2000 --set fedgc.membership=true --set train.epochs=2")

CK_DECK="$SRC_DIR/input/quickstart.ini"

# ck_compare REF RUN: RUN's model.h5 parameters and every metrics.h5 dataset but
# wall_time and time/* are bitwise identical to REF's, and both are complete.
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
            if isinstance(obj, h5py.Dataset) and name != "wall_time" and not name.startswith("time/"):
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
