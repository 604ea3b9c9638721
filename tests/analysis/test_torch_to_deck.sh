#!/bin/bash
# analysis/torch_to_deck.py: PyTorch modules (tests/analysis/nets/nets.py: the
# networks fedhpc ships as named layer lists, grouped and depthwise
# convolutions, and a small ResNet with identity
# and projection shortcuts, BatchNorm, LeakyReLU, a ceil-mode average pool and
# dropout) traced to layer lists and written with --weights; fedhpc's
# evaluation-mode logits on a fixed batch equal PyTorch's (relative 1e-4 of
# the largest). The traced lists of the named networks build the same
# parameter count as the named list. The refusals are one line naming the op
# and the source line, exit 2.
# Skips (exit 77) where python3 has no torch (CI without python3-torch).
# Env (from ctest): FEDHPC, SRC_DIR, and the OMPI root variables.
set -euo pipefail

: "${FEDHPC:?FEDHPC must point to the fedhpc binary}"
: "${SRC_DIR:?SRC_DIR must point to the source tree}"
PY=/usr/bin/python3
if ! "$PY" -c "import torch, torch.fx, h5py" 2>/dev/null; then
  echo "skip: $PY cannot import torch and h5py (Debian's python3-torch, python3-h5py)"
  exit 77
fi

TMP=$(mktemp -d "${TMPDIR:-/tmp}/fh_torch_deck.XXXXXX")
trap 'rm -rf "$TMP"' EXIT

"$PY" - "$SRC_DIR" "$FEDHPC" "$TMP" <<'PY'
import os, re, subprocess, sys
import h5py, numpy as np, torch
src, fedhpc, tmp = sys.argv[1:4]
nets = os.path.join(src, "tests/analysis/nets/nets.py")
tool = os.path.join(src, "analysis/torch_to_deck.py")
sys.path.insert(0, os.path.dirname(nets))
import nets as N

failures = 0
def check(ok, what):
    global failures
    print(("ok:   " if ok else "FAIL: ") + what)
    failures += not ok

def run(*args):
    p = subprocess.run(list(args), capture_output=True, text=True)
    return p.returncode, p.stdout, p.stderr

torch.manual_seed(3)
cases = [("AugFLMeta", (1, 28, 28), "augfl_fmnist"), ("PFLlibCNN", (1, 28, 28), "mnist_cnn"),
         ("McMahanCNN", (1, 28, 28), "mcmahan_cnn"), ("LeNet5", (1, 28, 28), "lenet5"),
         ("SmallResNet", (3, 16, 16), None), ("Grouped", (2, 28, 28), None)]
for cls, shape, named in cases:
    d = os.path.join(tmp, cls)
    os.makedirs(d)
    model = getattr(N, cls)()
    with torch.no_grad():  # BatchNorm away from its initial 0 and 1
        for m in model.modules():
            if isinstance(m, torch.nn.BatchNorm2d):
                m.running_mean.uniform_(-0.5, 0.5)
                m.running_var.uniform_(0.5, 1.5)
                m.weight.uniform_(0.5, 1.5)
                m.bias.uniform_(-0.5, 0.5)
    torch.save(model.state_dict(), d + "/w.pt")
    x = torch.randn(5, *shape)
    with h5py.File(d + "/x.h5", "w") as f:
        f["x"] = x.numpy()
    model.eval()
    with torch.no_grad():
        ref = model(x).numpy()
    inp = ",".join(str(v) for v in shape)
    rc, out, err = run("/usr/bin/python3", tool, nets + ":" + cls, "--input", inp,
                       "--weights", d + "/m.h5", "--state", d + "/w.pt")
    if rc != 0:
        check(False, "%s: torch_to_deck.py: %s" % (cls, err.strip()))
        continue
    layers = re.search(r"^layers = (.*)$", out, re.M).group(1)
    rc, o, e = run(fedhpc, "model", "--weights", d + "/m.h5", "--set", "model.layers=" + layers,
                   "--forward", d + "/x.h5", "--out", d + "/y.h5", "--batch", "2")
    rel = np.inf
    if rc == 0:
        got = h5py.File(d + "/y.h5", "r")["logits"][()]
        if got.shape == ref.shape:
            rel = np.abs(got - ref).max() / np.abs(ref).max()
    check(rel <= 1e-4, "%s: fedhpc's logits against PyTorch's, relative error %.2e %s"
          % (cls, rel, "" if rc == 0 else (o + e).strip()[-300:]))
    if named:
        def count(*sets):
            args = [fedhpc, "model", "--input", inp, "--classes", "10"]
            for s in sets:
                args += ["--set", s]
            rc, o, e = run(*args)
            m = re.search(r"(\d+) parameters", o)
            return int(m.group(1)) if rc == 0 and m else -1
        a = count("model.arch=layers", "model.layers=" + layers)
        b = count("model.arch=" + named)
        check(a == b and a > 0, "%s: traced list and model.arch = %s have %d and %d parameters"
              % (cls, named, a, b))

for cls, shape, want in [("Sigmoidal", "1,28,28", r"function sigmoid \(nets\.py:\d+\)"),
                         ("Dilated", "1,28,28", r"Conv2d with dilation \(2, 2\) \(nets\.py:\d+\)")]:
    rc, out, err = run("/usr/bin/python3", tool, nets + ":" + cls, "--input", shape)
    check(rc == 2 and len(err.strip().splitlines()) == 1 and re.search(want, err),
          "%s refused in one line: %s" % (cls, err.strip()))
sys.exit(1 if failures else 0)
PY
