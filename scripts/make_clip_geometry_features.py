#!/usr/bin/python3
"""A feature file (docs/features.md) with the geometry of CLIP's embeddings,
for running FST-CBDG's settings in CLIP's regime without CLIP.

What CLIP's space looks like, and what this script reproduces (each a
parameter; the defaults are our choice, measured on the file and printed):
  - unit-norm image features and class (text) embeddings, logit scale 100;
  - a modality gap: images and texts lie in two separate narrow cones
    (Liang et al., NeurIPS 2022, "Mind the Gap"), so an image's cosine to its
    own class's text embedding is small, about 0.3 for ViT-B/32, and only a
    few hundredths above its cosine to the other classes' texts;
  - image clusters that a linear probe separates better than the zero-shot
    classifier does (CLIP's linear probe beats its zero-shot accuracy), because
    the text embeddings point only roughly at their image clusters.

Construction, in d dimensions with orthonormal directions u_img, u_txt and
class directions a_c (images) drawn at random:
  image of class c:  x = normalise(g_img u_img + a_c + c A m + sigma n),
                     m ~ N(0, I/C), n ~ N(0, I/d), A = [a_1 .. a_C]
  text of class c:   t_c = normalise(g_txt u_txt + normalise(r a_c + sqrt(1 - r^2) e_c))
with u_txt at cosine k to u_img (the two cones' axes), e_c a unit error that
points partly (tilt) at the other classes' clusters and partly nowhere: r
and the tilt set how well the text points at its cluster (zero-shot quality),
c and sigma the clusters' overlap and spread, g_img, g_txt and k the cones (the gap).

  scripts/make_clip_geometry_features.py OUT.h5 [--seed 1] [--train 20000] ...

Writes /train/x, /train/y, /test/x, /test/y, /class_embeddings, the
attributes logit_scale, name, encoder, and the measured geometry as
attributes (cos_own, cos_other, zeroshot_accuracy). Needs python3-numpy and
python3-h5py."""
import argparse
import sys

import h5py
import numpy as np


def unit(v):
    return v / np.linalg.norm(v, axis=-1, keepdims=True)


def make(args):
    rng = np.random.default_rng(args.seed)
    d, C = args.dim, args.classes
    # orthonormal directions: u_img, w (for the text cone), a_1..a_C, f_1..f_C
    q, _ = np.linalg.qr(rng.standard_normal((d, 2 + 2 * C)))
    u_img = q[:, 0]
    u_txt = args.cone_cos * u_img + np.sqrt(1 - args.cone_cos ** 2) * q[:, 1]
    a = q[:, 2:2 + C].T
    f = q[:, 2 + C:].T
    # e_c: the text's error, part towards the other classes' clusters (a tilt
    # a linear probe corrects and zero-shot cannot), part outside every cluster
    mix = rng.standard_normal((C, C))
    np.fill_diagonal(mix, 0.0)
    e = unit(args.tilt * unit(mix @ a) + np.sqrt(1 - args.tilt ** 2) * f)
    txt_dir = unit(args.text_align * a + np.sqrt(1 - args.text_align ** 2) * e)
    T = unit(args.gap_text * u_txt + txt_dir)

    def images(n):
        y = rng.integers(0, C, n).astype(np.int32)
        noise = rng.standard_normal((n, d)) * (args.spread / np.sqrt(d))  # norm about sigma
        confusion = (rng.standard_normal((n, C)) * (args.confusion / np.sqrt(C))) @ a  # along the clusters
        return unit(args.gap_image * u_img + a[y] + confusion + noise).astype(np.float32), y

    xtr, ytr = images(args.train)
    xte, yte = images(args.test)
    return xtr, ytr, xte, yte, T.astype(np.float32)


