#!/usr/bin/env python3
"""Write a feature_file folder: precomputed teacher features for a NEXUS dataset.

The producer side of the `feature_file` teacher plugin (format: docs/plugins.md, "feature_file
teacher").  In real use the features come from a model too large to run where NEXUS trains (a
GPU cluster, a hosted API); this script reads a dataset folder written by
scripts/build_datasets.py, keys every input exactly as the plugin will, computes features with a
deterministic demo function and writes the shards and the features.json manifest.  To deliver a
real model's features, replace `features_of` (or pass the same keys and rows to `write_folder`).

Demo features (Python 3 standard library only, deterministic on every platform):
  text   hashed character 3-grams of the text (signed feature hashing, crc32) into WIDTH
         buckets, L2-normalised;
  image  each pixel (value / 255) added, with a crc32-derived sign, to one of WIDTH buckets,
         L2-normalised.

Keys (raw 32-byte sha256 digests):
  text   sha256 of the text's UTF-8 bytes, exactly as they appear in the TSV;
  image  sha256 of the image's float32 bytes (little-endian, row-major [1, H, W]) after
         pixel / 255 in float32, which is what NEXUS's dataset reader hands a teacher.

Usage:
  python3 scripts/export_features.py data/wordnet_supersense --out features/wordnet_hashed
  python3 scripts/export_features.py data/wordnet_supersense data/fortunes_category --out features/text
  python3 scripts/export_features.py data/fashion_mnist --out features/fmnist --format npy --dtype float16

Exit codes: 0 ok, 1 failure, 2 bad usage.
"""

import argparse
import array
import hashlib
import json
import math
import operator
import os
import shutil
import struct
import sys
import tempfile
import zlib

FORMAT_VERSION = 1
SPLITS = ("train", "val", "test")
N_EXAMPLES = 4


class UsageError(Exception):
    pass


# ---------------------------------------------------------------------------- reading datasets

def read_tsv_texts(path):
    """The `text` column of a dataset TSV as raw bytes, as NEXUS's reader splits it."""
    with open(path, "rb") as f:
        lines = f.read().split(b"\n")
    if lines and lines[-1] == b"":
        lines.pop()
    if lines and lines[0].startswith(b"text\tlabel"):
        lines = lines[1:]
    return [line.split(b"\t", 1)[0] for line in lines]


def read_idx_images(path):
    """uint8 IDX images -> (count, rows, cols, bytes)."""
    with open(path, "rb") as f:
        data = f.read()
    if len(data) < 4 or data[:3] != b"\x00\x00\x08" or data[3] != 3:
        raise ValueError(f"{path} is not a uint8 IDX file of images")
    n, h, w = struct.unpack(">III", data[4:16])
    pixels = data[16:]
    if len(pixels) != n * h * w:
        raise ValueError(f"{path} is truncated")
    return n, h, w, pixels


# pixel -> its float32 value / 255, as NEXUS computes it (uint8 -> float32, divided in float32).
# A quotient of two small integers computed in double and rounded to float32 is exactly the
# float32 quotient, so this table matches the C++ side bit for bit.
PIXEL_FLOAT = [struct.unpack("<f", struct.pack("<f", v / 255.0))[0] for v in range(256)]


def image_key_bytes(img):
    values = array.array("f", map(PIXEL_FLOAT.__getitem__, img))
    if sys.byteorder != "little":
        values.byteswap()
    return values.tobytes()


def load_inputs(dataset_dirs, splits):
    """(modality, [(key, input)], example_shape, splits used) over all datasets, each input once."""
    seen, items, shape, modality, used = set(), [], None, None, []
    for dataset_dir in dataset_dirs:
        m, shape = load_dataset_inputs(dataset_dir, splits, seen, items, used)
        if modality is not None and m != modality:
            raise UsageError(f"{dataset_dir} holds {m} data, the datasets before it {modality}: "
                             "one feature folder serves one modality")
        modality = m
    return modality, items, shape, used


def load_dataset_inputs(dataset_dir, splits, seen, items, used):
    present = [s for s in splits if os.path.exists(os.path.join(dataset_dir, f"images_{s}.idx"))
               or os.path.exists(os.path.join(dataset_dir, f"{s}.tsv"))]
    if not present:
        raise UsageError(f"{dataset_dir} has none of the splits {', '.join(splits)} "
                         "(expected {split}.tsv or images_{split}.idx, see docs/data.md)")
    image = os.path.exists(os.path.join(dataset_dir, f"images_{present[0]}.idx"))
    shape = None
    name = os.path.basename(os.path.normpath(dataset_dir))
    used += [f"{name}/{s}" for s in present]
    for split in present:
        if image:
            n, h, w, pixels = read_idx_images(os.path.join(dataset_dir, f"images_{split}.idx"))
            shape = [1, h, w]
            size = h * w
            for i in range(n):
                img = pixels[i * size:(i + 1) * size]
                key = hashlib.sha256(image_key_bytes(img)).digest()
                if key not in seen:
                    seen.add(key)
                    items.append((key, img))
        else:
            for text in read_tsv_texts(os.path.join(dataset_dir, f"{split}.tsv")):
                key = hashlib.sha256(text).digest()
                if key not in seen:
                    seen.add(key)
                    items.append((key, text))
    return ("image" if image else "text"), shape


