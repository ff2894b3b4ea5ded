#!/usr/bin/env python3
"""Convert Fashion-MNIST to the vector formats semhash reads.

Reads the four IDX files (gzipped or not) -- by default from the Debian package
``dataset-fashion-mnist`` (/usr/share/datasets/fashion-mnist), else from the
cache ~/.cache/semhash/fashion-mnist, downloading them there from the dataset's
public home (github.com/zalandoresearch/fashion-mnist) if needed -- and writes

* ``--format npz`` (default): ``train.npz`` and ``test.npz``, each with arrays
  ``vectors`` (float32, n x 784, pixels scaled to [0, 1]), ``labels`` (int64,
  0-9, see CLASS_NAMES) and ``ids`` (str: "train-0", ... / "test-0", ...);
* ``--format jsonl``: ``train.jsonl`` and ``test.jsonl``, one
  ``{"id", "vector", "label"}`` record per line (vector values rounded to 4 decimals).

Usage::

    sudo apt-get install dataset-fashion-mnist        # optional, avoids the download
    python scripts/prepare_fashion_mnist.py -o fashion-mnist
    python scripts/prepare_fashion_mnist.py --root DIR --format jsonl -o /tmp/fmnist

Importable: ``load_fashion_mnist(root=None)`` returns a dict with train_x
(60000, 784) uint8, train_y (60000,) uint8, test_x (10000, 784), test_y.
Needs only numpy and the standard library.
"""
from __future__ import annotations

import argparse
import gzip
import hashlib
import json
import os
import sys
import urllib.request

import numpy as np

DEBIAN_ROOT = "/usr/share/datasets/fashion-mnist"
CACHE_DIR = os.path.join(os.environ.get("XDG_CACHE_HOME") or os.path.expanduser("~/.cache"),
                         "semhash", "fashion-mnist")
MIRRORS = (
    "https://raw.githubusercontent.com/zalandoresearch/fashion-mnist/master/data/fashion/",
    "http://fashion-mnist.s3-website.eu-central-1.amazonaws.com/",
)
# key: (file stem, IDX magic, expected count, MD5 of the upstream .gz from the dataset README)
FILES = {
    "train_x": ("train-images-idx3-ubyte", 2051, 60000, "8d4fb7e6c68d591d4c3dfef9ec88bf0d"),
    "train_y": ("train-labels-idx1-ubyte", 2049, 60000, "25c81989df183df01b3e8a0aad5dffbe"),
    "test_x": ("t10k-images-idx3-ubyte", 2051, 10000, "bef4ecab320f06d8554ea6380940ec79"),
    "test_y": ("t10k-labels-idx1-ubyte", 2049, 10000, "bb300cfdad3c16e7a12a480ee83cd310"),
}
CLASS_NAMES = ("T-shirt/top", "Trouser", "Pullover", "Dress", "Coat",
               "Sandal", "Shirt", "Sneaker", "Bag", "Ankle boot")


def read_idx(path: str, expected_magic: int | None = None) -> np.ndarray:
    """Read an IDX file of unsigned bytes (optionally gzipped) into an array
    shaped by its header (big-endian int32 magic, then one int32 per dim)."""
    with open(path, "rb") as f:
        data = f.read()
    if data[:2] == b"\x1f\x8b":
        data = gzip.decompress(data)
    if len(data) < 4:
        raise ValueError(f"{path}: too short to be an IDX file")
    magic = int.from_bytes(data[:4], "big")
    if expected_magic is not None and magic != expected_magic:
        raise ValueError(f"{path}: IDX magic {magic}, expected {expected_magic}")
    if magic >> 8 != 0x08:  # 0x08 = unsigned byte; the low byte is the number of dims
        raise ValueError(f"{path}: unsupported IDX type/magic {magic:#010x}")
    ndim = magic & 0xFF
    dims = tuple(int(d) for d in np.frombuffer(data, ">i4", count=ndim, offset=4))
    offset = 4 + 4 * ndim
    if len(data) - offset != int(np.prod(dims)):
        raise ValueError(f"{path}: header says {dims} but has {len(data) - offset} data bytes")
    return np.frombuffer(data, np.uint8, offset=offset).reshape(dims)


