#!/usr/bin/env python3
"""Writes the small GGUF files that tests/plugins/test_gguf.cpp reads, with the values gguf-py
dequantises them to, and the GGUF fuzz harness's seed corpus.

Pins: gguf==0.19.0 (PyPI; llama.cpp's own reader and writer, gguf-py) with Debian bookworm's
python3-numpy 1.24.2 and python3-yaml (gguf imports yaml); gguf's other requirements (requests,
tqdm) are not used here, so it is installed without them. Run from anywhere:

    pip install --target /tmp/pygguf --no-deps gguf==0.19.0
    PYTHONPATH=/tmp/pygguf /usr/bin/python3 scripts/make_gguf_fixtures.py

It writes, into tests/plugins/data/gguf/:
  <type>.gguf  one tensor 't' of that ggml type (f32, f16, bf16, q8_0, q4_0, q4_1, q4_k, q6_k), and
  <type>.f32   what gguf.quants.dequantize makes of it, read back through gguf.GGUFReader:
               little-endian float32, in ggml's element order (ne[0] fastest).
  q5_k.gguf    a Q5_K tensor: a type ggml defines and NEXUS does not dequantise.
  metadata.gguf  a value of every metadata type (test_gguf.cpp checks them), a nested array,
               general.alignment 64 (written by add_custom_alignment), and two tensors.
and copies a few of them into tests/fuzz/corpus/gguf/ as seeds. The outputs are deterministic
(fixed seeds), so running the script again changes no committed file.

Quantised types gguf-py can quantise (Q8_0, Q4_0, Q4_1, BF16) are quantised from random floats;
the K-quants are random but valid block bytes (gguf-py only dequantises them), with scales drawn so
that values stay finite. F16 and BF16 include zeros of both signs, infinities, a quiet NaN and
subnormals.
"""
import os
import shutil
import sys

import numpy as np

import gguf
from gguf import GGMLQuantizationType as Q
from gguf import GGUFValueType as V

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
OUT = os.path.join(ROOT, "tests", "plugins", "data", "gguf")
SEEDS = os.path.join(ROOT, "tests", "fuzz", "corpus", "gguf")


def write(path, tensors, kv=(), alignment=None):
    """tensors: (name, array, shape, raw_dtype); kv: (key, value, type, sub_type). An array of raw
    bytes (uint8, with raw_dtype) is given with its shape in elements, numpy order."""
    w = gguf.GGUFWriter(path, "nexus-test")
    if alignment:
        w.add_custom_alignment(alignment)
    for key, value, vtype, sub in kv:
        w.add_key_value(key, value, vtype, sub)
    for name, array, shape, dtype in tensors:
        # GGUFWriter takes a uint8 array's raw_shape in bytes per row.
        raw_shape = gguf.quants.quant_shape_to_byte_shape(shape, dtype) if dtype is not None else None
        w.add_tensor(name, array, raw_shape=raw_shape, raw_dtype=dtype)
    w.write_header_to_file()
    w.write_kv_data_to_file()
    w.write_tensors_to_file()
    w.close()


def fp16_blocks(rng, n, lo, hi):
    return rng.uniform(lo, hi, n).astype(np.float16).view(np.uint8).reshape(n, 2)


def q4_k_bytes(rng, blocks):
    d = fp16_blocks(rng, blocks, -0.05, 0.05)
    dmin = fp16_blocks(rng, blocks, -0.05, 0.05)
    rest = rng.integers(0, 256, (blocks, 12 + 128), dtype=np.uint8)  # scales (6-bit packed), qs
    return np.concatenate([d, dmin, rest], axis=1).reshape(-1)


def q6_k_bytes(rng, blocks):
    rest = rng.integers(0, 256, (blocks, 128 + 64 + 16), dtype=np.uint8)  # ql, qh, int8 scales
    d = fp16_blocks(rng, blocks, -0.01, 0.01)
    return np.concatenate([rest, d], axis=1).reshape(-1)


def q5_k_bytes(rng, blocks):
    d = fp16_blocks(rng, blocks, -0.05, 0.05)
    dmin = fp16_blocks(rng, blocks, -0.05, 0.05)
    rest = rng.integers(0, 256, (blocks, 12 + 32 + 128), dtype=np.uint8)
    return np.concatenate([d, dmin, rest], axis=1).reshape(-1)


SPECIAL_F16 = [0x0000, 0x8000, 0x7C00, 0xFC00, 0x7E00, 0x0001, 0x8001, 0x03FF, 0x0400, 0x7BFF, 0xFBFF, 0x3C00]
SPECIAL_BF16 = [0x0000, 0x8000, 0x7F80, 0xFF80, 0x7FC0, 0x0001, 0x8001, 0x007F, 0x0080, 0x7F7F, 0xFF7F, 0x3F80]


