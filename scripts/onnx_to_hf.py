#!/usr/bin/env python3
"""Turns a sentence-transformers BERT model exported to ONNX into a Hugging Face BERT folder that
the hf_encoder teacher (and transformers' BertModel) loads:

    config.json  model.safetensors  vocab.txt  tokenizer_config.json  special_tokens_map.json
    modules.json  1_Pooling/config.json  sentence_bert_config.json  conversion.json

Weights: the graph's initializers. Named ones (`model.0.auto_model.embeddings...`, `...bias`,
`...LayerNorm...`) keep their names without the sentence-transformers prefix. The Linear weights
of an ONNX export are anonymous (`onnx::MatMul_470`) and stored as [in, out] for `x @ W`; each is
named after the bias its MatMul output is added to (`...query.bias` -> `...query.weight`) and
transposed to transformers' [out, in]. Shapes are checked against the bias and the config.

Config: hidden size, vocabulary and position table from the embedding shapes; layers from the
encoder's names; heads from the attention Reshape's [.., heads, head_dim] constants (checked
against the 1/sqrt(head_dim) score scale); layer_norm_eps from the LayerNormalization nodes;
hidden_act "gelu" when the feed-forward uses Erf (exact GELU), refused otherwise.

Pooling and normalisation: read from the graph's sentence-transformers modules (`/model/model.1/`
pooling: ReduceSum/Clip/Div over the mask = mean tokens; a `/model/model.2/` module or an L2
reduction = Normalize). They go to modules.json and 1_Pooling/config.json exactly as
sentence-transformers writes them.

Tokenizer: an ONNX export carries no vocabulary. `--tokenizer-from DIR` copies vocab.txt,
tokenizer_config.json and special_tokens_map.json from a folder that has the same WordPiece
vocabulary, and proves it: the word-embedding rows of the two models must agree row by row
(median cosine >= 0.5; a vocabulary shifted by one token gives ~0.03). MiniLM models distilled
from the same uncased BERT share that table.

Needs numpy and onnx (Debian: python3-onnx); safetensors is written by hand (8-byte little-endian
header length, JSON header, raw little-endian float32 data). Exit codes: 0 ok, 1 failure, 2 usage.
"""
import argparse
import hashlib
import json
import math
import os
import shutil
import struct
import sys
import tempfile

SCHEMA = 1  # bump when the output folder changes for the same input


class ConvertError(Exception):
    pass


def sha256_file(path):
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()


def read_safetensors(path, names):
    """The named float32 tensors of a safetensors file (numpy arrays)."""
    import numpy as np
    with open(path, "rb") as f:
        (n,) = struct.unpack("<Q", f.read(8))
        header = json.loads(f.read(n))
        base = 8 + n
        out = {}
        for name in names:
            e = header[name]
            if e["dtype"] != "F32":
                raise ConvertError(f"{path}: {name} is {e['dtype']}, expected F32")
            start, end = e["data_offsets"]
            f.seek(base + start)
            out[name] = np.frombuffer(f.read(end - start), dtype="<f4").reshape(e["shape"])
    return out


def write_safetensors(path, tensors):
    """tensors: name -> float32 numpy array. Names sorted, data 8-byte aligned via header padding."""
    import numpy as np
    header, offset, blobs = {}, 0, []
    for name in sorted(tensors):
        a = np.ascontiguousarray(tensors[name], dtype="<f4")
        header[name] = {"dtype": "F32", "shape": list(a.shape), "data_offsets": [offset, offset + a.nbytes]}
        blobs.append(a)
        offset += a.nbytes
    header["__metadata__"] = {"format": "pt"}
    text = json.dumps(header, separators=(",", ":")).encode()
    text += b" " * ((8 - len(text) % 8) % 8)
    with open(path, "wb") as f:
        f.write(struct.pack("<Q", len(text)))
        f.write(text)
        for a in blobs:
            f.write(a.tobytes())


