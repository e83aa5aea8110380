#!/usr/bin/env python3
"""make_tokenizers.py — trains small real tokenizers with HF `tokenizers` and writes the golden
data tests/test_tokenizer.c checks nmc against.

Writes under tests/data/tokenizers/:
  <name>.json          a tokenizer.json trained here with the configuration of a real family
                       (gpt2, llama3, qwen2, llama2, mistral, metaspace_unk)
  corpus.jsonl         the conformance corpus: one JSON string per line
  <name>.pretok.jsonl  {"i": line, "pt": E}: byte lengths of pre_tokenizer.pre_tokenize_str
                       pieces for the hand-written and character-soup lines
  <name>.meta.json     vocab size, added tokens (id, special), a few token<->id lookups
  <name>.golden.jsonl  one line per corpus line, same order:
                         {"ids": E, "pre": E, "post": E, "dec": S, "skip": S}
                       E is an id list in fixed-width base64url: two characters per id
                       (64*v(c0)+v(c1), alphabet A-Z a-z 0-9 - _), to keep the files small.
                       ids  = encode(text, add_special_tokens=False)
                       encode(text, add_special_tokens=True) == pre + ids + post (asserted here)
                       dec  = decode(pre+ids+post, skip_special_tokens=False)
                       skip = decode(pre+ids+post, skip_special_tokens=True)
                       "dec"/"skip" are left out when equal to the text itself, and given as
                       "dec_prefix"/"skip_prefix" when they are that prefix + the text;
                       "pre"/"post" are left out when empty.
Deterministic: fixed seeds, single-threaded training. Usage:
  RAYON_NUM_THREADS=1 python3 tests/oracle/make_tokenizers.py
"""
import json
import os
import random
import sys
import unicodedata

os.environ.setdefault("RAYON_NUM_THREADS", "1")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")

from tokenizers import (AddedToken, Regex, Tokenizer, decoders, models,  # noqa: E402
                        normalizers, pre_tokenizers, processors, trainers)

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
OUT = os.path.join(ROOT, "tests", "data", "tokenizers")

GPT2_RE = r"'s|'t|'re|'ve|'m|'ll|'d| ?\p{L}+| ?\p{N}+| ?[^\s\p{L}\p{N}]+|\s+(?!\S)|\s+"
LLAMA3_RE = (r"(?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\r\n\p{L}\p{N}]?\p{L}+|\p{N}{1,3}| ?[^\s\p{L}\p{N}]+[\r\n]*"
             r"|\s*[\r\n]+|\s+(?!\S)|\s+")
QWEN2_RE = (r"(?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\r\n\p{L}\p{N}]?\p{L}+|\p{N}| ?[^\s\p{L}\p{N}]+[\r\n]*"
            r"|\s*[\r\n]+|\s+(?!\S)|\s+")

# ---- word bank ------------------------------------------------------------------------------
WORDS = {
    "en": "the quick brown fox jumps over lazy dog hello world tokenizer model training data "
          "learning rate batch size adapter layer weights gradient Apple NVIDIA Python JSON "
          "don't can't it's we'll they've I'm she'd you're HELLO World MiXeD CaSe".split(),
    "fr": "café naïve élève garçon où déjà être forêt Noël cœur Ærø français très".split(),
    "de": "Straße Größe Übung schön Mädchen fünf Äpfel Grüße".split(),
    "es": "niño año España señor corazón árbol ¿Qué ¡Hola".split(),
    "ru": "Привет мир как дела хорошо спасибо Москва ЁЖИК съешь ещё этих".split(),
    "el": "Γειά σου κόσμε ελληνικά Αθήνα ΣΟΦΙΑ ς σ".split(),
    "zh": "你好 世界 中文 分词器 训练 模型 数据 学习 北京 上海".split(),
    "ja": "こんにちは 世界 カタカナ ひらがな 東京 日本語 テスト".split(),
    "ko": "안녕하세요 세계 한국어 서울 토크나이저".split(),
    "ar": "مرحبا بالعالم العربية كتاب مدرسة".split(),
    "he": "שלום עולם עברית ספר".split(),
    "hi": "नमस्ते दुनिया हिन्दी भाषा किताब".split(),
    "th": "สวัสดี ชาวโลก ภาษาไทย หนังสือ".split(),
    "emoji": ["😀", "👍🏽", "👨‍👩‍👧‍👦", "🏳️‍🌈", "❤️", "🇫🇷", "🤖", "✨", "👩🏿‍💻", "🙂🙃"],
    "sym": ["€", "$", "£", "©", "®", "™", "°", "±", "→", "∑", "∞", "≠", "½", "²", "³", "…",
            "—", "–", "«", "»", "“", "”", "‘", "’", "·", "•", "¶", "§", "\ufffd", "\u00a0"],
    "code": ["def", "return", "if", "else", "for", "i", "in", "range(10):", "int", "main(void)",
             "{", "}", "();", "x+=1;", "print(\"hi\")", "#include", "<stdio.h>", "->", "!=", "==",
             "&&", "||", "/*", "*/", "//", "\"key\":", "[1,", "2]", "null", "true", "0x1F"],
}
SPECIALS = ["<|endoftext|>", "<|im_start|>", "<|im_end|>", "<|begin_of_text|>", "<|eot_id|>",
            "<|start_header_id|>", "<|end_header_id|>", "<s>", "</s>", "<unk>", "[INST]", "[/INST]",
            "<mask>", "<tool_call>", "</tool_call>", "[SW]", " world"]