# ---------------------------------------------------------------------------- demo features

def normalised(v):
    """L2-normalised, as a compact float32 row (a dataset's rows are held in memory)."""
    norm = math.sqrt(sum(x * x for x in v))
    return array.array("f", [x / norm for x in v] if norm > 0 else v)


def text_features(text, width, seed):
    s = "\x02" + text.decode("utf-8", errors="replace") + "\x03"
    v = [0.0] * width
    for i in range(max(1, len(s) - 2)):
        h = zlib.crc32(s[i:i + 3].encode("utf-8"), seed)
        v[h % width] += 1.0 if (h >> 31) & 1 else -1.0
    return normalised(v)


class ImageFeatures:
    """Signed hashing of pixel positions into buckets: one C-level sum per bucket and sign."""

    def __init__(self, size, width, seed):
        plus, minus = [[] for _ in range(width)], [[] for _ in range(width)]
        for p in range(size):
            h = zlib.crc32(struct.pack("<I", p), seed)
            (plus if (h >> 31) & 1 else minus)[h % width].append(p)
        self.getters = [(self._getter(a), self._getter(b)) for a, b in zip(plus, minus)]

    @staticmethod
    def _getter(idx):
        if not idx:
            return lambda img: ()
        if len(idx) == 1:
            get = operator.itemgetter(idx[0])
            return lambda img: (get(img),)
        return operator.itemgetter(*idx)

    def __call__(self, img):
        return normalised([(sum(p(img)) - sum(m(img))) / 255.0 for p, m in self.getters])


def features_of(modality, items, width, seed, shape):
    if modality == "text":
        return [text_features(x, width, seed) for _, x in items]
    f = ImageFeatures(shape[1] * shape[2], width, seed)
    return [f(x) for _, x in items]


# ---------------------------------------------------------------------------- writing

def f_bytes(rows, dtype):
    if dtype == "float16":
        return b"".join(struct.pack(f"<{len(r)}e", *r) for r in rows)
    values = array.array("f")
    for r in rows:
        values.extend(r)
    if sys.byteorder != "little":
        values.byteswap()
    return values.tobytes()


def write_safetensors(path, keys, rows, width, dtype, metadata):
    kb, fb = b"".join(keys), f_bytes(rows, dtype)
    header = {
        "__metadata__": metadata,
        "keys": {"dtype": "U8", "shape": [len(keys), 32], "data_offsets": [0, len(kb)]},
        "features": {"dtype": "F32" if dtype == "float32" else "F16", "shape": [len(rows), width],
                     "data_offsets": [len(kb), len(kb) + len(fb)]},
    }
    h = json.dumps(header, separators=(",", ":")).encode()
    h += b" " * (-len(h) % 8)  # data starts 8-byte aligned, as the safetensors library writes it
    with open(path, "wb") as f:
        f.write(struct.pack("<Q", len(h)) + h + kb + fb)


def write_npy(path, descr, shape, data):
    header = "{'descr': '%s', 'fortran_order': False, 'shape': (%s), }" % (
        descr, ", ".join(map(str, shape)) if len(shape) > 1 else f"{shape[0]},")
    header += " " * (-(10 + len(header) + 1) % 64) + "\n"  # data 64-byte aligned, as NumPy does
    with open(path, "wb") as f:
        f.write(b"\x93NUMPY\x01\x00" + struct.pack("<H", len(header)) + header.encode("latin1") + data)


def sha256_file(path):
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()


