"""Bitwise comparison of run folders for the rank-count tests.

    compare_runs.py TMP REF RUN...   exits non-zero naming the first difference

Compares model.h5 (parameters and buffers) and every dataset of metrics.h5 but
the timings and schedule/ (which clients moved); prints one line per run, then the reference's last evaluated
value of each evaluation mode (NaN: the mode was not made)."""
import sys

import h5py
import numpy as np


def model(path):
    out = {}
    with h5py.File(f"{path}/model.h5", "r") as f:
        f.visititems(lambda k, v: out.__setitem__(k, v[()]) if isinstance(v, h5py.Dataset) else None)
    return out


def metrics(path):
    out = {}
    with h5py.File(f"{path}/metrics.h5", "r") as f:
        assert f.attrs["status"] in (b"complete", "complete"), f.attrs["status"]
        f.visititems(lambda k, v: out.__setitem__(k, v[()]) if isinstance(v, h5py.Dataset) else None)
    # timings, and where the clients ran (run.schedule: the same results either way)
    return {k: v for k, v in out.items() if not k.startswith(("time/", "schedule/")) and k != "wall_time"}


def compare(tmp, ref, runs):
    ref_m, ref_x = model(f"{tmp}/{ref}"), metrics(f"{tmp}/{ref}")
    assert len(ref_m) >= 2, "model has no parameters"
    for r in runs:
        m, x = model(f"{tmp}/{r}"), metrics(f"{tmp}/{r}")
        if m.keys() != ref_m.keys() or x.keys() != ref_x.keys():
            sys.exit(f"{r}: other datasets than {ref}")
        for k in m:
            if m[k].tobytes() != ref_m[k].tobytes():
                sys.exit(f"{r}: model {k} differs from {ref} (max abs diff {np.abs(m[k] - ref_m[k]).max():g})")
        for k in x:
            if x[k].tobytes() != ref_x[k].tobytes():
                sys.exit(f"{r}: metric {k} differs from {ref}: {x[k]} vs {ref_x[k]}")
        print(f"ok: {r} bitwise identical to {ref} ({len(m)} model datasets, {len(x)} metrics)")
    return ref_x


if __name__ == "__main__":
    tmp, ref, runs = sys.argv[1], sys.argv[2], sys.argv[3:]
    x = compare(tmp, ref, runs)
    modes = ["test_accuracy", "global_test/accuracy", "personal/accuracy", "finetune/accuracy", "holdout/accuracy"]
    print(f"   {ref}: " + ", ".join(f"{g} {x[g][-1]:.4f}" for g in modes))