SEPS = [" ", " ", " ", " ", "  ", "   ", "\t", "\n", "\n\n", "\r\n", " \n", "\t\t", " \t ",
        "\u3000", "\u2003", "\u00a0", "\n   ", "    "]
CONTRACTIONS = ["'s", "'S", "'t", "'T", "'re", "'RE", "'Re", "'ve", "'VE", "'m", "'M", "'ll", "'LL",
                "'Ll", "'d", "'D", "'ſ", "'x", "'", "''"]

HAND = [
    "", " ", "  ", "\n", "\r\n", "\t", "a", "Hello world", "Hello  world", " Hello", "Hello ",
    "hello\n\nworld", "line1\r\nline2\r\n", "trailing spaces   ", "   leading spaces",
    "I'm sure it's the dog's toy, isn't it? They'll say we'd've", "DON'T SHOUT, IT'S LOUD'LL",
    "1234567890", "3.14159 2,718 1e-9 -42 +7 0x1F", "12345678901234567890123",
    "Ünïcödé çàfé naïve", "Cafe\u0301 vs Caf\u00e9 (NFD vs NFC)", "A\u030a vs \u00c5 vs \u212b",
    "\u1e9b\u0323 q\u0307\u0323 \u0064\u0323\u0307", "한국어 \u1100\u1161\u11a8 \uac01",
    "Привет, как дела?", "Γειά σου Κόσμε!", "你好，世界！", "日本語のテキスト。", "مرحبا بالعالم",
    "שָׁלוֹם", "नमस्ते दुनिया", "สวัสดีชาวโลก", "😀😃😄 👍🏽 👨‍👩‍👧‍👦 🏳️‍🌈",
    "emoji\u200dzwj\u200c\ufeff", "\ufffd replacement \ufffd\ufffd", "\u0000nul\u0001ctl\u007f",
    "tab\tsep\tvalues\t", "mixed \t \n whitespace \r\n\r\n end", "\u2028line sep\u2029para",
    "def f(x):\n    return x * 2  # comment\n", "int main(void) {\n\tprintf(\"%d\\n\", 42);\n}\n",
    "{\"key\": [1, 2.5, null, true], \"k2\": {\"a\": \"b\"}}", "<html><body>&amp;</body></html>",
    "https://example.com/path?q=1&r=2#frag", "user@example.com", "C:\\Users\\me\\file.txt",
    "<|im_start|>system\nYou are a helpful assistant.<|im_end|>\n<|im_start|>user\nHi!<|im_end|>\n"
    "<|im_start|>assistant\n", "<|begin_of_text|><|start_header_id|>user<|end_header_id|>\n\nHi"
    "<|eot_id|><|start_header_id|>assistant<|end_header_id|>\n\n", "<s>[INST] Hello [/INST] Hi</s>",
    "text<|endoftext|>more<|endoftext|>", "<|im_start|><|im_end|>", "<|im_start", "im_start|>",
    "<s><s></s>", "< s>", "<unk>", "a<mask>b", "a   <mask>  b", "hello world", "helloworld",
    " world", "the world is", "x[SW]y", "x [SW] y", "[SW]", "<tool_call>{\"name\": \"f\"}</tool_call>",
    "ſ 's 'ſ Straße STRASSE", "'ſt 'ſſ 'Ss 'LLx 'Reve 'sa 'Dd 'MM 'tT 'VEry 'rE'ſ", "x'ſx'Kx'ſ1",
    "'\u212a 'K \u212a'll \u017f's", "don'T I'M we'LL they'Ve she'D it'S", "İstanbul ıi", "\U0001d400\U0001d401 math bold", "𝟘𝟙𝟚 ½ Ⅻ ²",
    "ﬁ ligature ﬀ", "Ｆｕｌｌｗｉｄｔｈ　ｓｐａｃｅ", "a\u0300\u0301\u0302\u0303\u0304 z\u0335\u0336",
    "\u0915\u094d\u0937", "x" * 300, "ab" * 150, "😀" * 40, "\n" * 20, " " * 50,
]


