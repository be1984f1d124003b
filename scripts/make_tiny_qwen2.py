#!/usr/bin/env python3
"""Writes tests/fixtures/decoder_llm/tiny-qwen2/ (a random-weight Qwen2 Hugging Face folder) and
its reference tiny-qwen2.json / tiny-qwen2.npy beside it, for tests/plugins/test_decoder_llm.cpp.

SmolLM2, the real model the decoder_llm teacher is checked against, is Llama-style: no biases, the
GPT-2 pre-tokenizer, no normalizer. This folder has what Qwen2 adds, at a size that can be
committed (about 0.6 MB):
  - a byte-level BPE tokenizer.json built the way Qwen2's is: NFC normalizer, Split on Qwen2's
    regex (single digits, \\p{N}) then ByteLevel(add_prefix_space=false, use_regex=false), a
    ByteLevel decoder and post-processor, and <|endoftext|>, <|im_start|>, <|im_end|> added after
    the vocabulary as special tokens; trained here by `tokenizers` on a few mixed-script
    paragraphs (~500 tokens), with Qwen2's tokenizer_config.json (no BOS);
  - a Qwen2ForCausalLM of Qwen2's shape: grouped-query attention (4 query heads, 2 KV heads),
    rope_theta 1e6, rms_norm_eps 1e-6, tied embeddings, and Q/K/V biases drawn with std 0.5, so
    large that a model that skipped them is far from the reference (the JSON records how far:
    `zeroed_bias_min_cosine`); norm weights are random too, so ignoring one shows.
Weights are float32 from a fixed seed; the output is deterministic.

The reference, as scripts/make_llm_reference.py makes SmolLM2's: for each sentence the token ids of
transformers' AutoTokenizer on the folder (cut to MAX_LENGTH; checked equal to the `tokenizers`
object it was saved from) and, at each of LAYERS (transformers' hidden_states numbering: 3 is after
the final norm), the mean over the tokens except the first and the last token's state, float32.

Run once by a developer (not by CI); the output is committed. Setup used (Debian bookworm,
python3-torch 1.13, python3-numpy):

    /usr/bin/python3 -m pip install --target /tmp/pyqwen --no-deps 'transformers==4.46.3' \\
        'tokenizers==0.20.3' 'huggingface-hub==0.26.5' 'safetensors==0.4.5' 'accelerate==0.34.2' psutil \\
        regex tqdm filelock packaging pyyaml requests typing_extensions fsspec
    PYTHONPATH=/tmp/pyqwen /usr/bin/python3 scripts/make_tiny_qwen2.py
"""
import json
import os
import shutil
import sys

os.environ["HF_HUB_OFFLINE"] = "1"
os.environ["TRANSFORMERS_OFFLINE"] = "1"

ROOT = os.path.normpath(os.path.join(os.path.dirname(os.path.abspath(__file__)), ".."))
OUT = os.path.join(ROOT, "tests", "fixtures", "decoder_llm")
FOLDER = os.path.join(OUT, "tiny-qwen2")
SEED = 20241203
VOCAB_SIZE = 480  # before the three special tokens
MAX_LENGTH = 64
LAYERS = [2, 3]
BIAS_STD = 0.5
# Qwen2's pre-tokenizer regex, as its tokenizer.json spells it (transformers' PRETOKENIZE_REGEX).
QWEN2_REGEX = (r"(?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\r\n\p{L}\p{N}]?\p{L}+|\p{N}| ?[^\s\p{L}\p{N}]+[\r\n]*|"
               r"\s*[\r\n]+|\s+(?!\S)|\s+")
SPECIAL = ["<|endoftext|>", "<|im_start|>", "<|im_end|>"]
# Qwen2-0.5B-Instruct's chat template.
CHAT_TEMPLATE = ("{% for message in messages %}{% if loop.first and messages[0]['role'] != 'system' %}"
                 "{{ '<|im_start|>system\\nYou are a helpful assistant.<|im_end|>\\n' }}{% endif %}"
                 "{{'<|im_start|>' + message['role'] + '\\n' + message['content'] + '<|im_end|>' + '\\n'}}"
                 "{% endfor %}{% if add_generation_prompt %}{{ '<|im_start|>assistant\\n' }}{% endif %}")