def write_folder(out, modality, keys, rows, width, fmt="safetensors", dtype="float32", shard_rows=65536,
                 producer=None, examples=None, example_shape=None, force=False):
    """Writes a complete feature_file folder at `out` (atomically: a temp folder renamed into place)."""
    if os.path.exists(out) and not force:
        raise UsageError(f"{out} exists (pass --force to replace it)")
    parent = os.path.dirname(os.path.abspath(out))
    os.makedirs(parent, exist_ok=True)
    tmp = tempfile.mkdtemp(prefix="." + os.path.basename(out) + ".tmp-", dir=parent)
    umask = os.umask(0)
    os.umask(umask)
    os.chmod(tmp, 0o777 & ~umask)  # mkdtemp's 0700 would make the delivered folder private
    try:
        shards = []
        for s, start in enumerate(range(0, max(len(keys), 1), shard_rows)):
            k, r = keys[start:start + shard_rows], rows[start:start + shard_rows]
            if fmt == "safetensors":
                name = f"shard-{s:05d}.safetensors"
                write_safetensors(os.path.join(tmp, name), k, r, width, dtype, {"format": "nexus-feature-file"})
                shards.append({"file": name, "rows": len(k), "sha256": sha256_file(os.path.join(tmp, name))})
            else:
                name, kname = f"shard-{s:05d}.features.npy", f"shard-{s:05d}.keys.npy"
                write_npy(os.path.join(tmp, name), "<f4" if dtype == "float32" else "<f2", [len(r), width],
                          f_bytes(r, dtype))
                write_npy(os.path.join(tmp, kname), "|u1", [len(k), 32], b"".join(k))
                shards.append({"file": name, "rows": len(k), "sha256": sha256_file(os.path.join(tmp, name)),
                               "keys_file": kname, "keys_sha256": sha256_file(os.path.join(tmp, kname))})
        manifest = {
            "format_version": FORMAT_VERSION,
            "modality": modality,
            "width": width,
            "dtype": dtype,
            "key": "sha256-utf8" if modality == "text" else "sha256-bytes",
            "producer": producer or {},
            "shards": shards,
        }
        if examples is not None:
            manifest["examples"] = examples
            if example_shape is not None:
                manifest["example_shape"] = example_shape
        with open(os.path.join(tmp, "features.json"), "w") as f:
            json.dump(manifest, f, indent=1)
            f.write("\n")
        if os.path.exists(out):
            shutil.rmtree(out)
        os.rename(tmp, out)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    return manifest


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("datasets", nargs="+", metavar="DATASET",
                   help="dataset folders written by scripts/build_datasets.py (one modality)")
    p.add_argument("--out", required=True, help="the feature_file folder to write")
    p.add_argument("--splits", default=",".join(SPLITS), help="comma-separated splits (default: all present)")
    p.add_argument("--width", type=int, default=64, help="feature width D (default 64)")
    p.add_argument("--format", choices=("safetensors", "npy"), default="safetensors")
    p.add_argument("--dtype", choices=("float32", "float16"), default="float32")
    p.add_argument("--shard-rows", type=int, default=65536, help="rows per shard (default 65536)")
    p.add_argument("--seed", type=int, default=0, help="seed of the demo feature hashing")
    p.add_argument("--force", action="store_true", help="replace --out if it exists")
    try:
        a = p.parse_args(argv)
    except SystemExit as e:
        return 0 if e.code == 0 else 2
    try:
        if a.width < 1 or a.shard_rows < 1:
            raise UsageError("--width and --shard-rows must be >= 1")
        for d in a.datasets:
            if not os.path.isdir(d):
                raise UsageError(f"{d} is not a folder")
        splits = [s for s in a.splits.split(",") if s]
        modality, items, shape, used = load_inputs(a.datasets, splits)
        rows = features_of(modality, items, a.width, a.seed, shape)
        keys = [k for k, _ in items]
        if modality == "text":
            examples = [x.decode("utf-8") for _, x in items[:N_EXAMPLES]]
        else:
            examples = [list(map(PIXEL_FLOAT.__getitem__, x)) for _, x in items[:N_EXAMPLES]]
        dataset_ids = {}
        for d in a.datasets:
            manifest_path = os.path.join(d, "manifest.json")
            if os.path.exists(manifest_path):
                with open(manifest_path) as f:
                    dataset_ids[os.path.basename(os.path.normpath(d))] = json.load(f).get("dataset_id")
        producer = {
            "script": "scripts/export_features.py",
            "method": "hashed character 3-grams" if modality == "text" else "hashed pixel buckets",
            "seed": a.seed,
            "width": a.width,
            "dataset_ids": dataset_ids,
            "splits": used,
        }
        write_folder(a.out, modality, keys, rows, a.width, a.format, a.dtype, a.shard_rows, producer, examples,
                     shape, a.force)
    except UsageError as e:
        print(f"export_features: {e}", file=sys.stderr)
        return 2
    except (OSError, ValueError) as e:
        print(f"export_features: {e}", file=sys.stderr)
        return 1
    shards = -(-len(keys) // a.shard_rows)
    print(f"export_features: {len(keys)} {modality} inputs ({', '.join(used)}) -> {a.out} "
          f"({shards} {a.format} shard{'s' if shards != 1 else ''}, width {a.width}, {a.dtype})")
    return 0


if __name__ == "__main__":
    sys.exit(main())