def rnd_piece(r):
    k = r.random()
    if k < 0.45:
        lang = r.choice(list(WORDS))
        return r.choice(WORDS[lang])
    if k < 0.55:
        return str(r.randint(0, 10 ** r.randint(1, 15)))
    if k < 0.65:
        return r.choice(WORDS["en"]) + r.choice(CONTRACTIONS)
    if k < 0.72:
        return r.choice(SPECIALS)
    if k < 0.80:
        return r.choice(WORDS["sym"]) + r.choice(WORDS["emoji"])
    if k < 0.88:
        w = r.choice(WORDS["fr"] + WORDS["de"] + WORDS["el"])
        return unicodedata.normalize(r.choice(["NFD", "NFC", "NFKD"]), w)
    if k < 0.94:
        return "".join(chr(r.choice([r.randint(0x20, 0x7e), r.randint(0xa0, 0x2fff),
                                     r.randint(0x3000, 0xd7ff), r.randint(0xe000, 0xfffd),
                                     r.randint(0x10000, 0x1faff)])) for _ in range(r.randint(1, 4)))
    return r.choice(WORDS["code"])


def rnd_text(r, n_max):
    out = []
    for _ in range(r.randint(1, n_max)):
        out.append(rnd_piece(r))
        out.append(r.choice(SEPS) if r.random() < 0.8 else "")
    s = "".join(out)
    return s if r.random() < 0.7 else s.strip(" ")


def training_lines():
    r = random.Random(20260101)
    lines = [rnd_text(r, 30) for _ in range(4000)]
    lines += [" ".join(WORDS[k]) for k in sorted(WORDS)] * 20
    return [ln for ln in lines if not any(sp in ln for sp in SPECIALS if sp.strip() == sp)]


# Characters that sit on the edges of the regex alternatives and of NFC: spaces of several
# kinds, CR/LF, apostrophes and contraction letters (ſ folds to s), letters, digits of three
# categories, marks (not letters: "other" to the regexes), Hangul jamo, symbols, token pieces.
SOUP = (list(" \t\n\r'sStTlLeErRvVdDmMaz") + ["\u017f", "1", "7", "\u0663", "\u216b", "\u00b2",
        "\u00e9", "\u0301", "\u0316", "\u0327", "\u0323", "\u0307", "\u0334", "\u0f71", "\u0f72",
        "\u1100", "\u1161", "\u11a8", "\uac00", "\u4e2d", "\U0001f600", "\u200d", "\U0001f3fd",
        "\u00a0", "\u3000", "\u2028", "\u0085", "\u000b", ".", ",", "(", "<", "|", ">", "_", "-",
        "\u2581", "<|im_start|>", "<s>", "<mask>", "[SW]", " world", "[INST]", "<|eot_id|>"])


def soup(r):
    return "".join(r.choice(SOUP) for _ in range(r.randint(1, 24)))


def corpus():
    r = random.Random(424242)
    lines = list(HAND)
    while len(lines) < N_RANDOM:
        lines.append(rnd_text(r, 9))
    lines += [soup(r) for _ in range(550)]
    return lines


# ---- tokenizer families ---------------------------------------------------------------------
def bytelevel_train(pre, norm, vocab, specials):
    tok = Tokenizer(models.BPE())
    tok.normalizer = norm
    tok.pre_tokenizer = pre
    tr = trainers.BpeTrainer(vocab_size=vocab, show_progress=False, special_tokens=specials,
                             initial_alphabet=pre_tokenizers.ByteLevel.alphabet())
    tok.train_from_iterator(training_lines(), trainer=tr)
    tok.decoder = decoders.ByteLevel()
    return tok