# What the tokenizer is trained on: enough of each script that merges form inside multi-byte
# characters (CJK, Cyrillic, Greek), numbers to see that digits never merge, and code.
TRAINING_TEXT = [
    "The quick brown fox jumps over the lazy dog. The dog was not amused, and the fox ran away "
    "into the forest, where the trees were tall and the light was green.",
    "Café crème brûlée, naïve façade, jalapeño piñata: the menu of a small restaurant in Montréal. "
    "Übermäßig große Straßen führen nach Zürich; Ångström and Øresund, Łódź and İstanbul.",
    "我爱自然语言处理。今天天气很好，我们去公园散步吧。自然语言处理是人工智能的一个分支。",
    "日本語のテキストと한국어 텍스트가 섞여 있습니다. 東京は日本の首都です。",
    "Привет, как дела? Всё хорошо, спасибо. Ёлки-палки, какая погода!",
    "Καλημέρα κόσμε, Σωκράτης και Πλάτων. ΟΔΟΣ ΠΡΟΣ ΤΗΝ ΑΘΗΝΑ.",
    "In 2023, 3.14159 x 10^5 = 314159 and 1/3 is 0.333; call +1-800-555-0199 before 12:30.",
    "def square(x):\n    return x ** 2  # the square\n\nfor i in range(10):\n    print(square(i))\n",
    "I love pizza 🍕 and emojis 😀👍🏽 — don't you? We'll see, they've said it's fine, I'm sure.",
    "Hello, world!!! What's up? (not much...) -- really; #hashtags & @mentions, e-mail: a.b@c.org",
]

SENTENCES = [
    "The quick brown fox jumps over the lazy dog.",
    "Café crème brûlée and a naïve façade in Montréal!",
    "我爱自然语言处理。今天天气很好！",
    "I love pizza 🍕 and emojis 😀👍🏽 — don't you?",
    "In 2023, 3.14159 × 10^5 = 314,159; call +1-800-555-0199.",
    "<|im_start|>user\nWhat is 12345 + 67890?<|im_end|>\n<|im_start|>assistant\n",
    "Привет, как дела? Ёлки-палки, всё хорошо.",
    "e\u0301cole, \u212bngstr\u00f6m and \u2126hm: NFC makes one character of each.",
    "def f(x):\n    return x**2  # square\n",
    "Tabs\tand\nnewlines\r\nand  multiple   spaces, THEY'LL shout<|endoftext|>",
    "Short.",
    "a",
    "NEXUS composes several frozen pretrained teachers into one system; each teacher's features go "
    "through a trainable tower into a shared space, and a learned router gates the towers per input.",
]


def build_tokenizer():
    from tokenizers import AddedToken, Regex, Tokenizer, decoders, models, normalizers, pre_tokenizers, processors, trainers
    tok = Tokenizer(models.BPE(unk_token=None, fuse_unk=False, byte_fallback=False))
    tok.normalizer = normalizers.NFC()
    tok.pre_tokenizer = pre_tokenizers.Sequence([
        pre_tokenizers.Split(Regex(QWEN2_REGEX), behavior="isolated", invert=False),
        pre_tokenizers.ByteLevel(add_prefix_space=False, use_regex=False),
    ])
    tok.decoder = decoders.ByteLevel()
    tok.post_processor = processors.ByteLevel()
    trainer = trainers.BpeTrainer(vocab_size=VOCAB_SIZE, min_frequency=2, show_progress=False,
                                  initial_alphabet=pre_tokenizers.ByteLevel.alphabet())
    tok.train_from_iterator(TRAINING_TEXT * 3, trainer)
    # After training, so that they take the ids after the vocabulary, as in Qwen2.
    tok.add_special_tokens([AddedToken(t, special=True, normalized=False) for t in SPECIAL])
    return tok


def write_tokenizer(tok):
    # The Python constructors ignore some ByteLevel flags; Qwen2's file has all three false in the
    # pre-tokenizer, the post-processor and the decoder.
    spec = json.loads(tok.to_str())
    for part in (spec["pre_tokenizer"]["pretokenizers"][1], spec["post_processor"], spec["decoder"]):
        part.update(add_prefix_space=False, trim_offsets=False, use_regex=False)
    with open(os.path.join(FOLDER, "tokenizer.json"), "w", encoding="utf-8") as f:
        json.dump(spec, f, ensure_ascii=False, indent=2)
    added = {str(tok.token_to_id(t)): {"content": t, "lstrip": False, "normalized": False, "rstrip": False,
                                        "single_word": False, "special": True} for t in SPECIAL}
    config = {
        "add_bos_token": False,
        "add_prefix_space": False,
        "added_tokens_decoder": added,
        "additional_special_tokens": SPECIAL[1:],
        "bos_token": None,
        "chat_template": CHAT_TEMPLATE,
        "clean_up_tokenization_spaces": False,
        "eos_token": "<|im_end|>",
        "errors": "replace",
        "model_max_length": 32768,
        "pad_token": "<|endoftext|>",
        "split_special_tokens": False,
        "tokenizer_class": "Qwen2Tokenizer",
        "unk_token": None,
    }
    with open(os.path.join(FOLDER, "tokenizer_config.json"), "w", encoding="utf-8") as f:
        json.dump(config, f, ensure_ascii=False, indent=2)


