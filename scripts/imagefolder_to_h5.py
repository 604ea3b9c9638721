#!/usr/bin/env python3
"""Converts a class-per-folder image tree (EuroSAT, PACS, ...) into fedhpc's HDF5 layout (docs/dataset-format.md).

    /usr/bin/python3 scripts/imagefolder_to_h5.py ROOT OUT.h5 [--size S] [--grey]
        [--test-fraction F] [--seed N] [--domains clients|pool] [--clients-per-domain N] [--name NAME]

ROOT holds one folder per class (ROOT/CLASS/IMAGE, e.g. EuroSAT_RGB/AnnualCrop/
AnnualCrop_1.jpg), or with --domains one folder per domain, each with the same
class folders (ROOT/DOMAIN/CLASS/IMAGE, e.g. PACS's art_painting/dog/...).
Classes are numbered in the sorted order of their folder names, domains and
images are taken in sorted name order, so the same tree always gives the same
file. Files whose names do not end in an image extension (and hidden files)
are skipped.

- Pixels: uint8 [N, C, H, W] (C = 3, or 1 with --grey), with the root
  attributes value_scale = 255 and the per-channel mean and std of the train
  rows' x / 255, so fedhpc normalises them itself. Images keep their size when
  all have the same; --size S resizes every image to S x S (bilinear).
- Split: --test-fraction F (default 0.2) of each class (of each domain's class,
  with --domains) goes to /test, drawn with numpy's generator seeded by
  (--seed, domain, class), so a group's split depends on nothing else; a group
  of two or more images keeps at least one row on each side.
- Domains: `--domains clients` makes each domain a natural client
  (/train/client_offsets and /test/client_offsets), or --clients-per-domain N
  clients dealing the domain's rows class by class in turn, so the domain's
  clients have near-equal sizes and class mixes; `--domains pool` pools the
  domains into one train and one test set, which the deck's partitioner deals.
  Either way /train/domain and /test/domain give each row's domain.
- Client domains: with `--domains clients`, /train/client_domain [clients]
  (int32) gives each natural client's domain (client k of domain d's N:
  k / N), which a FedGC pool routed by /domain needs (fedgc.pool,
  docs/dataset-format.md, "Generated pool"). Pooled domains have no
  client-domain map: their clients are made by the partitioner and mix domains.
- Attributes: num_classes, name (--name, default ROOT's base name),
  class_names, and with --domains domain_names.

Every error is one line on stderr and exit status 1; the output is written to
OUT.h5.tmp and renamed only when complete.
"""
import argparse
import os
import sys

import h5py
import numpy as np

try:
    from PIL import Image
except ImportError:
    sys.exit("imagefolder_to_h5: python3 cannot import PIL; install Debian's python3-pil")

EXTENSIONS = (".jpg", ".jpeg", ".png", ".bmp", ".ppm", ".pgm", ".tif", ".tiff", ".webp", ".gif")
BILINEAR = getattr(Image, "Resampling", Image).BILINEAR
CHUNK_ROWS = 64  # rows per HDF5 chunk: scattered row reads stay cheap (docs/dataset-format.md)


def fail(msg):
    sys.exit(f"imagefolder_to_h5: {msg}")


def subfolders(path):
    """Sorted names of the visible folders in path."""
    try:
        names = os.listdir(path)
    except OSError as e:
        fail(f"{path}: cannot list the folder ({e.strerror})")
    return sorted(n for n in names if not n.startswith(".") and os.path.isdir(os.path.join(path, n)))


def images_of(path):
    """Sorted paths of the image files in path."""
    names = sorted(n for n in os.listdir(path)
                   if not n.startswith(".") and n.lower().endswith(EXTENSIONS)
                   and os.path.isfile(os.path.join(path, n)))
    return [os.path.join(path, n) for n in names]


def scan_classes(root):
    """{class name: [image paths]} of a folder of class folders."""
    classes = subfolders(root)
    if not classes:
        fail(f"{root}: no class folders (expected {root}/CLASS/IMAGE)")
    out = {}
    for c in classes:
        files = images_of(os.path.join(root, c))
        if not files:
            fail(f"{os.path.join(root, c)}: no images ({', '.join(EXTENSIONS)}); remove the folder or add its images")
        out[c] = files
    return out


