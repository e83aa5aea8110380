#!/usr/bin/env python3
"""Golden token ids and loss masks for tests/test_dataset.c, from transformers itself.

For each case below this loads a tokenizer fixture (tests/data/tokenizers/<tok>.json) as a
transformers PreTrainedTokenizerFast, with a tokenizer_config (special tokens and, for chat
cases, a chat template from tests/data/chat_templates/<family>.jinja), and tokenizes the rows of
a JSONL fixture under tests/data/datasets/ the way the reference trainers do:

  chat   (Automodel `messages`): ids = apply_chat_template(messages, tools, tokenize=True).
         Mask = transformers' return_assistant_tokens_mask rule (char_to_token of each assistant
         span's first and last character, every token between marked) applied to the assistant
         spans, found by rendering prefixes: P = render(m[:i], add_generation_prompt=True),
         Q = render(m[:i+1]); span [len(P), len(Q)). Content given as a list of text parts is
         joined with " " first (Automodel ChatDataset._normalize_messages).
  pc     (prompt/completion and prompt_template): TRL 1.x SFTTrainer — completion += eos_token
         unless it ends with it; prompt_ids = tok(prompt), ids = tok(prompt + completion) (special
         tokens added); the completion starts at their common prefix length.
  text   (Unsloth text_field): TRL add_eos, then tok(text) with special tokens unless the text
         starts with the BOS token (Unsloth's double-BOS guard); every token is a target.
  chat_text (Unsloth apply_chat_template): render the conversation (tokenize=False), then `text`.

Each case also writes <name>.tokenizer_config.json (what the C side loads beside the tokenizer).
Samples whose mask has no target after position 0 are recorded as {"skipped": true}.
Output: tests/data/datasets/goldens.json. Deterministic (no randomness, no clock: no case uses a
template that renders the date).  Run: python3 tests/oracle/dataset_golden.py
"""
import json
import os

from tokenizers import Tokenizer
from transformers import PreTrainedTokenizerFast

HERE = os.path.dirname(os.path.abspath(__file__))
DATA = os.path.join(HERE, "..", "data")
OUT = os.path.join(DATA, "datasets")

CASES = [
    # name, tokenizer fixture, template family (None: no chat template), specials, format, file, template
    ("chat_qwen25", "qwen2", "qwen25", {"eos_token": "<|im_end|>", "pad_token": "<|endoftext|>"}, "chat", "chat.jsonl", None),
    ("chat_smollm2_llama2", "llama2", "smollm2", {"bos_token": "<s>", "eos_token": "</s>", "unk_token": "<unk>"},
     "chat", "chat_simple.jsonl", None),
    ("pc_qwen2", "qwen2", None, {"eos_token": "<|im_end|>", "pad_token": "<|endoftext|>"}, "pc", "pc.jsonl", None),
    ("pc_llama3", "llama3", None, {"bos_token": "<|begin_of_text|>", "eos_token": "<|end_of_text|>"}, "pc", "pc.jsonl", None),
    ("template_qwen2", "qwen2", None, {"eos_token": "<|im_end|>", "pad_token": "<|endoftext|>"}, "template", "qa.jsonl",
     "Question: {question}\nAnswer: {answer}"),
    ("text_llama3", "llama3", None, {"bos_token": "<|begin_of_text|>", "eos_token": "<|end_of_text|>"}, "text", "text.jsonl", None),
    ("chat_text_qwen25", "qwen2", "qwen25", {"eos_token": "<|im_end|>", "pad_token": "<|endoftext|>"}, "chat_text",
     "chat_simple.jsonl", None),
]


def load_tok(tok_name, family, specials):
    tok = PreTrainedTokenizerFast(tokenizer_object=Tokenizer.from_file(os.path.join(DATA, "tokenizers", tok_name + ".json")),
                                  **specials)
    config = dict(specials)
    if family:
        with open(os.path.join(DATA, "chat_templates", family + ".jinja"), encoding="utf-8") as f:
            tok.chat_template = f.read()
        config["chat_template"] = tok.chat_template
    return tok, config