def build_model(vocab_size, eos_id):
    import torch
    from transformers import Qwen2Config, Qwen2ForCausalLM
    config = Qwen2Config(vocab_size=vocab_size, hidden_size=64, intermediate_size=128, num_hidden_layers=3,
                         num_attention_heads=4, num_key_value_heads=2, max_position_embeddings=512,
                         rope_theta=1e6, rms_norm_eps=1e-6, tie_word_embeddings=True, initializer_range=0.1,
                         use_sliding_window=False, bos_token_id=None, eos_token_id=eos_id,
                         torch_dtype="float32", attn_implementation="eager")
    torch.manual_seed(SEED)
    model = Qwen2ForCausalLM(config).eval()
    with torch.no_grad():
        for name, p in model.named_parameters():
            if name.endswith("_proj.bias"):
                p.normal_(0.0, BIAS_STD)
            elif "norm" in name:
                p.uniform_(0.5, 1.5)
    return model


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


def zeroed_bias_copy(model):
    import copy
    import torch
    clone = copy.deepcopy(model)
    with torch.no_grad():
        for name, p in clone.named_parameters():
            if name.endswith("_proj.bias"):
                p.zero_()
    return clone


def main():
    import numpy as np
    import torch
    from tokenizers import Tokenizer
    from transformers import AutoModelForCausalLM, AutoTokenizer
    shutil.rmtree(FOLDER, ignore_errors=True)
    os.makedirs(FOLDER)
    tok = build_tokenizer()
    write_tokenizer(tok)
    build_model(tok.get_vocab_size(with_added_tokens=True), tok.token_to_id("<|endoftext|>")).save_pretrained(FOLDER, safe_serialization=True)

    # Everything below reads the folder back, as a user of it would.
    if Tokenizer.from_file(os.path.join(FOLDER, "tokenizer.json")).to_str() == tok.to_str():
        sys.exit("the ByteLevel flags were not rewritten")
    hf_tok = AutoTokenizer.from_pretrained(FOLDER)
    raw_tok = Tokenizer.from_file(os.path.join(FOLDER, "tokenizer.json"))
    model = AutoModelForCausalLM.from_pretrained(FOLDER, torch_dtype=torch.float32, attn_implementation="eager").model.eval()
    if not float(model.layers[0].self_attn.q_proj.bias.abs().sum()) > 0:
        sys.exit("the saved model lost its Q biases")
    no_bias = zeroed_bias_copy(model)
    entries, states, zeroed_cos, longest = [], [], 1.0, 0
    for text in SENTENCES:
        full = hf_tok(text, add_special_tokens=True)["input_ids"]
        if full != raw_tok.encode(text).ids:
            sys.exit(f"AutoTokenizer and tokenizers disagree on {text!r}")
        longest = max(longest, len(full))
        ids = full[:MAX_LENGTH]
        s = states_for(model, ids)
        z = states_for(no_bias, ids)
        zeroed_cos = min(zeroed_cos, float(torch.nn.functional.cosine_similarity(s, z, dim=1).min()))
        entries.append({"text": text, "ids": ids})
        states.append(s.numpy())
    if longest <= MAX_LENGTH:
        sys.exit(f"no sentence is longer than max_length {MAX_LENGTH}: the cut is not tested")
    np.save(os.path.join(OUT, "tiny-qwen2.npy"), np.stack(states).astype(np.float32))
    meta = {
        "source": "scripts/make_tiny_qwen2.py: tiny-qwen2/, random Qwen2ForCausalLM, seed %d" % SEED,
        "reference": "transformers 4.46.3 AutoModelForCausalLM / AutoTokenizer on the folder, float32, eager attention, "
                     "on python3-torch " + torch.__version__,
        "max_length": MAX_LENGTH,
        "layers": LAYERS,
        "states": "tiny-qwen2.npy: float32 [sentence, 2 * layer, hidden]: mean (tokens 1..n-1), last token, per layer",
        "zeroed_bias_min_cosine": zeroed_cos,
        "sentences": entries,
    }
    with open(os.path.join(OUT, "tiny-qwen2.json"), "w", encoding="utf-8") as f:
        json.dump(meta, f, ensure_ascii=False, indent=1)
    size = sum(os.path.getsize(os.path.join(FOLDER, f)) for f in os.listdir(FOLDER))
    print(f"wrote {FOLDER} ({size} bytes, vocabulary {tok.get_vocab_size(with_added_tokens=True)}) and its reference: "
          f"{len(entries)} sentences, longest {longest} tokens; with the biases zeroed the states' cosine drops to {zeroed_cos:.3f}")


if __name__ == "__main__":
    main()