def sp_train(vocab, n_alphabet, specials, with_bytes):
    """SentencePiece-style BPE: trained on Metaspace words, with an alphabet of the n_alphabet
    most frequent characters (ties by code point) so that rarer ones need byte fallback or unk.
    The alphabet is chosen here rather than by limit_alphabet, whose tie-breaking is not
    deterministic."""
    lines = training_lines()
    counts = {}
    for ln in lines:
        for ch in ln:
            counts[ch] = counts.get(ch, 0) + 1
    keep = set(sorted(counts, key=lambda c: (-counts[c], ord(c)))[:n_alphabet]) | {" "}
    lines = ["".join(ch for ch in ln if ch in keep) for ln in lines]
    tok = Tokenizer(models.BPE())
    tok.pre_tokenizer = pre_tokenizers.Metaspace(replacement="\u2581", prepend_scheme="always",
                                                 split=True)
    byte_toks = ["<0x%02X>" % b for b in range(256)] if with_bytes else []
    tr = trainers.BpeTrainer(vocab_size=vocab, show_progress=False, special_tokens=specials + byte_toks)
    tok.train_from_iterator(lines, trainer=tr)
    return tok


def legacy_merges(j):
    j["model"]["merges"] = [a + " " + b for a, b in j["model"]["merges"]]


def gpt2():
    tok = bytelevel_train(pre_tokenizers.ByteLevel(add_prefix_space=False), None, 2000,
                          ["<|endoftext|>"])
    tok.post_processor = processors.ByteLevel(trim_offsets=True)
    tok.add_special_tokens([AddedToken("<mask>", lstrip=True, rstrip=False, normalized=False,
                                       special=True)])
    tok.add_tokens([AddedToken(" world", single_word=True, normalized=True),
                    AddedToken("[SW]", single_word=True, rstrip=True, normalized=True)])
    j = json.loads(tok.to_str())
    legacy_merges(j)
    return j


def llama3():
    pre = pre_tokenizers.Sequence([
        pre_tokenizers.Split(Regex(LLAMA3_RE), behavior="isolated", invert=False),
        pre_tokenizers.ByteLevel(add_prefix_space=False, trim_offsets=True, use_regex=False)])
    tok = bytelevel_train(pre, None, 2500, [])
    specials = ["<|begin_of_text|>", "<|end_of_text|>", "<|reserved_special_token_0|>",
                "<|start_header_id|>", "<|end_header_id|>", "<|eot_id|>"]
    tok.add_special_tokens([AddedToken(s, normalized=False, special=True) for s in specials])
    bos = tok.token_to_id("<|begin_of_text|>")
    tok.post_processor = processors.Sequence([
        processors.ByteLevel(add_prefix_space=True, trim_offsets=False, use_regex=True),
        processors.TemplateProcessing(single="<|begin_of_text|> $A",
                                      pair="<|begin_of_text|> $A <|begin_of_text|> $B:1",
                                      special_tokens=[("<|begin_of_text|>", bos)])])
    j = json.loads(tok.to_str())
    j["model"]["ignore_merges"] = True
    return j


def qwen2():
    pre = pre_tokenizers.Sequence([
        pre_tokenizers.Split(Regex(QWEN2_RE), behavior="isolated", invert=False),
        pre_tokenizers.ByteLevel(add_prefix_space=False, trim_offsets=False, use_regex=False)])
    tok = bytelevel_train(pre, normalizers.NFC(), 2500, [])
    tok.add_special_tokens([AddedToken(s, normalized=False, special=True)
                            for s in ["<|endoftext|>", "<|im_start|>", "<|im_end|>"]])
    tok.add_tokens([AddedToken(s, normalized=False, special=False)
                    for s in ["<tool_call>", "</tool_call>"]])
    tok.post_processor = processors.ByteLevel(add_prefix_space=False, trim_offsets=False,
                                              use_regex=False)
    return json.loads(tok.to_str())


SP_DECODER = {"type": "Sequence", "decoders": [
    {"type": "Replace", "pattern": {"String": "\u2581"}, "content": " "},
    {"type": "ByteFallback"}, {"type": "Fuse"},
    {"type": "Strip", "content": " ", "start": 1, "stop": 0}]}


