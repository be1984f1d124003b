#!/usr/bin/env python3
"""Reference fixtures for the byte-level BPE tokenizer (plugins/support/src/bpe.cpp), written with
Hugging Face `tokenizers` itself.

Pinned: tokenizers==0.23.3 (PyPI wheel, abi3, CPython >= 3.9), gguf==0.19.0 for --smollm2.
Install them outside the system site-packages:
    /usr/bin/python3 -m pip install --target /tmp/pytok --no-deps tokenizers==0.23.3
    /usr/bin/python3 -m pip install --target /tmp/pygguf --no-deps gguf==0.19.0   # plus numpy (Debian)

    PYTHONPATH=/tmp/pytok /usr/bin/python3 scripts/make_bpe_reference.py
        Trains four small tokenizers (vocabulary 1000) in the configurations of the models NEXUS
        reads: GPT-2 (ByteLevel with its regex), Llama 3 (Split with its regex, ignore_merges, a
        BOS template), Qwen2 (NFC, Split with its regex) and SmolLM2 (Digits, then ByteLevel), and
        writes tests/fixtures/bpe/<name>/tokenizer.json and tests/fixtures/bpe/<name>.json (the ids
        of every sentence in tests/fixtures/bpe/sentences.json, also written). The GPT-2 file
        keeps its merges as "a b" strings (the older format), the others as pairs. Two variants
        (GPT-2 and SmolLM2 with add_prefix_space) get ids only: see VARIANTS.
    PYTHONPATH=/tmp/pytok:/tmp/pygguf /usr/bin/python3 scripts/make_bpe_reference.py --smollm2 GGUF OUT
        Builds SmolLM2's real tokenizer.json from the vocabulary inside its GGUF file (as
        transformers' GGUF converter would: tokens, merges, control tokens as special tokens, the
        smollm pre-tokenizer) into OUT (2 MB: not committed), and writes the ids of the same
        sentences, plus a long text, to tests/fixtures/bpe/smollm2_reference.json.
    PYTHONPATH=/tmp/pytok:/tmp/ud2 /usr/bin/python3 scripts/make_bpe_reference.py --unicode
        Compares the Unicode facts of tokenizers (\\p{L}, \\p{N}, \\s, the Digits pre-tokenizer, NFC's
        combining classes and decompositions) over every code point with what
        scripts/gen_unicode_tables.py puts in its tables (unicodedata2==16.0.0 at /tmp/ud2; Python's
        unicodedata less the post-Unicode-9.0 lists), and prints the differences.
    ... --bench TOKENIZER_JSON [N]
        Encodes the first N (5000) fortunes (Debian `fortunes`) on one thread, one encode() call
        per text and one encode_batch(), and prints tokens/s: the Python side of the speed
        comparison in docs/benchmarks.md.

Texts that are not valid UTF-8 are stored as "hex"; Python sees them decoded with
errors="replace" (one U+FFFD per maximal invalid subsequence), which is what the C++ side does.
Training reads this script's own sentences and a few standard-library modules, so re-running on
another Python may train a different tokenizer: the fixtures are always regenerated together.
"""
import argparse
import inspect
import json
import os
import sys
import time

import tokenizers
from tokenizers import Regex, Tokenizer, decoders, models, normalizers, pre_tokenizers, processors, trainers

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
OUT_DIR = os.path.join(ROOT, "tests", "fixtures", "bpe")
PINNED = "0.23.3"

GPT2_REGEX = r"""'s|'t|'re|'ve|'m|'ll|'d| ?\p{L}+| ?\p{N}+| ?[^\s\p{L}\p{N}]+|\s+(?!\S)|\s+"""
LLAMA3_REGEX = (r"""(?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\r\n\p{L}\p{N}]?\p{L}+|\p{N}{1,3}| ?[^\s\p{L}\p{N}]+[\r\n]*"""
                r"""|\s*[\r\n]+|\s+(?!\S)|\s+""")
QWEN2_REGEX = (r"""(?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\r\n\p{L}\p{N}]?\p{L}+|\p{N}| ?[^\s\p{L}\p{N}]+[\r\n]*"""
               r"""|\s*[\r\n]+|\s+(?!\S)|\s+""")