def scan(root, domains):
    """(domain names, class names, groups): groups[d][c] lists domain d's images of class c."""
    if not os.path.isdir(root):
        fail(f"{root}: no such folder")
    if not domains:
        tree = scan_classes(root)
        return [], sorted(tree), [[tree[c] for c in sorted(tree)]]
    names = subfolders(root)
    if not names:
        fail(f"{root}: no domain folders (expected {root}/DOMAIN/CLASS/IMAGE)")
    trees = [scan_classes(os.path.join(root, d)) for d in names]
    classes = sorted(trees[0])
    for d, tree in zip(names[1:], trees[1:]):
        if sorted(tree) != classes:
            missing = sorted(set(classes) - set(tree))
            extra = sorted(set(tree) - set(classes))
            fail(f"{os.path.join(root, d)}: classes differ from domain {names[0]}'s "
                 f"(missing: {', '.join(missing) or 'none'}; extra: {', '.join(extra) or 'none'}); "
                 f"every domain needs the same class folders")
    return names, classes, [[tree[c] for c in classes] for tree in trees]


def split_group(n, fraction, seed, d, c):
    """(train indices, test indices) of a group of n images, both ascending."""
    k = int(round(fraction * n))
    if fraction > 0 and n >= 2:
        k = min(max(k, 1), n - 1)
    elif n < 2:
        k = 0
    perm = np.random.default_rng([seed, d, c]).permutation(n)
    return np.sort(perm[k:]), np.sort(perm[:k])