def _find(root: str, stem: str) -> str | None:
    for name in (stem + ".gz", stem):
        if os.path.isfile(os.path.join(root, name)):
            return os.path.join(root, name)
    return None


def _download(stem: str, md5: str, cache: str) -> str:
    """Download <stem>.gz into cache, trying each mirror; return its path."""
    os.makedirs(cache, exist_ok=True)
    dest = os.path.join(cache, stem + ".gz")
    errors = []
    for base in MIRRORS:
        url = base + stem + ".gz"
        tmp = dest + ".part"
        try:
            with urllib.request.urlopen(url, timeout=60) as resp, open(tmp, "wb") as out:
                out.write(resp.read())
            got = hashlib.md5(open(tmp, "rb").read()).hexdigest()
            if got != md5:
                raise ValueError(f"MD5 {got} != expected {md5}")
            os.replace(tmp, dest)
            return dest
        except Exception as exc:  # network error, HTTP error, bad checksum
            errors.append(f"{url}: {exc}")
            if os.path.exists(tmp):
                os.remove(tmp)
    raise RuntimeError("; ".join(errors))


def load_fashion_mnist(root: str | None = None) -> dict[str, np.ndarray]:
    """Return {"train_x", "train_y", "test_x", "test_y"} as uint8 arrays, images
    flattened to 784 columns.  With root=None, look in the Debian package's
    directory, then in the cache, then download into the cache."""
    out: dict[str, np.ndarray] = {}
    for key, (stem, magic, count, md5) in FILES.items():
        if root is not None:
            path = _find(root, stem)
            if path is None:
                raise FileNotFoundError(f"Fashion-MNIST file {stem}[.gz] not found in {root}")
        else:
            path = _find(DEBIAN_ROOT, stem) or _find(CACHE_DIR, stem)
            if path is None:
                try:
                    path = _download(stem, md5, CACHE_DIR)
                except RuntimeError as exc:
                    raise RuntimeError(
                        f"Fashion-MNIST not found in {DEBIAN_ROOT} or {CACHE_DIR} and download "
                        f"failed: {exc}; install dataset-fashion-mnist or pass --root") from None
        arr = read_idx(path, magic)
        if arr.shape[0] != count or (magic == 2051 and arr.shape[1:] != (28, 28)):
            raise ValueError(f"{path}: unexpected shape {arr.shape}")
        out[key] = arr.reshape(count, -1) if magic == 2051 else arr
    return out


def write_split(outdir: str, split: str, x: np.ndarray, y: np.ndarray, fmt: str) -> str:
    vectors = x.astype(np.float32) / np.float32(255.0)
    labels = y.astype(np.int64)
    ids = np.array([f"{split}-{i}" for i in range(len(labels))])
    if fmt == "npz":
        path = os.path.join(outdir, f"{split}.npz")
        np.savez(path, vectors=vectors, labels=labels, ids=ids)
    else:
        path = os.path.join(outdir, f"{split}.jsonl")
        rounded = np.round(vectors.astype(np.float64), 4)
        with open(path, "w", encoding="utf-8") as f:
            for i, vec, lab in zip(ids.tolist(), rounded.tolist(), labels.tolist()):
                f.write(json.dumps({"id": i, "vector": vec, "label": lab}) + "\n")
    return path


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("-o", "--outdir", default="fashion-mnist", help="output directory")
    ap.add_argument("--root", default=None,
                    help=f"directory with the IDX files (default: {DEBIAN_ROOT}, then download)")
    ap.add_argument("--format", choices=("npz", "jsonl"), default="npz")
    args = ap.parse_args(argv)
    try:
        data = load_fashion_mnist(args.root)
    except (OSError, RuntimeError, ValueError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 1
    os.makedirs(args.outdir, exist_ok=True)
    for split in ("train", "test"):
        x, y = data[f"{split}_x"], data[f"{split}_y"]
        path = write_split(args.outdir, split, x, y, args.format)
        print(f"wrote {path}: {x.shape[0]} vectors of dim {x.shape[1]}, "
              f"{len(np.unique(y))} classes", file=sys.stderr)
    return 0


if __name__ == "__main__":
    sys.exit(main())