def sp_common(j, byte_fallback, fuse_unk, keep_added):
    j["added_tokens"] = [t for t in j["added_tokens"] if t["content"] in keep_added]
    for t in j["added_tokens"]:
        t["normalized"] = False
    m = j["model"]
    m["unk_token"] = "<unk>"
    m["byte_fallback"] = byte_fallback
    m["fuse_unk"] = fuse_unk
    j["post_processor"] = {
        "type": "TemplateProcessing",
        "single": [{"SpecialToken": {"id": "<s>", "type_id": 0}},
                   {"Sequence": {"id": "A", "type_id": 0}}],
        "pair": [{"SpecialToken": {"id": "<s>", "type_id": 0}}, {"Sequence": {"id": "A", "type_id": 0}},
                 {"SpecialToken": {"id": "<s>", "type_id": 1}}, {"Sequence": {"id": "B", "type_id": 1}}],
        "special_tokens": {"<s>": {"id": "<s>", "ids": [m["vocab"]["<s>"]], "tokens": ["<s>"]}}}


def llama2():
    j = json.loads(sp_train(2000, 200, ["<unk>", "<s>", "</s>"], True).to_str())
    sp_common(j, True, True, ["<unk>", "<s>", "</s>"])
    j["normalizer"] = {"type": "Sequence", "normalizers": [
        {"type": "Prepend", "prepend": "\u2581"},
        {"type": "Replace", "pattern": {"String": " "}, "content": "\u2581"}]}
    j["pre_tokenizer"] = None
    j["decoder"] = SP_DECODER
    legacy_merges(j)
    return j


def mistral():
    j = json.loads(sp_train(2000, 180, ["<unk>", "<s>", "</s>", "[INST]", "[/INST]"], True).to_str())
    sp_common(j, True, True, ["<unk>", "<s>", "</s>", "[INST]", "[/INST]"])
    j["normalizer"] = None
    j["pre_tokenizer"] = {"type": "Metaspace", "replacement": "\u2581", "prepend_scheme": "first",
                          "split": False}
    j["decoder"] = SP_DECODER
    return j


def metaspace_unk():
    j = json.loads(sp_train(1500, 400, ["<unk>", "<s>", "</s>"], False).to_str())
    sp_common(j, False, False, ["<unk>", "<s>", "</s>"])
    j["pre_tokenizer"] = {"type": "Metaspace", "replacement": "\u2581", "prepend_scheme": "always",
                          "split": True}
    j["decoder"] = {"type": "Metaspace", "replacement": "\u2581", "prepend_scheme": "always",
                    "split": True}
    return j


FAMILIES = [("gpt2", gpt2), ("llama3", llama3), ("qwen2", qwen2), ("llama2", llama2),
            ("mistral", mistral), ("metaspace_unk", metaspace_unk)]

# Pre-tokenizer settings the families above do not use, checked boundary by boundary only
# (pretok_<name>.json has a one-token model; only its pre_tokenizer matters).
PRETOK_VARIANTS = {
    "bytelevel_prefix": {"type": "ByteLevel", "add_prefix_space": True, "trim_offsets": True,
                         "use_regex": True},
    "bytelevel_noregex": {"type": "ByteLevel", "add_prefix_space": True, "trim_offsets": True,
                          "use_regex": False},
    "split_removed_invert": {"type": "Split", "pattern": {"Regex": LLAMA3_RE},
                             "behavior": "Removed", "invert": True},
    "split_merged_prev": {"type": "Split", "pattern": {"Regex": GPT2_RE},
                          "behavior": "MergedWithPrevious", "invert": False},
    "split_merged_next_invert": {"type": "Split", "pattern": {"Regex": QWEN2_RE},
                                 "behavior": "MergedWithNext", "invert": True},
    "split_contiguous_string": {"type": "Split", "pattern": {"String": " "},
                                "behavior": "Contiguous", "invert": False},
    "split_removed_string": {"type": "Split", "pattern": {"String": "<s>"},
                             "behavior": "Removed", "invert": False},
    "metaspace_never_split": {"type": "Metaspace", "replacement": "\u2581", "prepend_scheme": "never",
                              "split": True},
    "metaspace_first_split": {"type": "Metaspace", "replacement": "_", "prepend_scheme": "first",
                              "split": True},
}


def pretok_variant(pre):
    return {"version": "1.0", "truncation": None, "padding": None, "added_tokens": [],
            "normalizer": None, "pre_tokenizer": pre, "post_processor": None, "decoder": None,
            "model": {"type": "BPE", "dropout": None, "unk_token": None,
                      "continuing_subword_prefix": None, "end_of_word_suffix": None, "fuse_unk": False,
                      "byte_fallback": False, "ignore_merges": False, "vocab": {"a": 0}, "merges": []}}


