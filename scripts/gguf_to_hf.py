#!/usr/bin/env python3
"""Converts a Llama-family GGUF file (llama.cpp's format) into a Hugging Face model folder:
config.json, model.safetensors (float32, dequantised), tokenizer.json and tokenizer_config.json.

Users point the decoder_llm teacher at the GGUF file itself; this converter exists so that the
teacher's other input path, Hugging Face folders, is tested on the same real model
(tests/plugins/test_decoder_llm.cpp compares both against tests/fixtures/decoder_llm/, which
scripts/make_llm_reference.py made with transformers and checked this converter against).

Needs only PyPI's gguf (pure Python), Debian's python3-numpy and PyPI's safetensors:

    python3 scripts/gguf_to_hf.py MODEL.gguf OUT_DIR

Handles what decoder_llm reads: architectures llama and qwen2, byte-level BPE vocabularies
(tokenizer.ggml.model gpt2) with the llama.cpp pre-tokenizers smollm, llama-bpe, qwen2 and gpt2.
"""
import json
import os
import sys

import numpy as np

LLAMA3_REGEX = (r"(?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\r\n\p{L}\p{N}]?\p{L}+|\p{N}{1,3}| ?[^\s\p{L}\p{N}]+[\r\n]*"
                r"|\s*[\r\n]+|\s+(?!\S)|\s+")
QWEN2_REGEX = LLAMA3_REGEX.replace(r"\p{N}{1,3}", r"\p{N}")


def field(reader, key, default=None):
    f = reader.fields.get(key)
    if f is None:
        return default
    if len(f.types) > 1 or f.types[0].name == "ARRAY":  # an array
        return [bytes(f.parts[i]).decode("utf-8") if f.types[-1].name == "STRING" else f.parts[i].tolist()[0] for i in f.data]
    v = f.parts[f.data[0]]
    return bytes(v).decode("utf-8") if f.types[0].name == "STRING" else v.tolist()[0]


def hf_name(name):
    glob = {"token_embd.weight": "model.embed_tokens.weight", "output_norm.weight": "model.norm.weight",
            "output.weight": "lm_head.weight"}
    block = {"attn_norm": "input_layernorm", "ffn_norm": "post_attention_layernorm", "attn_q": "self_attn.q_proj",
             "attn_k": "self_attn.k_proj", "attn_v": "self_attn.v_proj", "attn_output": "self_attn.o_proj",
             "ffn_gate": "mlp.gate_proj", "ffn_up": "mlp.up_proj", "ffn_down": "mlp.down_proj"}
    if name in glob:
        return glob[name]
    parts = name.split(".")
    if parts[0] == "blk" and len(parts) == 4 and parts[2] in block:
        return f"model.layers.{parts[1]}.{block[parts[2]]}.{parts[3]}"
    return None


