#!/usr/bin/python3
"""fedhpc against PyTorch on the same models, in the same run.

For each zoo model (default mlp, cnn1, cnn5, resnet8, resnet8x4, resnet32x4 on
3x32x32 inputs, and the (Fashion-)MNIST layer lists lenet5, augfl_fmnist,
mnist_cnn on 1x28x28) and batch size (default 10, 16, 32, 64) it alternates,
--rounds times,
`fedhpc bench --models M --batches B --steps N` with the same training step in
PyTorch (one thread): forward, cross-entropy, backward, SGD with momentum 0.9
and weight decay 1e-4. The PyTorch model is built from `fedhpc model`'s layer
table (every module is printed as PyTorch prints it), so both run the same
network. Each side reports the median step over N steps in wall time and in
thread CPU time; the table gives the median over the rounds of those medians,
the ratio fedhpc / PyTorch in samples per second, fedhpc's fraction of the
sgemm rate, its convolution layers' rate as a fraction of sgemm running the
same products ("conv/gemm": the im2col GEMMs of each layer, same shapes), and
the spread (10th-90th percentile of the steps, as a fraction
of the median) so that the noise of a shared machine is visible. CPU time
leaves out the time a process waited for a core, so on a loaded machine it is
the fairer of the two; both are printed.

PyTorch is optional (scripts/install-deps.sh --fixtures); without it only
fedhpc's side is printed. PyTorch runs in a child process with glibc's malloc
thresholds raised (MALLOC_MMAP_THRESHOLD_, MALLOC_TRIM_THRESHOLD_) so that
large tensors are not returned to the system after every step.

  OPENBLAS_NUM_THREADS=1 scripts/bench_vs_torch.py [--fedhpc build/fedhpc]
      [--models cnn1,resnet8] [--batches 10,64] [--steps 20] [--rounds 3]
      [--conv auto|onednn|portable]   (fedhpc's model.conv)
"""
import argparse
import json
import os
import re
import statistics
import subprocess
import sys
import time

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
DEFAULT_MODELS = "mlp,cnn1,cnn5,resnet8,resnet8x4,resnet32x4,lenet5,augfl_fmnist,mnist_cnn"
MNIST_SHAPED = ("lenet5", "augfl_fmnist", "mnist_cnn", "mcmahan_cnn")
HIDDEN = "200,200"


def zoo_input(arch):
    """As fedhpc bench's zoo_input (src/cmd/cmd_bench.c)."""
    if arch == "mlp":
        return (784, 1, 1)
    return (1, 28, 28) if arch in MNIST_SHAPED else (3, 32, 32)


def mpi_env():
    env = dict(os.environ)
    env.setdefault("OPENBLAS_NUM_THREADS", "1")
    env.setdefault("OMP_NUM_THREADS", "1")
    return env


def layer_table(fedhpc, arch):
    """[(name, inputs, module text)] from `fedhpc model`."""
    c, h, w = zoo_input(arch)
    out = subprocess.run([fedhpc, "model", "--set", "model.arch=" + arch, "--set",
                          "model.hidden=" + HIDDEN, "--input", "%d,%d,%d" % (c, h, w),
                          "--classes", "10"], capture_output=True, text=True, env=mpi_env(),
                         check=True).stdout
    rows = []
    pat = re.compile(r"^\s+(\d+)\s+(\S+)\s+(input|\d+(?: \+ \d+)?)\s+\[[^\]]*\]\s+\S+\s+\S+\s+(.*)$")
    for line in out.splitlines():
        m = pat.match(line)
        if m:
            reads = [-1 if r == "input" else int(r) for r in m.group(3).split(" + ")]
            rows.append((m.group(2), reads, m.group(4).strip()))
    if not rows:
        raise RuntimeError("no layer table from fedhpc model for " + arch)
    return rows