def load(path, size, grey):
    """One image as uint8 [C, H, W]."""
    try:
        with Image.open(path) as im:
            im = im.convert("L" if grey else "RGB")
            if size:
                im = im.resize((size, size), BILINEAR)
            a = np.asarray(im, dtype=np.uint8)
    except Exception as e:  # PIL raises many types for a broken file
        fail(f"{path}: cannot read the image ({str(e).splitlines()[0] if str(e) else type(e).__name__})")
    return a[None, :, :] if grey else a.transpose(2, 0, 1)


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("root", help="the folder of class folders (or of domain folders, with --domains)")
    ap.add_argument("out", help="the HDF5 file to write")
    ap.add_argument("--size", type=int, default=0, help="resize every image to SIZE x SIZE (default: keep)")
    ap.add_argument("--grey", action="store_true", help="one grey channel instead of RGB")
    ap.add_argument("--test-fraction", type=float, default=0.2, help="share of each class in /test (default 0.2)")
    ap.add_argument("--seed", type=int, default=0, help="seed of the train/test split (default 0)")
    ap.add_argument("--domains", choices=("clients", "pool"), default=None,
                    help="ROOT/DOMAIN/CLASS/IMAGE: domains as natural clients, or pooled")
    ap.add_argument("--clients-per-domain", type=int, default=1,
                    help="with --domains clients: clients per domain (default 1)")
    ap.add_argument("--name", default="", help="the name attribute (default: ROOT's base name)")
    args = ap.parse_args()
    if args.size < 0:
        fail(f"--size {args.size}: must be positive")
    if not 0 <= args.test_fraction < 1:
        fail(f"--test-fraction {args.test_fraction}: must be in [0, 1)")
    if args.clients_per_domain < 1:
        fail(f"--clients-per-domain {args.clients_per_domain}: must be at least 1")
    if args.clients_per_domain > 1 and args.domains != "clients":
        fail("--clients-per-domain needs --domains clients")

    domains, classes, groups = scan(args.root, args.domains)
    if len(classes) < 2:
        fail(f"{args.root}: one class folder ({classes[0]}); fedhpc needs at least 2 classes")

    # Rows of each split as (path, label, domain), in the file's order: by
    # client (natural clients) or by domain, then class, then file name.
    rows = {"train": [], "test": []}
    offsets = {"train": [0], "test": [0]}
    per = args.clients_per_domain if args.domains == "clients" else 1
    for d, by_class in enumerate(groups):
        dealt = {"train": [[] for _ in range(per)], "test": [[] for _ in range(per)]}
        turn = {"train": 0, "test": 0}
        for c, files in enumerate(by_class):
            tr, te = split_group(len(files), args.test_fraction, args.seed, d, c)
            for split, idx in (("train", tr), ("test", te)):
                for i in idx:  # class by class in turn over the domain's clients
                    dealt[split][turn[split] % per].append((files[i], c, d))
                    turn[split] += 1
        for k in range(per):
            for split in ("train", "test"):
                if args.domains == "clients" and not dealt[split][k]:
                    fail(f"domain {domains[d]}: client {k} of {per} has no {split} image; lower "
                         f"--clients-per-domain or {'raise' if split == 'test' else 'lower'} --test-fraction")
                rows[split] += dealt[split][k]
                offsets[split].append(len(rows[split]))
    if not rows["test"]:
        fail(f"{args.root}: no test rows; raise --test-fraction (fedhpc needs a test split)")

    first = load(rows["train"][0][0], args.size, args.grey)
    shape = first.shape
    name = args.name or os.path.basename(os.path.normpath(args.root))
    tmp = args.out + ".tmp"
    try:
        with h5py.File(tmp, "w") as f:
            f.attrs["num_classes"] = np.int32(len(classes))
            f.attrs["name"] = name
            f.attrs["value_scale"] = 255.0
            f.attrs["class_names"] = np.array(classes, dtype=h5py.string_dtype())
            if domains:
                f.attrs["domain_names"] = np.array(domains, dtype=h5py.string_dtype())
            s1 = np.zeros(shape[0])  # per-channel sums of x / 255 over the train rows
            s2 = np.zeros(shape[0])
            for split in ("train", "test"):
                n = len(rows[split])
                dx = f.create_dataset(f"{split}/x", shape=(n,) + shape, dtype=np.uint8,
                                      chunks=(min(CHUNK_ROWS, n),) + shape)
                f.create_dataset(f"{split}/y", data=np.array([r[1] for r in rows[split]], dtype=np.int32))
                if domains:
                    f.create_dataset(f"{split}/domain", data=np.array([r[2] for r in rows[split]], dtype=np.int32))
                if args.domains == "clients":
                    f.create_dataset(f"{split}/client_offsets", data=np.array(offsets[split], dtype=np.int64))
                if args.domains == "clients" and split == "train":  # natural client k holds domain k // per
                    f.create_dataset("train/client_domain", data=np.arange(len(offsets[split]) - 1, dtype=np.int32) // per)
                buf = np.empty((min(CHUNK_ROWS, n),) + shape, dtype=np.uint8)
                for i0 in range(0, n, len(buf)):
                    m = min(len(buf), n - i0)
                    for j in range(m):
                        path = rows[split][i0 + j][0]
                        a = first if (split == "train" and i0 + j == 0) else load(path, args.size, args.grey)
                        if a.shape != shape:
                            fail(f"{path}: image is {a.shape[2]}x{a.shape[1]} but {rows['train'][0][0]} is "
                                 f"{shape[2]}x{shape[1]}; give --size S to resize every image to S x S")
                        buf[j] = a
                    dx[i0:i0 + m] = buf[:m]
                    if split == "train":
                        v = buf[:m].astype(np.float64) / 255.0
                        s1 += v.sum(axis=(0, 2, 3))
                        s2 += (v * v).sum(axis=(0, 2, 3))
                    if sys.stderr.isatty():
                        print(f"\r{split}: {i0 + m}/{n}", end="", file=sys.stderr, flush=True)
                if sys.stderr.isatty():
                    print(file=sys.stderr)
            count = len(rows["train"]) * shape[1] * shape[2]
            mean = s1 / count
            std = np.sqrt(np.maximum(s2 / count - mean * mean, 0.0))
            f.attrs["mean"] = mean
            f.attrs["std"] = np.where(std > 0, std, 1.0)
    except BaseException:
        if os.path.exists(tmp):
            os.remove(tmp)
        raise
    os.replace(tmp, args.out)
    what = (f"{len(offsets['train']) - 1} natural clients over {len(domains)} domains" if args.domains == "clients"
            else f"{len(domains)} domains pooled" if domains else "no natural clients")
    print(f"{args.out}: {name}, {len(rows['train'])} train + {len(rows['test'])} test rows of uint8 "
          f"{'x'.join(map(str, shape))}, {len(classes)} classes, {what}")


if __name__ == "__main__":
    main()