LONG_TEXT = ("NEXUS composes frozen pretrained teachers: a reasoning LLM, a vision-language model, a speech "
             "model and small sentence encoders. Each teacher's features are cached once (fp16, sharded, "
             "checksummed), projected into a shared space by a trainable tower, and mixed by a per-input "
             "router: z = sum_i w_i(x) * P_i(f_i(x)). Adding a teacher trains only its projection and the "
             "gating; the retention contract asks for >= 97% of the best single teacher's score, e.g. 0.97 "
             "* 81.25 = 78.8125. Don't panic; it'll work in 2026-12-02T15:45:00Z.\n\n    indented code()\n")

SENTENCES = [
    "Hello world",
    "The quick brown fox jumps over the lazy dog.",
    "I'LL don't; you're we've they'd she's it'll I'm",
    "IT'S HE'D WE'VE THEY'RE YOU'LL 'T 'sun 'ſ ſ",
    "1234567890 and 3.14159 and 1,000,000",
    "Numbers: 12 123 1234 12345 0000001",
    "  1  22  333  4444  ",
    "abc123def 4x4 COVID-19 v2.0.1",
    "$100.00 €50 ¥1000 £5 ½ ² Ⅻ ① ٣ ๔",
    "café résumé naïve Ångström",
    "cafe\u0301 re\u0301sume\u0301 nai\u0308ve A\u030angstro\u0308m",
    "\u212b \u0344 a\u0323\u0302 a\u0302\u0323 \u1100\u1161\u11a8 \uac00\u11a8 ᾂ",
    "한국어 텍스트입니다",
    "你好，世界！这是一个测试。",
    "日本語のテキストです。カタカナとひらがな",
    "Привет, мир! Как дела?",
    "مرحبا بالعالم",
    "नमस्ते दुनिया",
    "สวัสดีครับ",
    "Ǆ ǅ ǆ ﬁ ﬂ ＡＢＣ１２３",
    "I ❤️ 🦙 and 👨\u200d👩\u200d👧\u200d👦 family 🏳️\u200d🌈 😀😁",
    # Letters new in Unicode 15-16 (CJK extensions H and I, Cyrillic TJE); U+11938, whose
    # decomposition tokenizers' NFC does not know, and marks whose combining class it does not
    # know (U+0EBA, U+08CC: see scripts/gen_unicode_tables.py).
    "中\U00031350文 \U0002EBF0字 \u1c89\u1c8a x\U00011935\U00011930 \U00011938 x\u0301\u0eba a\u08cc\u0316",
    "zero\u200bwidth\u200djoiner",
    "col1\tcol2\t\tcol3\t",
    "line1\nline2\n\nline3\r\nline4\n",
    "\n\n\n   \n\t\n  x",
    "x  \n  y \r\n\r\n z",
    "a  b   c    d     e",
    "   leading and trailing spaces   ",
    "a\u00a0b\u2003c\u3000d\u2028e\u0085f\u000bg\u000ch\u001ci",
    "def f(x):\n    return x**2 + 1  # comment\n",
    "for (int i = 0; i < n; ++i) { sum += a[i]; }",
    "email@example.com https://example.org/path?q=1&b=2",
    "!!! ??? ... --- ((( ))) \"quoted\" 'single'",
    "Hello,World!How'reYou?",
    "supercalifragilisticexpialidocious antidisestablishmentarianism",
    "aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa",
    "<|endoftext|>Hello<|endoftext|> world",
    "<|begin_of_text|><|start_header_id|>user<|end_header_id|>\n\nHi!<|eot_id|>",
    "<|im_start|>user\nHi<|im_end|>\n<|im_start|>assistant\n",
    "<tool_call>{\"name\": \"f\"}</tool_call> <|im_start <|endoftext|",
    "",
    " ",
    "\n",
    "\t",
    "   ",
    b"abc\xff\xfedef",
    b"\xe2\x82 truncated \xf0\x9f\x98",
    b"\xed\xa0\x80 surrogate \xc0\xaf overlong \xf4\x90\x80\x80 too big \x80",
    LONG_TEXT,
]

CONFIGS = {
    # name: (special tokens, non-special added tokens)
    "gpt2": (["<|endoftext|>"], []),
    "llama3": (["<|begin_of_text|>", "<|end_of_text|>", "<|start_header_id|>", "<|end_header_id|>", "<|eot_id|>"], []),
    "qwen2": (["<|endoftext|>", "<|im_start|>", "<|im_end|>"], ["<tool_call>", "</tool_call>"]),
    "smollm2": (["<|endoftext|>", "<|im_start|>", "<|im_end|>", "<repo_name>"], []),
}