def torch_worker(spec):
    """Child process: times the PyTorch model; prints one JSON line."""
    import torch
    import torch.nn as nn

    torch.set_num_threads(1)
    torch.manual_seed(0)

    class Add(nn.Module):
        def forward(self, a, b):
            return a + b

    class Graph(nn.Module):
        def __init__(self, rows):
            super().__init__()
            self.reads = [r for _, r, _ in rows]
            mods = []
            for _, _, text in rows:
                if text == "Add":
                    mods.append(Add())
                elif text in ("ReLU", "Flatten", "ELU", "Softmax"):
                    mods.append(getattr(nn, text)())
                else:
                    mods.append(eval(text, {}, vars(nn)))
            self.mods = nn.ModuleList(mods)

        def forward(self, x):
            outs = []
            for mod, reads in zip(self.mods, self.reads):
                args = [x if r < 0 else outs[r] for r in reads]
                if isinstance(mod, nn.Linear):
                    args[0] = args[0].reshape(args[0].shape[0], -1)
                outs.append(mod(*args))
            return outs[-1].reshape(outs[-1].shape[0], -1)

    model = Graph(spec["rows"])
    model.train()
    B = spec["batch"]
    x = torch.randn(B, *spec["input"])
    y = torch.randint(0, 10, (B,))
    opt = torch.optim.SGD(model.parameters(), lr=0.01, momentum=0.9, weight_decay=1e-4)
    loss_fn = nn.CrossEntropyLoss()

    def step():
        opt.zero_grad(set_to_none=False)
        loss = loss_fn(model(x), y)
        loss.backward()
        opt.step()

    step(), step()
    wall, cpu = [], []
    for _ in range(spec["steps"]):
        w0, c0 = time.perf_counter(), time.thread_time()
        step()
        cpu.append(time.thread_time() - c0)
        wall.append(time.perf_counter() - w0)
    print(json.dumps({"wall": wall, "cpu": cpu, "torch": torch.__version__}))


def quantile(v, q):
    v = sorted(v)
    return v[min(len(v) - 1, max(0, int(q * (len(v) - 1) + 0.5)))]


def run_torch(rows, arch, batch, steps):
    env = mpi_env()
    env["MALLOC_MMAP_THRESHOLD_"] = str(1 << 30)
    env["MALLOC_TRIM_THRESHOLD_"] = str(1 << 31)
    spec = {"rows": rows, "input": list(zoo_input(arch)), "batch": batch, "steps": steps}
    out = subprocess.run([sys.executable, os.path.abspath(__file__), "--torch-worker",
                          json.dumps(spec)], capture_output=True, text=True, env=env, check=True)
    r = json.loads(out.stdout.strip().splitlines()[-1])
    return {"wall": statistics.median(r["wall"]), "cpu": statistics.median(r["cpu"]),
            "spread": (quantile(r["cpu"], 0.9) - quantile(r["cpu"], 0.1)) /
                      statistics.median(r["cpu"]), "version": r["torch"]}


LINE = re.compile(r"^\s+(\S+)\s+batch\s+(\d+)\s+wall\s+(\S+) ms \[(\S+), (\S+)\]\s+cpu\s+(\S+) ms "
                  r"\[(\S+), (\S+)\].*of sgemm (\S+)")


CONV = re.compile(r"^\s+conv layers \((\S+), batch (\d+), (\S+)\):.*conv of sgemm (\S+)")


def run_fedhpc(fedhpc, arch, batch, steps, conv):
    out = subprocess.run([fedhpc, "bench", "--models", arch, "--batches", str(batch), "--steps",
                          str(steps), "--hidden", HIDDEN, "--reps", "3", "--set",
                          "model.conv=" + conv], capture_output=True, text=True, env=mpi_env(),
                         check=True).stdout
    sgemm = float(re.search(r"512x512x512: (\S+) GFLOP/s", out).group(1))
    backend = re.search(r"convolutions: (\S+)", out).group(1)
    conv_of = [float(m.group(4)) for m in map(CONV.match, out.splitlines()) if m]
    for line in out.splitlines():
        m = LINE.match(line)
        if m:
            cpu = float(m.group(6)) * 1e-3
            return {"wall": float(m.group(3)) * 1e-3, "cpu": cpu,
                    "spread": (float(m.group(8)) - float(m.group(7))) * 1e-3 / cpu,
                    "of_sgemm": float(m.group(9)), "sgemm": sgemm, "backend": backend,
                    "conv_of": conv_of[0] if conv_of else None}
    raise RuntimeError("no step line from fedhpc bench:\n" + out)


