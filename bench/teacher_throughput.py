#!/usr/bin/env python3
"""Teacher encoding throughput: NEXUS's text teachers (`nexus cache build`) against Hugging Face
`transformers` and ONNX Runtime encoding the same texts into the same features, with the same
number of threads.

Teachers (max_length 64 each):
  minilm   all-MiniLM-L6-v2 through the hf_encoder plugin: mean over the real tokens, L2-normalised
           (what hf_encoder's `auto` pooling reads from the folder's 1_Pooling and modules.json)
  smollm2  SmolLM2-135M-Instruct through the decoder_llm plugin from its GGUF file (Q4_1, computed
           in float32): hidden state -1 (all 30 layers and the final norm), mean over the real
           tokens without the first. The peers load the same float32 weights from the Hugging Face
           folder scripts/gguf_to_hf.py made.
Texts: the first rows of the quickstart's train splits (configs/quickstart.yaml's train_rows:
6,000 WordNet glosses, 4,000 fortunes), read as core/data/src/dataset.cpp reads them; --rows K
takes the first K (SmolLM2 defaults to 1,000 per dataset to keep a run short).

Engines:
  nexus         `nexus --compute-threads N cache build` of a one-teacher composition into an empty
                cache folder. Timed twice: the entry's own seconds from --json (tokenizing,
                encoding, writing the shards) and the whole command (process start, plugin scan,
                model load included).
  transformers  python3-torch 1.13 (Debian's build of the same libtorch), eager attention,
                torch.set_num_threads(N), inference_mode.
  onnxruntime   the same module exported with torch.onnx.export (opset 17, dynamic batch and
                sequence axes), CPU provider, intra-op N threads, inter-op 1, ORT_ENABLE_ALL.
The peers batch exactly as NEXUS does: the cache builder gives a teacher 512 texts per call; the
teacher orders them by token count, longest first, and cuts chunks padded to their longest text
(hf_encoder: 32 rows; decoder_llm: 4096 // length rows, at most 64). So every engine computes the
same padded tokens. Peers time tokenization (tokenizers' fast tokenizer, RAYON_NUM_THREADS=N),
batching, the forward pass and pooling, not the model load. Engines alternate run by run (order
rotated) so that machine noise hits all alike; rows/s are medians over --runs. The first run's
features of each peer are compared with NEXUS's (cosine per row) to show the work is the same.

GFLOPS: the matrix products the padded batches need (linear layers 2 * weights * padded tokens;
attention QK^T and AV 4 * length^2 * hidden per layer per sequence) over the median time, also as
a share of this machine's fp32 GEMM peak: the best median of torch.mm (BLAS) and oneDNN's
mkldnn_linear (what NEXUS's teachers call) with N threads over square sizes 512-2048 and the
teachers' own linear shapes at 2,048 tokens, measured before and after the engines. The share is
over the whole encoding time, so it bounds the linear layers' own efficiency from below.

    /usr/bin/python3 bench/teacher_throughput.py [--runs 3] [--threads 2] [--rows K]
        [--models minilm,smollm2] [--datasets wordnet_supersense,fortunes_category] [--json]

The peers' Python packages (pinned below) are installed once into build/bench-python with pip
(--target, --no-deps; Debian's numpy, torch and onnx stay); the ONNX exports are kept in
build/bench-onnx. Hugging Face Hub access is off: only the local model folders are read.
"""
import argparse
import datetime
import json
import os
import platform
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
import warnings

ROOT = os.path.normpath(os.path.join(os.path.dirname(os.path.abspath(__file__)), ".."))
PYDIR = os.path.join(ROOT, "build", "bench-python")
ONNX_DIR = os.path.join(ROOT, "build", "bench-onnx")
# Exact versions (scripts/transformers-pins.txt, and onnxruntime), installed without their dependencies: numpy (1.24), torch (1.13), onnx (1.12),
# protobuf, urllib3, idna, certifi and charset-normalizer come from Debian. onnxruntime's own
# requirements flatbuffers and protobuf>=4.25 are needed only by its tools, not by InferenceSession,
# so Debian's protobuf 3.21 (which python3-onnx needs) is left alone.
PINS = [line.strip() for line in open(os.path.join(ROOT, "scripts", "transformers-pins.txt"))
        if line.strip() and not line.startswith("#")] + ["onnxruntime==1.32.0"]