# Variants of a trained tokenizer, changed in its JSON: the C++ test makes the same change.
VARIANTS = {
    "gpt2_prefix": ("gpt2", lambda j: j["pre_tokenizer"].update(add_prefix_space=True)),
    "smollm2_prefix": ("smollm2", lambda j: j["pre_tokenizer"]["pretokenizers"][1].update(add_prefix_space=True)),
}


def as_text(s):
    return s.decode("utf-8", errors="replace") if isinstance(s, bytes) else s


def as_json(s):
    return {"hex": s.hex()} if isinstance(s, bytes) else {"text": s}


def training_text():
    import textwrap, json.decoder, argparse as ap, difflib
    texts = [as_text(s) for s in SENTENCES] * 3
    for mod in (textwrap, json.decoder, ap, difflib):
        texts.extend(inspect.getsource(mod).splitlines())
    return texts


def build(name):
    specials, extra = CONFIGS[name]
    tok = Tokenizer(models.BPE(ignore_merges=(name == "llama3")))
    if name == "gpt2":
        tok.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False, use_regex=True)
        tok.post_processor = processors.ByteLevel(trim_offsets=True)
    elif name in ("llama3", "qwen2"):
        tok.pre_tokenizer = pre_tokenizers.Sequence([
            pre_tokenizers.Split(Regex(LLAMA3_REGEX if name == "llama3" else QWEN2_REGEX), behavior="isolated",
                                 invert=False),
            pre_tokenizers.ByteLevel(add_prefix_space=False, trim_offsets=True, use_regex=False)])
        if name == "qwen2":
            tok.normalizer = normalizers.NFC()
            tok.post_processor = processors.ByteLevel(trim_offsets=False)
    else:
        tok.pre_tokenizer = pre_tokenizers.Sequence([
            pre_tokenizers.Digits(individual_digits=True),
            pre_tokenizers.ByteLevel(add_prefix_space=False, trim_offsets=True, use_regex=True)])
        tok.post_processor = processors.ByteLevel(trim_offsets=True)
    tok.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(vocab_size=1000, special_tokens=specials, show_progress=False,
                                  initial_alphabet=pre_tokenizers.ByteLevel.alphabet())
    tok.train_from_iterator(training_text(), trainer)
    if extra:
        tok.add_tokens([tokenizers.AddedToken(t, special=False, normalized=False) for t in extra])
    if name == "llama3":
        bos = tok.token_to_id("<|begin_of_text|>")
        tok.post_processor = processors.Sequence([
            processors.ByteLevel(trim_offsets=False),
            processors.TemplateProcessing(single="<|begin_of_text|> $A",
                                          pair="<|begin_of_text|> $A:0 <|begin_of_text|>:1 $B:1",
                                          special_tokens=[("<|begin_of_text|>", bos)])])
    return tok


def reference(tok, texts):
    # The post-processors used here add the same tokens around every text; the fixture records
    # them once (from a text that has tokens) and the C++ test checks both encodings.
    probe = tok.encode("x", add_special_tokens=False).ids
    with_special = tok.encode("x", add_special_tokens=True).ids
    start = next(i for i in range(len(with_special)) if with_special[i:i + len(probe)] == probe)
    prefix, suffix = with_special[:start], with_special[start + len(probe):]
    rows = []
    for s in texts:
        ids = tok.encode(as_text(s), add_special_tokens=False).ids
        assert tok.encode(as_text(s), add_special_tokens=True).ids == prefix + ids + suffix, s
        rows.append(ids)
    return rows, prefix, suffix


def write_json(path, obj):
    with open(path, "w", encoding="utf-8") as f:
        json.dump(obj, f, ensure_ascii=False, separators=(",", ":"))
        f.write("\n")


def legacy_merges(path):
    """Rewrites a tokenizer.json's merges as "a b" strings (files saved before tokenizers 0.20)."""
    with open(path, encoding="utf-8") as f:
        j = json.load(f)
    j["model"]["merges"] = [" ".join(m) for m in j["model"]["merges"]]
    write_json(path, j)