B64 = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_"


def enc_ids(ids):
    for i in ids:
        assert 0 <= i < 4096, i
    return "".join(B64[i >> 6] + B64[i & 63] for i in ids)


def write_atomic(path, text):
    with open(path + ".tmp", "w", encoding="utf-8", newline="\n") as f:
        f.write(text)
        f.flush()
        os.fsync(f.fileno())
    os.replace(path + ".tmp", path)


def golden(tok, lines):
    out = []
    for text in lines:
        ids = tok.encode(text, add_special_tokens=False).ids
        full = tok.encode(text, add_special_tokens=True).ids
        n = len(ids)
        pre_n = next(k for k in range(len(full) - n + 1) if full[k:k + n] == ids)
        rec = {"ids": enc_ids(ids)}
        if pre_n:
            rec["pre"] = enc_ids(full[:pre_n])
        if len(full) > pre_n + n:
            rec["post"] = enc_ids(full[pre_n + n:])
        dec = tok.decode(full, skip_special_tokens=False)
        skip = tok.decode(full, skip_special_tokens=True)
        for key, val in (("dec", dec), ("skip", skip)):
            if val == text:
                continue
            if val.endswith(text) and text:
                rec[key + "_prefix"] = val[:len(val) - len(text)]
            else:
                rec[key] = val
        out.append(json.dumps(rec, ensure_ascii=False, separators=(",", ":")))
    return "\n".join(out) + "\n"


def pretok(tok, lines, idx):
    """Pre-tokenizer boundaries (byte lengths of the pieces pre_tokenize_str gives), for the
    lines in idx: ids alone cannot show a boundary that no merge would cross."""
    out = []
    for i in idx:
        pieces = tok.pre_tokenizer.pre_tokenize_str(lines[i])
        out.append(json.dumps({"i": i, "pt": enc_ids([len(p.encode("utf-8")) for p, _ in pieces])},
                              separators=(",", ":")))
    return "\n".join(out) + "\n"


def meta(tok, j):
    """Lookups the C test checks: HF's vocab size, every added token's id and specialness,
    token_to_id/id_to_token of a few model tokens."""
    added = [{"content": t["content"], "id": tok.token_to_id(t["content"]), "special": t["special"]}
             for t in j["added_tokens"]]
    probe = sorted(j["model"]["vocab"].items(), key=lambda kv: kv[1])[::97]
    lookups = [{"token": k, "id": tok.token_to_id(k), "back": tok.id_to_token(v)} for k, v in probe]
    return json.dumps({"vocab_size": tok.get_vocab_size(True), "added": added, "lookups": lookups},
                      ensure_ascii=False, indent=1) + "\n"


N_RANDOM = 1450  # corpus lines before the character soup
PRETOK_IDX = []


def main():
    os.makedirs(OUT, exist_ok=True)
    lines = corpus()
    PRETOK_IDX[:] = list(range(len(HAND))) + list(range(N_RANDOM, len(lines)))
    write_atomic(os.path.join(OUT, "corpus.jsonl"),
                 "\n".join(json.dumps(s, ensure_ascii=False) for s in lines) + "\n")
    for name, fn in FAMILIES:
        j = fn()
        text = json.dumps(j, ensure_ascii=False, separators=(",", ":"))
        tok = Tokenizer.from_str(text)
        write_atomic(os.path.join(OUT, name + ".json"), text + "\n")
        write_atomic(os.path.join(OUT, name + ".golden.jsonl"), golden(tok, lines))
        write_atomic(os.path.join(OUT, name + ".meta.json"), meta(tok, j))
        if tok.pre_tokenizer is not None:
            write_atomic(os.path.join(OUT, name + ".pretok.jsonl"), pretok(tok, lines, PRETOK_IDX))
    for name, pre in sorted(PRETOK_VARIANTS.items()):
        text = json.dumps(pretok_variant(pre), ensure_ascii=False, separators=(",", ":"))
        tok = Tokenizer.from_str(text)
        write_atomic(os.path.join(OUT, "pretok_" + name + ".json"), text + "\n")
        write_atomic(os.path.join(OUT, "pretok_" + name + ".pretok.jsonl"), pretok(tok, lines, PRETOK_IDX))
        print("%s: vocab %d, %d lines" % (name, tok.get_vocab_size(True), len(lines)), file=sys.stderr)


if __name__ == "__main__":
    main()