def ensure_packages():
    """Installs PINS into PYDIR unless its stamp says they are there."""
    stamp = os.path.join(PYDIR, ".nexus-pins")
    want = "\n".join(PINS) + "\n"
    if os.path.exists(stamp) and open(stamp).read() == want:
        return
    print("teacher_throughput: installing %s into %s" % (" ".join(PINS), PYDIR), file=sys.stderr)
    shutil.rmtree(PYDIR, ignore_errors=True)
    subprocess.run([sys.executable, "-m", "pip", "install", "--quiet", "--disable-pip-version-check", "--no-input",
                    "--target", PYDIR, "--no-deps"] + PINS, check=True)
    with open(stamp, "w") as f:
        f.write(want)


def bootstrap():
    """Runs this script again with the pinned packages first on the path and the Hub offline."""
    if os.environ.get("NEXUS_BENCH_PYTHON") == PYDIR:
        return
    ensure_packages()
    env = dict(os.environ, NEXUS_BENCH_PYTHON=PYDIR, HF_HUB_OFFLINE="1", TRANSFORMERS_OFFLINE="1",
               TOKENIZERS_PARALLELISM="true", PYTHONPATH=os.pathsep.join(filter(None, [PYDIR, os.environ.get("PYTHONPATH")])))
    os.execve(sys.executable, [sys.executable] + sys.argv, env)


if __name__ == "__main__":
    bootstrap()

import numpy as np  # noqa: E402  (after bootstrap: these come from the pinned folder or Debian)
import torch  # noqa: E402
import onnxruntime as ort  # noqa: E402
import tokenizers  # noqa: E402
import transformers  # noqa: E402
import yaml  # noqa: E402

sys.path.insert(0, os.path.join(ROOT, "scripts"))
from feature_cache import load_entry  # noqa: E402

DATA = os.path.join(ROOT, "data")
MODELS_DIR = os.path.join(ROOT, ".cache", "models")
CALL_ROWS = 512  # texts per teacher call: `nexus cache build`'s --batch default (core/data caching.hpp)
ENGINES = ["nexus", "transformers", "onnxruntime"]
ONNX_OPSET = 17


def bert_shapes(c):
    """(in, out) of the products hf_encoder runs per layer: fused QKV, output, FFN in and out."""
    h, i = c.hidden_size, c.intermediate_size
    return [(h, 3 * h), (h, h), (h, i), (i, h)]