def make_trained():
    os.makedirs(OUT_DIR, exist_ok=True)
    write_json(os.path.join(OUT_DIR, "sentences.json"), [as_json(s) for s in SENTENCES])
    for name in CONFIGS:
        tok = build(name)
        folder = os.path.join(OUT_DIR, name)
        os.makedirs(folder, exist_ok=True)
        path = os.path.join(folder, "tokenizer.json")
        tok.save(path, pretty=False)
        if name == "gpt2":
            legacy_merges(path)
        tok = Tokenizer.from_file(path)
        ids, prefix, suffix = reference(tok, SENTENCES)
        write_json(os.path.join(OUT_DIR, name + ".json"),
                   {"tokenizers": tokenizers.__version__, "vocab_size": tok.get_vocab_size(with_added_tokens=True),
                    "prefix": prefix, "suffix": suffix, "ids": ids})
        print(f"{name}: vocab {tok.get_vocab_size(with_added_tokens=True)}, {sum(map(len, ids))} tokens, "
              f"{os.path.getsize(path)} bytes")
    for name, (base, change) in VARIANTS.items():
        with open(os.path.join(OUT_DIR, base, "tokenizer.json"), encoding="utf-8") as f:
            j = json.load(f)
        change(j)
        tok = Tokenizer.from_str(json.dumps(j))
        ids, prefix, suffix = reference(tok, SENTENCES)
        write_json(os.path.join(OUT_DIR, name + ".json"),
                   {"tokenizers": tokenizers.__version__, "base": base, "vocab_size": tok.get_vocab_size(True),
                    "prefix": prefix, "suffix": suffix, "ids": ids})


def smollm2_from_gguf(gguf_path):
    """SmolLM2's tokenizer from the vocabulary in its GGUF file."""
    import gguf
    reader = gguf.GGUFReader(gguf_path)
    field = lambda key: reader.fields[key].contents()
    assert field("tokenizer.ggml.model") == "gpt2" and field("tokenizer.ggml.pre") == "smollm"
    tokens, types, merges = field("tokenizer.ggml.tokens"), field("tokenizer.ggml.token_type"), field("tokenizer.ggml.merges")
    vocab = {t: i for i, t in enumerate(tokens)}
    pairs = [tuple(m.split(" ")) for m in merges]
    tok = Tokenizer(models.BPE(vocab=vocab, merges=pairs, fuse_unk=False, byte_fallback=False))
    tok.pre_tokenizer = pre_tokenizers.Sequence([
        pre_tokenizers.Digits(individual_digits=True),
        pre_tokenizers.ByteLevel(add_prefix_space=False, trim_offsets=True, use_regex=True)])
    tok.post_processor = processors.ByteLevel(trim_offsets=False)
    tok.decoder = decoders.ByteLevel()
    tok.add_special_tokens([tokenizers.AddedToken(t, special=True, normalized=False)
                            for t, ty in zip(tokens, types) if ty == 3])
    assert not field("tokenizer.ggml.add_bos_token")
    return tok


def make_smollm2(gguf_path, out_path):
    tok = smollm2_from_gguf(gguf_path)
    tok.save(out_path, pretty=False)
    tok = Tokenizer.from_file(out_path)
    ids, prefix, suffix = reference(tok, SENTENCES)
    assert len(ids[-1]) > 64, len(ids[-1])
    write_json(os.path.join(OUT_DIR, "smollm2_reference.json"),
               {"tokenizers": tokenizers.__version__, "source": os.path.basename(gguf_path),
                "vocab_size": tok.get_vocab_size(with_added_tokens=True), "prefix": prefix, "suffix": suffix,
                "ids": ids})
    print(f"smollm2: {out_path}, vocab {tok.get_vocab_size(with_added_tokens=True)}, long text {len(ids[-1])} tokens")


def fortunes(n):
    """Up to n fortunes (Debian `fortunes`: /usr/share/games/fortunes), in file order."""
    out, folder = [], "/usr/share/games/fortunes"
    for name in sorted(os.listdir(folder)):
        path = os.path.join(folder, name)
        if "." in name or not os.path.isfile(path):
            continue
        with open(path, encoding="utf-8", errors="replace") as f:
            out.extend(t.strip("\n") for t in f.read().split("\n%\n") if t.strip())
        if len(out) >= n:
            break
    return out[:n]


