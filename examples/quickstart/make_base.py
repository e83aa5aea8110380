#!/usr/bin/env python3
"""make_base.py — the starting point of the quickstart's base model: a random-init tiny Llama
in HF layout, and its tokenizer. make_base.sh then pre-trains it with `nmc train`.

  python3 make_base.py CORPUS.jsonl OUT_DIR

Writes into OUT_DIR:
  tokenizer.json         byte-level BPE with the Qwen2 pre-tokenizer (digits one by one),
                         trained on CORPUS.jsonl's "text" column (at most VOCAB ids; the small
                         corpus runs out of merges first, so rows past it stay unused), plus the
                         special tokens <|endoftext|>, <|im_start|>, <|im_end|>
  tokenizer_config.json  eos/pad <|endoftext|>, no BOS, a plain ChatML chat template
  config.json            LlamaForCausalLM: hidden 128, 4 layers, 4 heads / 2 KV heads,
                         intermediate 256, vocab VOCAB, untied lm_head, bf16
  generation_config.json eos <|im_end|> and <|endoftext|>
  model.safetensors      bf16 weights drawn as transformers initialises Llama: every linear
                         and embedding N(0, 0.02), RMSNorm weights 1

Deterministic: the weights come from random.Random(SEED) and are written by hand (the
safetensors layout: 8-byte header length, JSON header, raw little-endian data), so the output
does not depend on torch; the tokenizer comes from `tokenizers` (deps/pip.txt), whose BPE
trainer is deterministic for a given input. Needs: python3, tokenizers.
"""
import json
import os
import random
import struct
import sys

from tokenizers import Regex, Tokenizer, decoders, models, normalizers, pre_tokenizers, trainers
from tokenizers import processors
from tokenizers import AddedToken

SEED = 20240601
VOCAB = 320          # model vocabulary (embedding rows); the tokenizer may use fewer ids
HIDDEN, LAYERS, HEADS, KV_HEADS, INTER = 128, 4, 4, 2, 256
SPECIALS = ["<|endoftext|>", "<|im_start|>", "<|im_end|>"]
QWEN2_RE = (r"(?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\r\n\p{L}\p{N}]?\p{L}+|\p{N}| ?[^\s\p{L}\p{N}]+[\r\n]*"
            r"|\s*[\r\n]+|\s+(?!\S)|\s+")
CHAT_TEMPLATE = ("{% for message in messages %}{{'<|im_start|>' + message['role'] + '\n' + "
                 "message['content'] + '<|im_end|>' + '\n'}}{% endfor %}{% if add_generation_prompt %}"
                 "{{ '<|im_start|>assistant\n' }}{% endif %}")


def corpus_text(path):
    with open(path) as f:
        for line in f:
            yield json.loads(line)["text"]


def make_tokenizer(corpus):
    tok = Tokenizer(models.BPE())
    tok.normalizer = normalizers.NFC()
    tok.pre_tokenizer = pre_tokenizers.Sequence([
        pre_tokenizers.Split(Regex(QWEN2_RE), behavior="isolated", invert=False),
        pre_tokenizers.ByteLevel(add_prefix_space=False, trim_offsets=False, use_regex=False)])
    tr = trainers.BpeTrainer(vocab_size=VOCAB - len(SPECIALS), show_progress=False,
                             initial_alphabet=pre_tokenizers.ByteLevel.alphabet())
    tok.train_from_iterator(corpus_text(corpus), trainer=tr)
    tok.add_special_tokens([AddedToken(s, normalized=False, special=True) for s in SPECIALS])
    tok.decoder = decoders.ByteLevel()
    tok.post_processor = processors.ByteLevel(add_prefix_space=False, trim_offsets=False,
                                              use_regex=False)
    if tok.get_vocab_size(True) > VOCAB:
        sys.exit("make_base.py: tokenizer has %d tokens, more than VOCAB %d" % (tok.get_vocab_size(True), VOCAB))
    return tok


def bf16(x):
    """fp32 -> bf16 bits, round to nearest even (what torch's .to(bfloat16) does)."""
    u = struct.unpack("<I", struct.pack("<f", x))[0]
    return ((u + 0x7FFF + ((u >> 16) & 1)) >> 16) & 0xFFFF