def main():
    if len(sys.argv) == 3 and sys.argv[1] == "--torch-worker":
        torch_worker(json.loads(sys.argv[2]))
        return
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--fedhpc", default=os.path.join(ROOT, "build", "fedhpc"))
    ap.add_argument("--models", default=DEFAULT_MODELS)
    ap.add_argument("--batches", default="10,16,32,64")
    ap.add_argument("--steps", type=int, default=20)
    ap.add_argument("--rounds", type=int, default=3)
    ap.add_argument("--conv", default="auto", choices=("auto", "onednn", "portable"),
                    help="fedhpc's convolution kernels (model.conv)")
    a = ap.parse_args()
    try:
        import torch  # noqa: F401
        have_torch = True
    except ImportError:
        have_torch = False
        print("PyTorch not installed (scripts/install-deps.sh --fixtures): fedhpc only")
    batches = [int(b) for b in a.batches.split(",")]
    print("fedhpc vs PyTorch, 1 thread each, training samples/s; median over %d rounds of the "
          "median of %d steps; spread = 10th-90th percentile of the steps / median (CPU time)"
          % (a.rounds, a.steps))
    hdr = ("%-12s %5s | %10s %10s %7s | %10s %10s %7s | %8s %9s %7s %7s"
           % ("model", "batch", "fedhpc cpu", "torch cpu", "ratio", "fedhpc wall", "torch wall",
              "ratio", "of sgemm", "conv/gemm", "spr fh", "spr pt"))
    print(hdr)
    print("-" * len(hdr))
    version, sgemm, backend = None, [], None
    for arch in a.models.split(","):
        rows = layer_table(a.fedhpc, arch) if have_torch else None
        for B in batches:
            fh, pt = [], []
            for _ in range(a.rounds):
                fh.append(run_fedhpc(a.fedhpc, arch, B, a.steps, a.conv))
                backend = fh[-1]["backend"]
                if have_torch:
                    pt.append(run_torch(rows, arch, B, a.steps))
            sgemm += [r["sgemm"] for r in fh]
            med = lambda rs, k: statistics.median(r[k] for r in rs)
            f_cpu, f_wall = B / med(fh, "cpu"), B / med(fh, "wall")
            line = "%-12s %5d | %10.0f" % (arch, B, f_cpu)
            if have_torch:
                version = pt[0]["version"]
                p_cpu, p_wall = B / med(pt, "cpu"), B / med(pt, "wall")
                line += " %10.0f %6.2fx | %10.0f %10.0f %6.2fx" % (p_cpu, f_cpu / p_cpu, f_wall,
                                                                   p_wall, f_wall / p_wall)
            else:
                line += " %10s %7s | %10.0f %10s %7s" % ("-", "-", f_wall, "-", "-")
            conv_of = [r["conv_of"] for r in fh if r["conv_of"] is not None]
            line += " | %8.3f %9s %6.0f%% %6s" % (
                med(fh, "of_sgemm"), "%.2f" % statistics.median(conv_of) if conv_of else "-",
                100 * med(fh, "spread"), "%.0f%%" % (100 * med(pt, "spread")) if pt else "-")
            print(line, flush=True)
    print("sgemm 512^3 on this core: median %.1f GFLOP/s (min %.1f, max %.1f over the runs)%s; "
          "fedhpc convolutions: %s"
          % (statistics.median(sgemm), min(sgemm), max(sgemm),
             "; torch " + version if version else "", backend))


if __name__ == "__main__":
    main()