def bench(path, n):
    os.environ["RAYON_NUM_THREADS"] = "1"  # before tokenizers starts its thread pool
    tok = Tokenizer.from_file(path)
    texts = fortunes(n)
    tok.encode(texts[0])

    def best_of_3(run):
        times = []
        for _ in range(3):
            start = time.perf_counter()
            count = run()
            times.append(time.perf_counter() - start)
        return count, min(times)

    count, t1 = best_of_3(lambda: sum(len(tok.encode(t, add_special_tokens=False).ids) for t in texts))
    _, t2 = best_of_3(lambda: sum(len(e.ids) for e in tok.encode_batch(texts, add_special_tokens=False)))
    print(f"tokenizers {tokenizers.__version__}: {len(texts)} texts, {count} tokens; one thread, best of 3: "
          f"encode() per text {t1:.3f} s ({count / t1:,.0f} tokens/s), encode_batch() {t2:.3f} s "
          f"({count / t2:,.0f} tokens/s)")


def unicode_check():
    import unicodedata
    import unicodedata2
    chars = [chr(c) for c in range(0x110000) if not 0xD800 <= c <= 0xDFFF]
    everything = "".join(chars)

    def hf_class(pattern):  # the characters a tokenizers regex matches
        split = pre_tokenizers.Split(Regex(pattern), behavior="removed")
        return set(chars) - set("".join(w for w, _ in split.pre_tokenize_str(everything)))

    def show(name, hf, ours):
        a, b = sorted(hf - ours), sorted(ours - hf)
        print(f"{name}: only tokenizers {len(a)} {[hex(ord(c)) for c in a[:10]]}, "
              f"only the tables {len(b)} {[hex(ord(c)) for c in b[:10]]}")

    cat = unicodedata2.category
    print(f"tokenizers {tokenizers.__version__}, unicodedata2 {unicodedata2.unidata_version}, "
          f"Python unicodedata {unicodedata.unidata_version}")
    show("\\p{L}", hf_class(r"\p{L}"), {c for c in chars if cat(c).startswith("L")})
    numbers = {c for c in chars if cat(c).startswith("N")}
    show("\\p{N}", hf_class(r"\p{N}"), numbers)
    show("\\s", hf_class(r"\s"), {c for c in chars if ord(c) in (9, 10, 11, 12, 13, 0x85, 0x2028, 0x2029) or
                                   unicodedata.category(c) == "Zs"})
    digits = pre_tokenizers.Digits(individual_digits=True).pre_tokenize_str("a".join(chars))
    show("Digits", {w for w, _ in digits if len(w) == 1 and w != "a"}, numbers)
    # NFC: which canonical decompositions and combining classes tokenizers knows. A mark's class is
    # known when tokenizers puts it in canonical order against a mark of another class.
    sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
    import gen_unicode_tables as gen
    nfc = normalizers.NFC()
    ordered = lambda s: nfc.normalize_str(s) == unicodedata.normalize("NFC", s)
    lacks_class = {c for c in chars if unicodedata.combining(c) and
                   not ordered("x" + c + "\u0334" if unicodedata.combining(c) > 1 else "x\u0301" + c)}
    show("NFC combining classes", lacks_class,
         {chr(cp) for a, b in gen.POST_9_MARKS for cp in range(a, b + 1)})
    lacks_decomposition = {c for c in chars if not ordered(c) or not ordered(unicodedata.normalize("NFD", c))}
    show("NFC decompositions", lacks_decomposition, {chr(cp) for cp in gen.POST_9_DECOMPOSITIONS})


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--smollm2", nargs=2, metavar=("GGUF", "OUT_JSON"))
    ap.add_argument("--bench", nargs="+", metavar="ARG")
    ap.add_argument("--unicode", action="store_true")
    args = ap.parse_args()
    if tokenizers.__version__ != PINNED:
        sys.exit(f"tokenizers {tokenizers.__version__} found, the fixtures are pinned to {PINNED}")
    if args.unicode:
        unicode_check()
    elif args.smollm2:
        make_smollm2(*args.smollm2)
    elif args.bench:
        bench(args.bench[0], int(args.bench[1]) if len(args.bench) > 1 else 5000)
    else:
        make_trained()


if __name__ == "__main__":
    main()