def tensors(rng):
    def normal(shape):
        n = 1
        for s in shape:
            n *= s
        return shape, [bf16(rng.gauss(0.0, 0.02)) for _ in range(n)]

    def ones(n):
        return [n], [bf16(1.0)] * n

    head_dim = HIDDEN // HEADS
    out = [("model.embed_tokens.weight", normal([VOCAB, HIDDEN]))]
    for i in range(LAYERS):
        p = "model.layers.%d." % i
        out += [(p + "self_attn.q_proj.weight", normal([HEADS * head_dim, HIDDEN])),
                (p + "self_attn.k_proj.weight", normal([KV_HEADS * head_dim, HIDDEN])),
                (p + "self_attn.v_proj.weight", normal([KV_HEADS * head_dim, HIDDEN])),
                (p + "self_attn.o_proj.weight", normal([HIDDEN, HEADS * head_dim])),
                (p + "mlp.gate_proj.weight", normal([INTER, HIDDEN])),
                (p + "mlp.up_proj.weight", normal([INTER, HIDDEN])),
                (p + "mlp.down_proj.weight", normal([HIDDEN, INTER])),
                (p + "input_layernorm.weight", ones(HIDDEN)),
                (p + "post_attention_layernorm.weight", ones(HIDDEN))]
    out += [("model.norm.weight", ones(HIDDEN)), ("lm_head.weight", normal([VOCAB, HIDDEN]))]
    return out


def write_safetensors(path, named):
    header, blobs, off = {"__metadata__": {"format": "pt"}}, [], 0
    for name, (shape, vals) in sorted(named):
        blob = struct.pack("<%dH" % len(vals), *vals)
        header[name] = {"dtype": "BF16", "shape": shape, "data_offsets": [off, off + len(blob)]}
        blobs.append(blob)
        off += len(blob)
    h = json.dumps(header, separators=(",", ":")).encode()
    h += b" " * (-len(h) % 8)
    write_bytes(path, struct.pack("<Q", len(h)) + h + b"".join(blobs))


def write_bytes(path, data):
    tmp = path + ".tmp"
    with open(tmp, "wb") as f:
        f.write(data)
        f.flush()
        os.fsync(f.fileno())
    os.replace(tmp, path)


def write_json(path, obj):
    write_bytes(path, (json.dumps(obj, indent=2) + "\n").encode())


def main(argv):
    if len(argv) != 2:
        sys.exit("usage: make_base.py CORPUS.jsonl OUT_DIR")
    corpus, out = argv
    os.makedirs(out, exist_ok=True)
    tok = make_tokenizer(corpus)
    write_bytes(os.path.join(out, "tokenizer.json"), (tok.to_str() + "\n").encode())
    eot, im_end = tok.token_to_id("<|endoftext|>"), tok.token_to_id("<|im_end|>")
    write_json(os.path.join(out, "tokenizer_config.json"), {
        "bos_token": None, "eos_token": "<|endoftext|>", "pad_token": "<|endoftext|>",
        "unk_token": None, "model_max_length": 512, "chat_template": CHAT_TEMPLATE})
    write_json(os.path.join(out, "config.json"), {
        "architectures": ["LlamaForCausalLM"], "model_type": "llama",
        "attention_bias": False, "attention_dropout": 0.0, "mlp_bias": False,
        "bos_token_id": None, "eos_token_id": eot, "pad_token_id": eot,
        "hidden_act": "silu", "hidden_size": HIDDEN, "intermediate_size": INTER,
        "num_hidden_layers": LAYERS, "num_attention_heads": HEADS,
        "num_key_value_heads": KV_HEADS, "head_dim": HIDDEN // HEADS,
        "max_position_embeddings": 512, "rms_norm_eps": 1e-5, "rope_theta": 10000.0,
        "initializer_range": 0.02, "tie_word_embeddings": False, "use_cache": True,
        "dtype": "bfloat16", "vocab_size": VOCAB})
    write_json(os.path.join(out, "generation_config.json"), {
        "eos_token_id": [im_end, eot], "pad_token_id": eot})
    write_safetensors(os.path.join(out, "model.safetensors"), tensors(random.Random(SEED)))


if __name__ == "__main__":
    main(sys.argv[1:])