def unpermute(w, heads):
    """Undoes llama.cpp's convert_hf_to_gguf permute(): interleaved rotary pairs back to halves."""
    shape = w.shape
    return w.reshape(heads, shape[0] // heads // 2, 2, *shape[1:]).swapaxes(1, 2).reshape(shape)


def pre_tokenizer(pre):
    byte_level = {"type": "ByteLevel", "add_prefix_space": False, "trim_offsets": True, "use_regex": True}
    if pre in ("gpt2", "default"):
        return None, byte_level
    if pre == "smollm":
        return None, {"type": "Sequence", "pretokenizers": [{"type": "Digits", "individual_digits": True}, byte_level]}
    regex = {"llama-bpe": LLAMA3_REGEX, "qwen2": QWEN2_REGEX}.get(pre)
    if regex is None:
        sys.exit(f"gguf_to_hf: pre-tokenizer '{pre}' is not handled (smollm, llama-bpe, qwen2, gpt2)")
    split = {"type": "Split", "pattern": {"Regex": regex}, "behavior": "Isolated", "invert": False}
    normalizer = {"type": "NFC"} if pre == "qwen2" else None
    return normalizer, {"type": "Sequence", "pretokenizers": [split, dict(byte_level, use_regex=False)]}


def write_tokenizer(reader, out):
    if field(reader, "tokenizer.ggml.model") != "gpt2":
        sys.exit("gguf_to_hf: only byte-level BPE vocabularies (tokenizer.ggml.model gpt2) are handled")
    tokens = field(reader, "tokenizer.ggml.tokens")
    types = field(reader, "tokenizer.ggml.token_type", [1] * len(tokens))
    merges = field(reader, "tokenizer.ggml.merges")
    normalizer, pre = pre_tokenizer(field(reader, "tokenizer.ggml.pre", "default"))
    add_bos = bool(field(reader, "tokenizer.ggml.add_bos_token", False))
    bos = field(reader, "tokenizer.ggml.bos_token_id")
    eos = field(reader, "tokenizer.ggml.eos_token_id")
    added = [{"id": i, "content": t, "single_word": False, "lstrip": False, "rstrip": False, "normalized": False,
              "special": types[i] == 3} for i, t in enumerate(tokens) if types[i] in (3, 4)]
    post = {"type": "ByteLevel", "add_prefix_space": True, "trim_offsets": False, "use_regex": True}
    if add_bos and bos is not None:
        post = {"type": "TemplateProcessing",
                "single": [{"SpecialToken": {"id": tokens[bos], "type_id": 0}}, {"Sequence": {"id": "A", "type_id": 0}}],
                "pair": [{"SpecialToken": {"id": tokens[bos], "type_id": 0}}, {"Sequence": {"id": "A", "type_id": 0}},
                         {"SpecialToken": {"id": tokens[bos], "type_id": 1}}, {"Sequence": {"id": "B", "type_id": 1}}],
                "special_tokens": {tokens[bos]: {"id": tokens[bos], "ids": [bos], "tokens": [tokens[bos]]}}}
    tokenizer = {
        "version": "1.0", "truncation": None, "padding": None, "added_tokens": added, "normalizer": normalizer,
        "pre_tokenizer": pre, "post_processor": post,
        "decoder": {"type": "ByteLevel", "add_prefix_space": True, "trim_offsets": True, "use_regex": True},
        "model": {"type": "BPE", "dropout": None, "unk_token": None, "continuing_subword_prefix": None,
                  "end_of_word_suffix": None, "fuse_unk": False, "byte_fallback": False, "ignore_merges": pre is not None
                  and field(reader, "tokenizer.ggml.pre") == "llama-bpe",
                  "vocab": {t: i for i, t in enumerate(tokens)}, "merges": merges},
    }
    with open(os.path.join(out, "tokenizer.json"), "w", encoding="utf-8") as f:
        json.dump(tokenizer, f, ensure_ascii=False)
    config = {"tokenizer_class": "PreTrainedTokenizerFast", "add_bos_token": add_bos, "model_max_length": 1 << 30,
              "clean_up_tokenization_spaces": False}
    if bos is not None:
        config["bos_token"] = tokens[bos]
    if eos is not None:
        config["eos_token"] = tokens[eos]
    with open(os.path.join(out, "tokenizer_config.json"), "w", encoding="utf-8") as f:
        json.dump(config, f, ensure_ascii=False, indent=1)


def main():
    from gguf import GGUFReader
    from gguf.quants import dequantize
    from safetensors.numpy import save_file
    if len(sys.argv) != 3:
        sys.exit(__doc__.split("\n\n")[2])
    src, out = sys.argv[1], sys.argv[2]
    reader = GGUFReader(src)
    arch = field(reader, "general.architecture")
    if arch not in ("llama", "qwen2"):
        sys.exit(f"gguf_to_hf: architecture '{arch}' is not handled (llama, qwen2)")
    a = arch + "."
    heads, hidden = field(reader, a + "attention.head_count"), field(reader, a + "embedding_length")
    kv_heads = field(reader, a + "attention.head_count_kv", heads)
    tensors = {}
    for t in reader.tensors:
        name = hf_name(t.name)
        if name is None:
            continue
        w = dequantize(t.data, t.tensor_type).astype(np.float32).reshape([int(d) for d in reversed(t.shape)])
        if arch == "llama" and ".self_attn.q_proj." in name:
            w = unpermute(w, heads)
        if arch == "llama" and ".self_attn.k_proj." in name:
            w = unpermute(w, kv_heads)
        tensors[name] = np.ascontiguousarray(w)
    os.makedirs(out, exist_ok=True)
    tie = "lm_head.weight" not in tensors
    save_file(tensors, os.path.join(out, "model.safetensors"), metadata={"format": "pt"})
    config = {
        "architectures": ["Qwen2ForCausalLM" if arch == "qwen2" else "LlamaForCausalLM"], "model_type": arch,
        "vocab_size": field(reader, a + "vocab_size", len(field(reader, "tokenizer.ggml.tokens"))),
        "hidden_size": hidden, "intermediate_size": field(reader, a + "feed_forward_length"),
        "num_hidden_layers": field(reader, a + "block_count"), "num_attention_heads": heads,
        "num_key_value_heads": kv_heads, "max_position_embeddings": field(reader, a + "context_length", 4096),
        "rms_norm_eps": field(reader, a + "attention.layer_norm_rms_epsilon"),
        "rope_theta": field(reader, a + "rope.freq_base", 10000.0), "hidden_act": "silu",
        "tie_word_embeddings": tie, "torch_dtype": "float32",
        "bos_token_id": field(reader, "tokenizer.ggml.bos_token_id"), "eos_token_id": field(reader, "tokenizer.ggml.eos_token_id"),
    }
    with open(os.path.join(out, "config.json"), "w") as f:
        json.dump(config, f, indent=1)
    write_tokenizer(reader, out)
    print(f"gguf_to_hf: {src} -> {out} ({len(tensors)} tensors)")


if __name__ == "__main__":
    main()
