"""Reads NEXUS's feature cache from Python (format: docs/data.md), for the benches and examples
that compare against or probe cached features."""
import json
import os

import numpy as np


def load_entry(entry_dir):
    """[rows, width] float32 features of a complete cache entry."""
    with open(os.path.join(entry_dir, "manifest.json")) as f:
        m = json.load(f)
    if not m["complete"]:
        raise SystemExit("cache entry %s is incomplete" % entry_dir)
    parts = []
    for s in m["shards"]:
        raw = np.fromfile(os.path.join(entry_dir, s["file"]), dtype=np.uint8)
        if bytes(raw[:8]) != b"NXFEAT01":
            raise SystemExit("not a NEXUS shard: %s" % s["file"])
        dtype, rows, width = int(raw[12:16].view(np.uint32)[0]), int(raw[16:24].view(np.int64)[0]), int(raw[24:32].view(np.int64)[0])
        parts.append(raw[32:].view(np.float16 if dtype == 1 else np.float32).reshape(rows, width).astype(np.float32))
    return np.concatenate(parts)