def normalize(messages):
    out = []
    for m in messages:
        m = dict(m)
        if isinstance(m.get("content"), list):
            m["content"] = " ".join(p["text"] for p in m["content"])
        out.append(m)
    return out


def render(tok, msgs, tools, gen):
    return tok.apply_chat_template(msgs, tools=tools, tokenize=False, add_generation_prompt=gen)


def chat_sample(tok, row):
    msgs, tools = normalize(row["messages"]), row.get("tools")
    full = render(tok, msgs, tools, False)
    ids = tok.apply_chat_template(msgs, tools=tools, tokenize=True, return_dict=True)["input_ids"]
    enc = tok(full, add_special_tokens=False)
    assert enc["input_ids"] == ids, "apply_chat_template(tokenize=True) is not tok(text, add_special_tokens=False)"
    mask = [0] * len(ids)
    for i, m in enumerate(msgs):
        if m["role"] != "assistant":
            continue
        p = render(tok, msgs[:i], tools, True) if i else ""
        q = render(tok, msgs[: i + 1], tools, False)
        assert full.startswith(q) and q.startswith(p), "template is not prefix-stable for this row"
        start, end = len(p), len(q)
        if end <= start:
            continue
        st, et = enc.char_to_token(start), enc.char_to_token(end - 1)
        for t in range(st, et + 1 if et is not None else len(ids)):
            mask[t] = 1
    return ids, mask


def pc_sample(tok, prompt, completion):
    if not completion.endswith(tok.eos_token):
        completion += tok.eos_token
    p = tok(prompt)["input_ids"]
    ids = tok(prompt + completion)["input_ids"]
    k = 0
    while k < len(p) and k < len(ids) and p[k] == ids[k]:
        k += 1
    return ids, [0] * k + [1] * (len(ids) - k)


def text_sample(tok, text):
    if not text.endswith(tok.eos_token):
        text += tok.eos_token
    special = not (tok.bos_token and text.startswith(tok.bos_token))
    ids = tok(text, add_special_tokens=special)["input_ids"]
    return ids, [1] * len(ids)


def fill_template(tmpl, row):
    # the two placeholders of the fixture template: "Question: {question}\nAnswer: {answer}"
    a, rest = tmpl.split("{question}")
    b, c = rest.split("{answer}")
    return a + row["question"] + b, row["answer"] + c


def main():
    cases = []
    for name, tok_name, family, specials, fmt, file, tmpl in CASES:
        tok, config = load_tok(tok_name, family, specials)
        with open(os.path.join(OUT, name + ".tokenizer_config.json"), "w", encoding="utf-8") as f:
            json.dump(config, f, ensure_ascii=False, indent=1, sort_keys=True)
            f.write("\n")
        samples = []
        with open(os.path.join(OUT, file), encoding="utf-8") as f:
            for line_no, line in enumerate(f, 1):
                row = json.loads(line)
                if fmt == "chat":
                    ids, mask = chat_sample(tok, row)
                elif fmt == "pc":
                    ids, mask = pc_sample(tok, row["prompt"], row["completion"])
                elif fmt == "template":
                    ids, mask = pc_sample(tok, *fill_template(tmpl, row))
                elif fmt == "text":
                    ids, mask = text_sample(tok, row["text"])
                else:
                    ids, mask = text_sample(tok, render(tok, normalize(row["messages"]), row.get("tools"), False))
                if not any(mask[1:]):
                    samples.append({"line": line_no, "skipped": True})
                else:
                    samples.append({"line": line_no, "ids": ids, "mask": mask})
        case = {"name": name, "tokenizer": tok_name + ".json", "config": name + ".tokenizer_config.json",
                "format": fmt, "file": file, "samples": samples}
        if tmpl:
            case["prompt_template"] = tmpl
        cases.append(case)
    with open(os.path.join(OUT, "goldens.json"), "w", encoding="utf-8") as f:
        f.write("{\"cases\": [\n")
        for i, c in enumerate(cases):
            f.write(json.dumps(c, ensure_ascii=False, separators=(",", ":")))
            f.write(",\n" if i + 1 < len(cases) else "\n")
        f.write("]}\n")


if __name__ == "__main__":
    main()
