"""Locating and opening a run's HDF5 outputs (metrics.h5, profile.h5) for the
plotting scripts in this folder.

A run folder RUN holds RUN/metrics.h5 and RUN/profile.h5 once the run has
finished; while it runs, or after it failed, only RUN/<name>.partial exists.
Every failure here is one line on stderr and exit status 2."""

import os
import sys

# A .partial file may still be open for writing by a live run; HDF5's file
# locking would refuse to let us read it.
os.environ.setdefault("HDF5_USE_FILE_LOCKING", "FALSE")

import h5py  # noqa: E402  (after the environment is set)

EXIT_USAGE = 2


def fail(message):
    prog = os.path.basename(sys.argv[0]) or "analysis"
    print(f"{prog}: error: {message}", file=sys.stderr)
    sys.exit(EXIT_USAGE)


def resolve(arg, basename):
    """arg: a run folder or a file path -> (path, run_name, partial).

    For a folder, prefers RUN/basename and falls back to RUN/basename.partial.
    run_name is the run folder's name (the file's parent for a file path)."""
    if os.path.isdir(arg):
        run_dir = arg
        final = os.path.join(arg, basename)
        partial = final + ".partial"
        if os.path.isfile(final):
            path = final
        elif os.path.isfile(partial):
            path = partial
        else:
            fail(f"{arg}: no {basename} or {basename}.partial in this folder "
                 f"(expected a run folder, output.dir/NAME)")
    elif os.path.isfile(arg):
        path = arg
        run_dir = os.path.dirname(os.path.abspath(arg))
    else:
        fail(f"{arg}: no such run folder or file")
    is_partial = path.endswith(".partial")
    run_name = os.path.basename(os.path.normpath(os.path.abspath(run_dir)))
    return path, run_name, is_partial


def open_h5(path):
    try:
        return h5py.File(path, "r")
    except OSError as e:
        hint = ("; a run still writing it may not have flushed it yet"
                if path.endswith(".partial") else "")
        fail(f"{path}: cannot open as HDF5 ({e}){hint}")


def attr_str(h5, name, default=""):
    """String attribute as str, whether stored as bytes or str."""
    if name not in h5.attrs:
        return default
    value = h5.attrs[name]
    if isinstance(value, bytes):
        return value.decode("utf-8", "replace")
    return str(value)


def parse_size(text):
    """'1440x560' -> (1440, 560) pixels."""
    try:
        w, h = (int(v) for v in text.lower().split("x"))
    except ValueError:
        fail(f"--size {text}: expected WIDTHxHEIGHT in pixels, e.g. 1440x560")
    if w < 200 or h < 150 or w > 10000 or h > 10000:
        fail(f"--size {text}: width and height must be within 200x150 .. 10000x10000 pixels")
    return w, h


def require_dataset(h5, name, path, kind):
    """h5[name] as a dataset, or exit 2 naming the file and what it lacks."""
    obj = h5.get(name)
    if not isinstance(obj, h5py.Dataset):
        fail(f"{path}: no '{name}' dataset (not a fedhpc {kind} file?)")
    return obj