def probe(xtr, ytr, xte, yte, C):
    """Accuracy of the nearest class mean of the train features (a linear
    classifier with labels: what self-training can at best approach)."""
    mu = np.stack([xtr[ytr == c].mean(axis=0) for c in range(C)])
    w = mu
    b = -0.5 * np.sum(mu * mu, axis=1)
    return float(np.mean(np.argmax(xte @ w.T + b, axis=1) == yte))


def geometry(x, y, T):
    cos = x @ T.T
    own = cos[np.arange(len(y)), y]
    mask = np.ones_like(cos, dtype=bool)
    mask[np.arange(len(y)), y] = False
    other = cos[mask].reshape(len(y), -1)
    acc = float(np.mean(np.argmax(cos, axis=1) == y))
    return float(own.mean()), float(other.mean()), acc


def main():
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("out", help="feature file to write (HDF5)")
    p.add_argument("--seed", type=int, default=1)
    p.add_argument("--dim", type=int, default=512, help="feature dimension (ViT-B/32: 512)")
    p.add_argument("--classes", type=int, default=10)
    p.add_argument("--train", type=int, default=20000)
    p.add_argument("--test", type=int, default=5000)
    p.add_argument("--gap-image", type=float, default=1.6, help="g_img: weight of the image cone's axis")
    p.add_argument("--gap-text", type=float, default=2.2, help="g_txt: weight of the text cone's axis")
    p.add_argument("--cone-cos", type=float, default=0.33, help="cosine between the image and text cones' axes")
    p.add_argument("--text-align", type=float, default=0.7, help="r: cosine of a text direction to its image cluster")
    p.add_argument("--tilt", type=float, default=0.6, help="share of the text's error that points at other clusters")
    p.add_argument("--spread", type=float, default=1.5, help="sigma: norm of an image's own noise (every direction)")
    p.add_argument("--confusion", type=float, default=0.9,
                   help="c: norm of an image's noise along the class clusters (what makes classes overlap)")
    p.add_argument("--logit-scale", type=float, default=100.0)
    p.add_argument("--close-gap", action="store_true",
                   help="ablation: move the class embeddings into the image cone, t_c <- normalise(t_c - mean_c t_c "
                        "+ mean image feature), the usual correction of the modality gap")
    args = p.parse_args()
    if not 0 < args.text_align <= 1:
        sys.exit("make_clip_geometry_features.py: --text-align must be in (0, 1]")
    if args.dim < 2 + 2 * args.classes:
        sys.exit("make_clip_geometry_features.py: --dim must be at least 2 + 2 x classes")
    xtr, ytr, xte, yte, T = make(args)
    if args.close_gap:
        T = unit(T - T.mean(axis=0) + xtr.mean(axis=0)).astype(np.float32)
    own, other, acc = geometry(xte, yte, T)
    pacc = probe(xtr, ytr, xte, yte, args.classes)
    with h5py.File(args.out + ".partial", "w") as f:
        f.create_dataset("train/x", data=xtr)
        f.create_dataset("train/y", data=ytr)
        f.create_dataset("test/x", data=xte)
        f.create_dataset("test/y", data=yte)
        f.create_dataset("class_embeddings", data=T)
        f.attrs["logit_scale"] = args.logit_scale
        f.attrs["name"] = "clip_geometry"
        f.attrs["encoder"] = "synthetic CLIP geometry (scripts/make_clip_geometry_features.py)"
        f.attrs["cos_own"] = own
        f.attrs["cos_other"] = other
        f.attrs["zeroshot_accuracy"] = acc
        f.attrs["class_mean_accuracy"] = pacc
        for k, v in vars(args).items():
            if k != "out":
                f.attrs["param_" + k] = v
    import os
    os.replace(args.out + ".partial", args.out)
    print(f"{args.out}: {args.train} train, {args.test} test rows of {args.dim} features, {args.classes} classes; "
          f"cos(image, own text) {own:.3f}, cos(image, other text) {other:.3f}, zero-shot accuracy {acc:.4f}, "
          f"nearest class mean (labels) {pacc:.4f}")


if __name__ == "__main__":
    main()