def typed_tensors(rng):
    """type name -> (numpy-order shape, raw bytes or typed array, raw_dtype)."""
    f16 = rng.standard_normal(4 * 16).astype(np.float16).view(np.uint16)
    f16[: len(SPECIAL_F16)] = SPECIAL_F16
    bf16 = (rng.standard_normal(4 * 16).astype(np.float32).view(np.uint32) >> 16).astype(np.uint16)
    bf16[: len(SPECIAL_BF16)] = SPECIAL_BF16
    floats = rng.standard_normal((2, 64)).astype(np.float32)
    return {
        "f32": ((2, 3, 8), rng.standard_normal((2, 3, 8)).astype(np.float32), None),
        "f16": ((4, 16), f16.view(np.float16).reshape(4, 16), None),
        "bf16": ((4, 16), bf16.view(np.uint8), Q.BF16),
        "q8_0": ((2, 64), gguf.quants.quantize(floats, Q.Q8_0).reshape(-1), Q.Q8_0),
        "q4_0": ((2, 64), gguf.quants.quantize(floats, Q.Q4_0).reshape(-1), Q.Q4_0),
        "q4_1": ((2, 64), gguf.quants.quantize(floats, Q.Q4_1).reshape(-1), Q.Q4_1),
        "q4_k": ((2, 512), q4_k_bytes(rng, 4), Q.Q4_K),
        "q6_k": ((2, 256), q6_k_bytes(rng, 2), Q.Q6_K),
    }


# Every metadata value type; test_gguf.cpp checks these values.
METADATA = [
    ("test.u8", 200, V.UINT8, None),
    ("test.i8", -100, V.INT8, None),
    ("test.u16", 60000, V.UINT16, None),
    ("test.i16", -30000, V.INT16, None),
    ("test.u32", 4000000000, V.UINT32, None),
    ("test.i32", -2000000000, V.INT32, None),
    ("test.f32", 0.25, V.FLOAT32, None),
    ("test.bool", True, V.BOOL, None),
    ("test.string", "h\u00e9llo \u4e16\u754c", V.STRING, None),
    ("test.u64", 18000000000000000000, V.UINT64, None),
    ("test.i64", -9000000000000000000, V.INT64, None),
    ("test.f64", -1.5e300, V.FLOAT64, None),
    ("test.i32_negative_as_uint", -1, V.INT32, None),
    ("test.strings", ["a", "", "\u00fcber", "merges \u0120t"], V.ARRAY, V.STRING),
    ("test.ints", [1, -2, 3], V.ARRAY, V.INT32),
    ("test.u64s", [1, 18000000000000000000], V.ARRAY, V.UINT64),
    ("test.floats", [0.5, -2.0, 1e-3], V.ARRAY, V.FLOAT32),
    ("test.bools", [True, False, True], V.ARRAY, V.BOOL),
    ("test.nested", [[1, 2], [3]], V.ARRAY, V.ARRAY),
]


def main():
    from importlib.metadata import version
    if version("gguf") != "0.19.0":
        sys.exit(f"make_gguf_fixtures.py: needs gguf 0.19.0 (found {version('gguf')}); see the pins at the top")
    os.makedirs(OUT, exist_ok=True)
    os.makedirs(SEEDS, exist_ok=True)
    rng = np.random.default_rng(20261202)
    for name, (shape, array, dtype) in typed_tensors(rng).items():
        path = os.path.join(OUT, name + ".gguf")
        write(path, [("t", array, shape if dtype is not None else None, dtype)])
        t = gguf.GGUFReader(path).tensors[0]
        values = gguf.quants.dequantize(t.data, t.tensor_type).astype("<f4")
        assert values.size == int(np.prod(shape)), (name, values.shape, shape)
        values.reshape(-1).tofile(os.path.join(OUT, name + ".f32"))
    write(os.path.join(OUT, "q5_k.gguf"), [("t", q5_k_bytes(rng, 1), (1, 256), Q.Q5_K)])
    write(os.path.join(OUT, "metadata.gguf"),
          [("a", np.arange(4, dtype=np.float32), None, None),
           ("b", gguf.quants.quantize(np.linspace(-1, 1, 32, dtype=np.float32), Q.Q8_0).reshape(-1), (1, 32), Q.Q8_0)],
          kv=METADATA, alignment=64)
    for seed in ["metadata.gguf", "f16.gguf", "q4_1.gguf", "q4_k.gguf", "q6_k.gguf", "q5_k.gguf"]:
        shutil.copyfile(os.path.join(OUT, seed), os.path.join(SEEDS, seed))
    total = sum(os.path.getsize(os.path.join(OUT, f)) for f in os.listdir(OUT))
    print(f"wrote {len(os.listdir(OUT))} files ({total} bytes) to {OUT}", file=sys.stderr)


if __name__ == "__main__":
    main()