def llama_shapes(c):
    """(in, out) of the products decoder_llm runs per layer: fused QKV, output, fused gate+up, down."""
    h, i = c.hidden_size, c.intermediate_size
    kv = c.num_key_value_heads * (getattr(c, "head_dim", None) or h // c.num_attention_heads)
    return [(h, h + 2 * kv), (h, h), (h, 2 * i), (i, h)]


MODELS = {
    "minilm": {
        "name": "all-MiniLM-L6-v2", "plugin": "hf_encoder", "width": 384,
        "nexus_path": os.path.join(MODELS_DIR, "all-MiniLM-L6-v2"),
        "nexus_options": {"max_length": 64},
        "hf_path": os.path.join(MODELS_DIR, "all-MiniLM-L6-v2"),
        "hf_kwargs": {"add_pooling_layer": False},  # hf_encoder has no pooler; do not compute one
        "skip_first": False, "normalize": True, "pad_id": 0,
        "rows_for": lambda length: 32,  # hf_encoder's batch_size default
        "shapes": bert_shapes, "default_rows": None,
    },
    "smollm2": {
        "name": "SmolLM2-135M-Instruct", "plugin": "decoder_llm", "width": 576,
        "nexus_path": os.path.join(MODELS_DIR, "SmolLM2-135M-Instruct", "SmolLM2-135M-Instruct.Q4_1.gguf"),
        "nexus_options": {"max_length": 64, "layer": [-1], "pooling": "mean"},
        "hf_path": os.path.join(MODELS_DIR, "SmolLM2-135M-Instruct-hf"),
        "hf_kwargs": {},
        "skip_first": True, "normalize": False, "pad_id": 0,  # decoder_llm pads with 0 on the right
        "rows_for": lambda length: min(max(4096 // max(length, 1), 1), 64),  # batch_tokens 4096, <= 64 rows
        "shapes": llama_shapes, "default_rows": 1000,
    },
}


class Pooled(torch.nn.Module):
    """The teacher's features from a transformers model: pooled last hidden state, L2-normalised
    when the teacher normalises. pool_mask marks the tokens the mean covers."""

    def __init__(self, model, normalize):
        super().__init__()
        self.model, self.normalize = model, normalize

    def forward(self, input_ids, attention_mask, pool_mask):
        hidden = self.model(input_ids=input_ids, attention_mask=attention_mask, use_cache=False).last_hidden_state
        m = pool_mask.unsqueeze(-1)
        pooled = (hidden * m).sum(1) / m.sum(1).clamp_min(1e-9)
        if self.normalize:
            pooled = pooled / pooled.norm(dim=1, keepdim=True).clamp_min(1e-12)
        return pooled


def train_texts(dataset, rows):
    """The first `rows` texts of the train split, read as core/data/src/dataset.cpp reads them."""
    with open(os.path.join(DATA, dataset, "train.tsv"), "rb") as f:
        lines = f.read().split(b"\n")
    if lines and not lines[-1]:
        lines.pop()
    if lines and lines[0].startswith(b"text\tlabel"):
        lines = lines[1:]
    return [line.split(b"\t", 1)[0].decode("utf-8") for line in lines[:rows]]


def chunks(lengths, rows_for):
    """One teacher call's batches: indices ordered longest first (stably), cut as the teacher cuts."""
    order = sorted(range(len(lengths)), key=lambda i: -lengths[i])
    out, j = [], 0
    while j < len(order):
        n = rows_for(lengths[order[j]])
        out.append(order[j:j + n])
        j += n
    return out


def token_ids(tokenizer, texts, spec):
    ids = tokenizer(texts, truncation=True, max_length=spec["nexus_options"]["max_length"])["input_ids"]
    return [x or [0] for x in ids]  # decoder_llm encodes an empty text as token 0


def encode_peer(texts, tokenizer, spec, run_batch):
    """[rows, width] features in row order, batched as NEXUS batches; run_batch(ids, mask, pool)."""
    out = np.empty((len(texts), spec["width"]), np.float32)
    for start in range(0, len(texts), CALL_ROWS):
        ids = token_ids(tokenizer, texts[start:start + CALL_ROWS], spec)
        for chunk in chunks([len(x) for x in ids], spec["rows_for"]):
            length = len(ids[chunk[0]])
            input_ids = np.full((len(chunk), length), spec["pad_id"], np.int64)
            mask = np.zeros((len(chunk), length), np.int64)
            for r, i in enumerate(chunk):
                input_ids[r, :len(ids[i])] = ids[i]
                mask[r, :len(ids[i])] = 1
            pool = mask.astype(np.float32)
            if spec["skip_first"]:
                pool[mask.sum(1) > 1, 0] = 0
            out[start + np.array(chunk)] = run_batch(input_ids, mask, pool)
    return out


def padded_batches(texts, tokenizer, spec):
    """(rows, length) of every batch the engines run, and the real token count."""
    shapes, real = [], 0
    for start in range(0, len(texts), CALL_ROWS):
        ids = token_ids(tokenizer, texts[start:start + CALL_ROWS], spec)
        real += sum(len(x) for x in ids)
        shapes += [(len(c), len(ids[c[0]])) for c in chunks([len(x) for x in ids], spec["rows_for"])]
    return shapes, real


def onnx_session(module, spec, threads):
    """An ORT session on the module exported to ONNX (reused from build/bench-onnx while the
    weights and the exporting versions are the same)."""
    weights = os.path.join(spec["hf_path"], "model.safetensors")
    st = os.stat(weights)
    source = {"weights": weights, "size": st.st_size, "mtime": st.st_mtime, "torch": torch.__version__,
              "transformers": transformers.__version__, "opset": ONNX_OPSET}
    path = os.path.join(ONNX_DIR, spec["name"] + ".onnx")
    stamp = path + ".json"
    if not (os.path.exists(path) and os.path.exists(stamp) and json.load(open(stamp)) == source):
        os.makedirs(ONNX_DIR, exist_ok=True)
        ids = torch.randint(10, 1000, (2, 8))
        mask = torch.ones(2, 8, dtype=torch.long)
        mask[1, 5:] = 0  # some padding, so that no mask branch is traced away
        dynamic = {n: {0: "batch", 1: "sequence"} for n in ("input_ids", "attention_mask", "pool_mask")}
        dynamic["embedding"] = {0: "batch"}
        started = time.perf_counter()
        with warnings.catch_warnings(), torch.no_grad():
            warnings.simplefilter("ignore")
            torch.onnx.export(module, (ids, mask, mask.float()), path, input_names=["input_ids", "attention_mask", "pool_mask"],
                              output_names=["embedding"], dynamic_axes=dynamic, opset_version=ONNX_OPSET,
                              do_constant_folding=True)
        with open(stamp, "w") as f:
            json.dump(source, f)
        print("exported %s to ONNX (opset %d) in %.0f s" % (spec["name"], ONNX_OPSET, time.perf_counter() - started),
              file=sys.stderr)
    so = ort.SessionOptions()
    so.intra_op_num_threads = threads
    so.inter_op_num_threads = 1
    so.execution_mode = ort.ExecutionMode.ORT_SEQUENTIAL
    so.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
    return ort.InferenceSession(path, so, providers=["CPUExecutionProvider"])


def gemm_peak(shapes):
    """Median GFLOPS of fp32 products [m, k] x [k, n] with torch's BLAS and with oneDNN."""
    out = []
    for m, k, n in shapes:
        a, w = torch.randn(m, k), torch.randn(n, k)
        am, wm = a.to_mkldnn(), w.to_mkldnn()
        for library, fn in (("blas", lambda: torch.mm(a, w.t())),
                            ("onednn", lambda: torch._C._nn.mkldnn_linear(am, wm, None))):
            fn()  # warm-up: oneDNN picks and caches its kernel on the first call
            times, started = [], time.perf_counter()
            while len(times) < 5 or (len(times) < 200 and time.perf_counter() - started < 0.3):
                t = time.perf_counter()
                fn()
                times.append(time.perf_counter() - t)
            out.append({"m": m, "k": k, "n": n, "library": library, "gflops": 2 * m * k * n / statistics.median(times) / 1e9})
    return out


def run_nexus(args, composition, cache):
    """(whole-command seconds, the entry's own seconds, entry folder, rows computed) of one cache build."""
    cmd = [args.nexus, "--compute-threads", str(args.threads), "cache", "build", composition, "--cache", cache,
           "--split", "train", "--json"]
    started = time.perf_counter()
    done = subprocess.run(cmd, capture_output=True, text=True)
    wall = time.perf_counter() - started
    if done.returncode != 0:
        raise SystemExit("%s failed (%d):\n%s" % (" ".join(cmd), done.returncode, done.stderr))
    (entry,) = json.loads(done.stdout)
    return wall, entry["seconds"], entry["dir"], entry["computed_rows"]


def cosines(a, b):
    return (a * b).sum(1) / (np.linalg.norm(a, axis=1) * np.linalg.norm(b, axis=1) + 1e-30)


def composition_for(key, spec, dataset, rows, classes):
    """A minimal composition: this one teacher with one tower, softmax router, one linear head."""
    return {
        "nexus": 1, "name": "teacher-throughput", "shared_dim": 64,
        "teachers": [{"name": key, "plugin": spec["plugin"], "modality": "text", "width": spec["width"],
                      "options": dict(spec["nexus_options"], path=spec["nexus_path"]), "tower": {"plugin": "linear"}}],
        "router": {"plugin": "softmax"},
        "heads": [{"name": "head", "task": "task", "outputs": classes, "plugin": "linear"}],
        "losses": [{"plugin": "cross_entropy", "head": "head"}],
        "data": {"root": DATA, "tasks": {"task": {"dataset": dataset, "modality": "text", "train_rows": rows}}},
    }


def bench_model(args, key, quick_rows, tmp):
    spec = MODELS[key]
    tokenizer = transformers.AutoTokenizer.from_pretrained(spec["hf_path"])
    model = transformers.AutoModel.from_pretrained(spec["hf_path"], attn_implementation="eager", torch_dtype=torch.float32,
                                                   **spec["hf_kwargs"]).eval()
    module = Pooled(model, spec["normalize"]).eval()
    session = onnx_session(module, spec, args.threads)
    config = model.config
    linear_weights = sum(m.weight.numel() for m in model.modules() if isinstance(m, torch.nn.Linear))
    attention_width = config.num_attention_heads * (getattr(config, "head_dim", None) or config.hidden_size // config.num_attention_heads)

    def run_torch(ids, mask, pool):
        with torch.inference_mode():
            return module(torch.from_numpy(ids), torch.from_numpy(mask), torch.from_numpy(pool)).numpy()

    def run_ort(ids, mask, pool):
        return session.run(None, {"input_ids": ids, "attention_mask": mask, "pool_mask": pool})[0]

    results = []
    for dataset in args.datasets:
        limits = [x for x in (quick_rows.get(dataset), args.rows or spec["default_rows"]) if x]
        texts = train_texts(dataset, min(limits) if limits else None)
        rows = len(texts)
        with open(os.path.join(DATA, dataset, "manifest.json")) as f:
            classes = len(json.load(f)["classes"])
        comp = os.path.join(tmp, "%s-%s.yaml" % (key, dataset))
        with open(comp, "w") as f:  # JSON is YAML
            json.dump(composition_for(key, spec, dataset, rows, classes), f, indent=2)
        shapes, real = padded_batches(texts, tokenizer, spec)
        padded = sum(b * l for b, l in shapes)
        linear_flops = 2 * linear_weights * padded
        attention_flops = sum(4 * l * l * attention_width * config.num_hidden_layers * b for b, l in shapes)
        seconds = {e: [] for e in ENGINES}
        nexus_wall, features = [], {}
        for r in range(args.runs):
            for engine in ENGINES[r % 3:] + ENGINES[:r % 3]:
                if engine == "nexus":
                    cache = os.path.join(tmp, "cache-%s-%s-%d" % (key, dataset, r))
                    wall, secs, entry, computed = run_nexus(args, comp, cache)
                    if computed != rows:
                        raise SystemExit("nexus computed %d rows, expected %d (cache not empty?)" % (computed, rows))
                    if r == 0:
                        features[engine] = load_entry(entry)
                    shutil.rmtree(cache)
                    nexus_wall.append(wall)
                else:
                    run_batch = run_torch if engine == "transformers" else run_ort
                    started = time.perf_counter()
                    out = encode_peer(texts, tokenizer, spec, run_batch)
                    secs = time.perf_counter() - started
                    if r == 0:
                        features[engine] = out
                seconds[engine].append(secs)
            print("%s %s run %d/%d: %s" % (key, dataset, r + 1, args.runs, ", ".join(
                "%s %.1f rows/s" % (e, rows / seconds[e][-1]) for e in ENGINES)), file=sys.stderr)
        res = {"model": key, "teacher": spec["name"], "dataset": dataset, "rows": rows, "real_tokens": real,
               "padded_tokens": padded, "batches": len(shapes), "linear_gflop": linear_flops / 1e9,
               "attention_gflop": attention_flops / 1e9, "seconds": seconds, "nexus_whole_command_seconds": nexus_wall}
        for e in ENGINES:
            t = statistics.median(seconds[e])
            res[e] = {"rows_per_s": rows / t, "gflops": (linear_flops + attention_flops) / t / 1e9}
        res["nexus_whole_command"] = {"rows_per_s": rows / statistics.median(nexus_wall)}
        faster = max(("transformers", "onnxruntime"), key=lambda e: res[e]["rows_per_s"])
        res["faster_peer"] = faster
        res["ratio"] = res["nexus"]["rows_per_s"] / res[faster]["rows_per_s"]
        res["ratio_whole_command"] = res["nexus_whole_command"]["rows_per_s"] / res[faster]["rows_per_s"]
        res["min_cosine_to_nexus"] = {e: float(cosines(features["nexus"], features[e]).min()) for e in ENGINES[1:]}
        results.append(res)
    return results


def machine():
    with open("/proc/cpuinfo") as f:
        names = [line.split(":", 1)[1].strip() for line in f if line.startswith("model name")]
    return "%s, %d cores" % (names[0] if names else platform.processor(), os.cpu_count())


def markdown(report):
    peak = report["gemm_peak"]
    lines = ["%s, %s, commit %s, %d threads; torch %s, transformers %s, onnxruntime %s; median of %d runs." % (
        report["date"], report["machine"], report["commit"], report["threads"], report["torch"], report["transformers"],
        report["onnxruntime"], report["runs"]), "",
        "| teacher | dataset | rows | tokens real / padded | nexus | nexus, whole command | transformers | onnxruntime | nexus / faster peer |",
        "|---|---|---|---|---|---|---|---|---|"]
    for r in report["results"]:
        lines.append("| %s | %s | %d | %d / %d | %.1f rows/s | %.1f rows/s | %.1f rows/s | %.1f rows/s | **%.2f×** (%.2f× whole command) |" % (
            r["teacher"], r["dataset"], r["rows"], r["real_tokens"], r["padded_tokens"], r["nexus"]["rows_per_s"],
            r["nexus_whole_command"]["rows_per_s"], r["transformers"]["rows_per_s"], r["onnxruntime"]["rows_per_s"],
            r["ratio"], r["ratio_whole_command"]))
    lines += ["", "Matrix products per pass and their rate, as a share of the fp32 GEMM peak (%.1f GFLOPS: %s, [%d, %d] x [%d, %d]):" % (
        peak["gflops"], peak["library"], peak["m"], peak["k"], peak["k"], peak["n"]), "",
        "| teacher | dataset | GFLOP (linear + attention) | nexus | transformers | onnxruntime |", "|---|---|---|---|---|---|"]
    for r in report["results"]:
        lines.append("| %s | %s | %.1f + %.1f | %s |" % (r["teacher"], r["dataset"], r["linear_gflop"], r["attention_gflop"], " | ".join(
            "%.1f GFLOPS (%.0f %%)" % (r[e]["gflops"], 100 * r[e]["peak_share"]) for e in ENGINES)))
    lines += ["", "Per-run seconds (nexus: the entry's own; whole command in brackets):", ""]
    for r in report["results"]:
        lines.append("- %s / %s: nexus %s (%s); transformers %s; onnxruntime %s; lowest cosine to nexus's features: transformers %.6f, onnxruntime %.6f" % (
            r["teacher"], r["dataset"], ", ".join("%.2f" % s for s in r["seconds"]["nexus"]),
            ", ".join("%.2f" % s for s in r["nexus_whole_command_seconds"]),
            ", ".join("%.2f" % s for s in r["seconds"]["transformers"]), ", ".join("%.2f" % s for s in r["seconds"]["onnxruntime"]),
            r["min_cosine_to_nexus"]["transformers"], r["min_cosine_to_nexus"]["onnxruntime"]))
    t = report["targets"]
    lines += ["", "Targets: nexus ≥ 1.2× the faster peer: %s; ≥ 80 %% of the GEMM peak: %s." % (
        "met" if t["speed_met"] else "not met", "met" if t["efficiency_met"] else "not met")]
    return "\n".join(lines)


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--nexus", default=os.path.join(ROOT, "build", "bin", "nexus"))
    ap.add_argument("--runs", type=int, default=3)
    ap.add_argument("--threads", type=int, default=os.cpu_count())
    ap.add_argument("--rows", type=int, default=None,
                    help="first K train texts per dataset (default: the quickstart's train_rows; SmolLM2: 1000)")
    ap.add_argument("--models", default="minilm,smollm2")
    ap.add_argument("--datasets", default="wordnet_supersense,fortunes_category")
    ap.add_argument("--json", action="store_true")
    args = ap.parse_args()
    args.models, args.datasets = args.models.split(","), args.datasets.split(",")
    for m in args.models:
        if m not in MODELS:
            ap.error("unknown model '%s' (choose from %s)" % (m, ", ".join(MODELS)))
    if not os.access(args.nexus, os.X_OK):
        raise SystemExit("%s does not exist: build it first (scripts/quickstart.sh or scripts/build.sh)" % args.nexus)
    torch.set_num_threads(args.threads)
    os.environ["RAYON_NUM_THREADS"] = str(args.threads)  # tokenizers' pool starts at its first batch
    transformers.logging.set_verbosity_error()

    with open(os.path.join(ROOT, "configs", "quickstart.yaml")) as f:
        tasks = yaml.safe_load(f)["data"]["tasks"]
    quick_rows = {t["dataset"]: t.get("train_rows") for t in tasks.values()}
    shapes = {(s, s, s) for s in (512, 1024, 1536, 2048)}
    for key in args.models:
        config = transformers.AutoConfig.from_pretrained(MODELS[key]["hf_path"])
        shapes |= {(2048, k, n) for k, n in MODELS[key]["shapes"](config)}
    gemm = gemm_peak(sorted(shapes))
    print("fp32 GEMM %.1f GFLOPS at best" % max(g["gflops"] for g in gemm), file=sys.stderr)

    results = []
    with tempfile.TemporaryDirectory(prefix="nexus-teacher-bench-") as tmp:
        subprocess.run([args.nexus, "plugins", "list", "--json"], check=True, capture_output=True)  # probe once, untimed
        for key in args.models:
            results += bench_model(args, key, quick_rows, tmp)
    gemm += gemm_peak(sorted(shapes))  # measured before and after, so that a noisy moment does not set the peak
    peak = max(gemm, key=lambda g: g["gflops"])
    for r in results:
        for e in ENGINES:
            r[e]["peak_share"] = r[e]["gflops"] / peak["gflops"]
    commit = subprocess.run(["git", "-C", ROOT, "rev-parse", "--short", "HEAD"], capture_output=True, text=True).stdout.strip()
    report = {"date": datetime.date.today().isoformat(), "machine": machine(), "commit": commit, "threads": args.threads,
              "runs": args.runs, "torch": torch.__version__, "transformers": transformers.__version__,
              "tokenizers": tokenizers.__version__, "onnxruntime": ort.__version__,
              "numpy": np.__version__, "onnx_opset": ONNX_OPSET, "gemm_peak": peak, "gemm": gemm, "results": results}
    report["targets"] = {"speed_met": all(r["ratio"] >= 1.2 for r in results),
                         "efficiency_met": all(r["nexus"]["peak_share"] >= 0.8 for r in results)}
    print(json.dumps(report, indent=2) if args.json else markdown(report))


if __name__ == "__main__":
    main()
