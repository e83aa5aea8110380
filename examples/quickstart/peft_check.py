#!/usr/bin/env python3
"""peft_check.py — an independent check of the quickstart's adapter: transformers loads the base
model, PEFT loads the adapter nmc wrote, and greedy generation answers the held-out questions.

  python3 peft_check.py BASE_DIR ADAPTER_DIR HELDOUT.jsonl

Prints one line: how many held-out questions the PEFT-loaded model answers exactly (generation
until <|im_end|>, at most 8 new tokens) and two examples; it exits non-zero (with Python's
traceback) when the model or the adapter does not load. Needs torch,
transformers and peft (deps/pip.txt); run.sh skips it when they are missing.
"""
import json
import sys
import warnings

import torch
from peft import PeftModel
from transformers import AutoModelForCausalLM, AutoTokenizer
from transformers.utils import logging as hf_logging


def main(base_dir, adapter_dir, heldout):
    # One thread: the model is tiny, and more threads only spin (badly, on busy cores).
    torch.set_num_threads(1)
    warnings.filterwarnings("ignore")
    hf_logging.set_verbosity_error()
    hf_logging.disable_progress_bar()
    tok = AutoTokenizer.from_pretrained(base_dir)
    base = AutoModelForCausalLM.from_pretrained(base_dir, dtype=torch.float32)
    model = PeftModel.from_pretrained(base, adapter_dir).eval()
    end = tok.convert_tokens_to_ids("<|im_end|>")
    rows = [json.loads(line) for line in open(heldout)]
    right, shown = 0, []
    for r in rows:
        question, answer = r["messages"][0]["content"], r["messages"][1]["content"]
        ids = tok.apply_chat_template([{"role": "user", "content": question}],
                                      add_generation_prompt=True, return_tensors="pt",
                                      return_dict=True)["input_ids"]
        with torch.no_grad():
            out = model.generate(ids, max_new_tokens=8, do_sample=False, eos_token_id=end,
                                 pad_token_id=tok.pad_token_id)
        got = tok.decode(out[0, ids.shape[1]:], skip_special_tokens=True).strip()
        right += got == answer
        if len(shown) < 2:
            shown.append("'%s' -> '%s'" % (question, got))
    print("PEFT check: transformers + peft load the adapter; greedy generation answers %d/%d "
          "held-out questions exactly (%s)" % (right, len(rows), ", ".join(shown)))


if __name__ == "__main__":
    if len(sys.argv) != 4:
        sys.exit("usage: peft_check.py BASE_DIR ADAPTER_DIR HELDOUT.jsonl")
    main(*sys.argv[1:])