def convert(onnx_path, out_dir, tokenizer_from, name, max_seq_length):
    import numpy as np
    import onnx
    from onnx import numpy_helper

    model = onnx.load(onnx_path)
    g = model.graph
    init = {t.name: numpy_helper.to_array(t) for t in g.initializer}
    consts = {}
    for n in g.node:
        if n.op_type == "Constant":
            for a in n.attribute:
                if a.name == "value":
                    consts[n.output[0]] = numpy_helper.to_array(a.t)
    consumers = {}
    for n in g.node:
        for i in n.input:
            consumers.setdefault(i, []).append(n)
    producer = {o: n for n in g.node for o in n.output}

    # sentence-transformers exports name weights model.0.auto_model.<transformers name>.
    found = [k[:-len("embeddings.word_embeddings.weight")] for k in init
             if k.endswith("embeddings.word_embeddings.weight")]
    if len(found) != 1:
        raise ConvertError("no single initializer named *embeddings.word_embeddings.weight: not a BERT export")
    prefix = found[0]

    def hf(n):
        return n[len(prefix):]

    tensors = {hf(k): v for k, v in init.items() if k.startswith(prefix) and
               hf(k).startswith(("embeddings.", "encoder.", "pooler."))}
    # Buffers traced into the graph (position_ids, token_type_ids) are not weights.
    tensors = {k: v for k, v in tensors.items() if not k.endswith(("position_ids", "token_type_ids"))}

    # MatMul weights: name each after the bias added to its output, transpose [in,out] -> [out,in].
    for n in g.node:
        if n.op_type != "MatMul":
            continue
        w = next((i for i in n.input if i in init), None)
        if w is None:
            continue  # activation x activation (attention scores)
        W = init[w]
        adds = [c for c in consumers.get(n.output[0], []) if c.op_type == "Add"]
        biases = [i for c in adds for i in c.input if i in init and i.endswith(".bias")]
        if len(biases) != 1 or not biases[0].startswith(prefix):
            raise ConvertError(f"MatMul {n.name or n.output[0]} ({w} {W.shape}): cannot find its bias")
        b = biases[0]
        if W.ndim != 2 or n.input[1] != w or W.shape[1] != init[b].shape[0]:
            raise ConvertError(f"{w} {W.shape} does not fit x @ W + {b} {init[b].shape}")
        tensors[hf(b)[:-len("bias")] + "weight"] = W.T.copy()

    # Config.
    word = tensors["embeddings.word_embeddings.weight"]
    vocab_size, hidden = word.shape
    layers = sorted({int(k.split(".")[2]) for k in tensors if k.startswith("encoder.layer.")})
    if layers != list(range(len(layers))) or not layers:
        raise ConvertError(f"encoder layers are not 0..N-1: {layers}")
    inter = tensors["encoder.layer.0.intermediate.dense.bias"].shape[0]

    # Heads: Reshape of the query projection to [B, L, heads, head_dim].
    q_add = None
    for n in g.node:
        if n.op_type == "Add" and any(i == prefix + "encoder.layer.0.attention.self.query.bias" for i in n.input):
            q_add = n
    heads = None
    for c in consumers.get(q_add.output[0], []) if q_add else []:
        if c.op_type != "Reshape":
            continue
        shape_src = c.input[1]
        dims = []
        if shape_src in consts or shape_src in init:
            dims = list((consts.get(shape_src) if shape_src in consts else init[shape_src]).reshape(-1))
        elif shape_src in producer and producer[shape_src].op_type == "Concat":
            for i in producer[shape_src].input:
                v = consts.get(i, init.get(i))
                dims.extend(list(v.reshape(-1)) if v is not None else [None])
        if len(dims) == 4 and dims[2] and dims[3] and dims[2] * dims[3] == hidden:
            heads = int(dims[2])
    if heads is None:
        raise ConvertError("cannot find the number of attention heads (query Reshape)")
    head_dim = hidden // heads
    scales = [float(v) for k, v in consts.items() if v.size == 1 and abs(float(v) - math.sqrt(head_dim)) < 1e-4]
    if not scales:
        raise ConvertError(f"no attention scale sqrt({head_dim}) in the graph: heads={heads} is doubtful")

    eps = {round(float(a.f), 20) for n in g.node if n.op_type == "LayerNormalization"
           for a in n.attribute if a.name == "epsilon"}
    if len(eps) != 1:
        raise ConvertError(f"expected one LayerNormalization epsilon, found {sorted(eps)}")
    eps = float(f"{eps.pop():.6g}")  # 9.999999960041972e-13 (float32 of 1e-12) -> 1e-12
    ops = {n.op_type for n in g.node}
    if "Erf" in ops:
        act = "gelu"
    else:
        raise ConvertError("feed-forward activation is not exact GELU (no Erf); not supported")

    expected = {"embeddings.word_embeddings.weight": (vocab_size, hidden),
                "embeddings.position_embeddings.weight": None, "embeddings.token_type_embeddings.weight": None,
                "embeddings.LayerNorm.weight": (hidden,), "embeddings.LayerNorm.bias": (hidden,)}
    for l in layers:
        p = f"encoder.layer.{l}."
        for m in ("attention.self.query", "attention.self.key", "attention.self.value", "attention.output.dense"):
            expected[p + m + ".weight"] = (hidden, hidden)
            expected[p + m + ".bias"] = (hidden,)
        expected[p + "intermediate.dense.weight"] = (inter, hidden)
        expected[p + "intermediate.dense.bias"] = (inter,)
        expected[p + "output.dense.weight"] = (hidden, inter)
        expected[p + "output.dense.bias"] = (hidden,)
        for m in ("attention.output.LayerNorm", "output.LayerNorm"):
            expected[p + m + ".weight"] = (hidden,)
            expected[p + m + ".bias"] = (hidden,)
    missing = sorted(set(expected) - set(tensors))
    if missing:
        raise ConvertError(f"missing {len(missing)} tensor(s): {', '.join(missing[:5])}")
    extra = sorted(k for k in set(tensors) - set(expected) if not k.startswith("pooler."))
    if extra:
        raise ConvertError(f"unexpected tensor(s): {', '.join(extra[:5])}")
    for k, shape in expected.items():
        if shape is not None and tuple(tensors[k].shape) != shape:
            raise ConvertError(f"{k}: shape {tuple(tensors[k].shape)}, expected {shape}")
        if tensors[k].dtype != np.float32:
            raise ConvertError(f"{k}: dtype {tensors[k].dtype}, only float32 is supported")

    config = {
        "_name_or_path": name,
        "architectures": ["BertModel"],
        "attention_probs_dropout_prob": 0.1,
        "hidden_act": act,
        "hidden_dropout_prob": 0.1,
        "hidden_size": int(hidden),
        "initializer_range": 0.02,
        "intermediate_size": int(inter),
        "layer_norm_eps": eps,
        "max_position_embeddings": int(tensors["embeddings.position_embeddings.weight"].shape[0]),
        "model_type": "bert",
        "num_attention_heads": heads,
        "num_hidden_layers": len(layers),
        "pad_token_id": 0,
        "position_embedding_type": "absolute",
        "type_vocab_size": int(tensors["embeddings.token_type_embeddings.weight"].shape[0]),
        "vocab_size": int(vocab_size),
    }

    # sentence-transformers modules: model.1 = Pooling, model.2 = Normalize.
    def module_ops(k):
        return {n.op_type for n in g.node if n.name.startswith(f"/model/model.{k}/") or
                any(o.startswith(f"/model/model.{k}/") for o in n.output)}
    pool_ops, norm_ops = module_ops(1), module_ops(2)
    if {"ReduceSum", "Div"} <= pool_ops and not ({"ReduceMax"} & pool_ops):
        pooling = "mean"
    elif pool_ops:
        raise ConvertError(f"pooling module with ops {sorted(pool_ops)} is not mean pooling; not supported")
    else:
        raise ConvertError("graph has no sentence-transformers pooling module (/model/model.1/)")
    normalize = bool(norm_ops) or bool({"ReduceL2", "LpNormalization"} & ops)

    # Tokenizer files from a folder with the same vocabulary, checked through the embeddings.
    vocab_src = os.path.join(tokenizer_from, "vocab.txt")
    with open(vocab_src, encoding="utf-8") as f:
        n_vocab = sum(1 for _ in f)
    if n_vocab != vocab_size:
        raise ConvertError(f"{vocab_src} has {n_vocab} tokens, the model's embedding table {vocab_size}")
    other = read_safetensors(os.path.join(tokenizer_from, "model.safetensors"),
                             [k for k in ("embeddings.word_embeddings.weight",)])["embeddings.word_embeddings.weight"]
    if other.shape != word.shape:
        raise ConvertError(f"{tokenizer_from}'s word embeddings are {other.shape}, this model's {word.shape}")
    cos = (word * other).sum(1) / (np.linalg.norm(word, axis=1) * np.linalg.norm(other, axis=1) + 1e-12)
    row_cos = float(np.median(cos))
    if row_cos < 0.5:
        raise ConvertError(f"{tokenizer_from} does not share this model's vocabulary: median word-embedding "
                           f"row cosine {row_cos:.3f} < 0.5")

    parent = os.path.dirname(os.path.abspath(out_dir))
    os.makedirs(parent, exist_ok=True)
    tmp = tempfile.mkdtemp(prefix=".onnx_to_hf-", dir=parent)
    os.chmod(tmp, 0o755)
    try:
        write_safetensors(os.path.join(tmp, "model.safetensors"), tensors)
        with open(os.path.join(tmp, "config.json"), "w") as f:
            json.dump(config, f, indent=2)
            f.write("\n")
        shutil.copyfile(vocab_src, os.path.join(tmp, "vocab.txt"))
        with open(os.path.join(tokenizer_from, "tokenizer_config.json"), encoding="utf-8") as f:
            tok = json.load(f)
        tok["name_or_path"] = name
        tok["model_max_length"] = config["max_position_embeddings"]
        with open(os.path.join(tmp, "tokenizer_config.json"), "w", encoding="utf-8") as f:
            json.dump(tok, f, indent=2)
            f.write("\n")
        stm = os.path.join(tokenizer_from, "special_tokens_map.json")
        if os.path.exists(stm):
            shutil.copyfile(stm, os.path.join(tmp, "special_tokens_map.json"))
        modules = [{"idx": 0, "name": "0", "path": "", "type": "sentence_transformers.models.Transformer"},
                   {"idx": 1, "name": "1", "path": "1_Pooling", "type": "sentence_transformers.models.Pooling"}]
        if normalize:
            modules.append({"idx": 2, "name": "2", "path": "2_Normalize", "type": "sentence_transformers.models.Normalize"})
        with open(os.path.join(tmp, "modules.json"), "w") as f:
            json.dump(modules, f, indent=2)
            f.write("\n")
        os.makedirs(os.path.join(tmp, "1_Pooling"))
        with open(os.path.join(tmp, "1_Pooling", "config.json"), "w") as f:
            json.dump({"word_embedding_dimension": int(hidden), "pooling_mode_cls_token": False,
                       "pooling_mode_mean_tokens": True, "pooling_mode_max_tokens": False,
                       "pooling_mode_mean_sqrt_len_tokens": False}, f, indent=2)
            f.write("\n")
        with open(os.path.join(tmp, "sentence_bert_config.json"), "w") as f:
            json.dump({"max_seq_length": max_seq_length, "do_lower_case": False}, f, indent=2)
            f.write("\n")
        report = {
            "converter": "scripts/onnx_to_hf.py", "schema": SCHEMA,
            "source": os.path.basename(onnx_path), "source_sha256": sha256_file(onnx_path),
            "tokenizer_from": os.path.basename(os.path.normpath(tokenizer_from)),
            "vocab_row_cosine_median": round(row_cos, 4),
            "pooling": pooling, "normalize": normalize, "tensors": len(tensors),
            "model_sha256": sha256_file(os.path.join(tmp, "model.safetensors")),
        }
        with open(os.path.join(tmp, "conversion.json"), "w") as f:
            json.dump(report, f, indent=2)
            f.write("\n")
        if os.path.exists(out_dir):
            shutil.rmtree(out_dir)
        os.rename(tmp, out_dir)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    return config, report


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("onnx", help="the .onnx file")
    ap.add_argument("out", help="output folder (replaced when the conversion succeeds)")
    ap.add_argument("--tokenizer-from", required=True, metavar="DIR",
                    help="HF BERT folder with the same WordPiece vocabulary (vocab.txt, tokenizer_config.json, model.safetensors)")
    ap.add_argument("--name", help="model name written to config.json (default: the output folder's name)")
    ap.add_argument("--max-seq-length", type=int, default=128,
                    help="sentence-transformers max_seq_length of the original model (sentence_bert_config.json)")
    args = ap.parse_args()
    for p in (args.onnx, args.tokenizer_from):
        if not os.path.exists(p):
            print(f"onnx_to_hf: {p} not found", file=sys.stderr)
            return 2
    try:
        import numpy  # noqa: F401
        import onnx  # noqa: F401
    except ImportError as e:
        print(f"onnx_to_hf: {e} (apt-get install python3-onnx python3-numpy)", file=sys.stderr)
        return 1
    name = args.name or os.path.basename(os.path.normpath(args.out))
    try:
        config, report = convert(args.onnx, args.out, args.tokenizer_from, name, args.max_seq_length)
    except ConvertError as e:
        print(f"onnx_to_hf: {args.onnx}: {e}", file=sys.stderr)
        return 1
    print(f"onnx_to_hf: {name}: {config['num_hidden_layers']} layers, hidden {config['hidden_size']}, "
          f"{config['num_attention_heads']} heads, {report['tensors']} tensors, {report['pooling']} pooling, "
          f"normalize={str(report['normalize']).lower()}, vocab row cosine {report['vocab_row_cosine_median']}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
