#!/usr/bin/env python3
"""Golden chat renders from transformers itself, for tests/test_chat_template.c.

For each real chat template in tests/data/chat_templates/<family>.jinja this renders a
fixed corpus of conversations (>= 30 per template) with transformers'
PreTrainedTokenizerFast.apply_chat_template(tokenize=False) on a tiny WordLevel tokenizer
built with `tokenizers` (only its special tokens matter), with strftime_now pinned to
2025-03-07 14:05:09, and writes tests/data/chat_templates/goldens/<family>.json:

  {"config": {tokenizer_config subset: chat_template + special tokens},
   "now": unix seconds of the pinned time (UTC),
   "cases": [{"name", "messages", "tools"?, "kwargs"?, "add_generation_prompt",
              "expected": text | "error": {"type", "message"},
              "spans": [{"message": i, "start", "end"} | {"message": i, "stable": false}]}]}

Spans are computed with transformers' own renders of the conversation prefixes: P =
render(messages[:i], add_generation_prompt=True), Q = render(messages[:i+1]); when P is a
prefix of Q and Q of the full text, the span is [len(P), len(Q)) in UTF-8 bytes.

Deterministic: no randomness, fixed time, sorted nothing (case order is the list order).
Run: python3 tests/oracle/make_chat_goldens.py   (needs transformers >= 4.45, tokenizers)
"""
import datetime as _dt
import json
import os
import sys

from tokenizers import Tokenizer, models
import transformers
from transformers import PreTrainedTokenizerFast
import transformers.utils.chat_template_utils as ctu

HERE = os.path.dirname(os.path.abspath(__file__))
DATA = os.path.join(HERE, "..", "data", "chat_templates")
FIXED = _dt.datetime(2025, 3, 7, 14, 5, 9)
FIXED_UNIX = int(FIXED.replace(tzinfo=_dt.timezone.utc).timestamp())


class _FixedDatetime(_dt.datetime):
    @classmethod
    def now(cls, tz=None):
        return FIXED


ctu.datetime = _FixedDatetime  # strftime_now reads the module's `datetime`

TOKENS = {
    "llama31": {"bos_token": "<|begin_of_text|>", "eos_token": "<|eot_id|>"},
    "llama32": {"bos_token": "<|begin_of_text|>", "eos_token": "<|eot_id|>"},
    "qwen25": {"eos_token": "<|im_end|>", "pad_token": "<|endoftext|>"},
    "qwen3": {"eos_token": "<|im_end|>", "pad_token": "<|endoftext|>"},
    "mistral_nemo": {"bos_token": "<s>", "eos_token": "</s>", "unk_token": "<unk>"},
    "smollm2": {"bos_token": "<|im_start|>", "eos_token": "<|im_end|>", "pad_token": "<|im_end|>",
                "unk_token": "<|endoftext|>"},
}
TOOL_FAMILIES = {"llama31", "llama32", "qwen25", "qwen3", "mistral_nemo"}

# ---- building blocks ---------------------------------------------------------------
SYS = "You are a helpful assistant."
WEATHER = {"type": "function", "function": {
    "name": "get_weather", "description": "Get the current weather in a city",
    "parameters": {"type": "object", "properties": {
        "location": {"type": "string", "description": "City name, e.g. Paris"},
        "unit": {"type": "string", "enum": ["celsius", "fahrenheit"]}},
        "required": ["location"]}}}
ADD = {"type": "function", "function": {
    "name": "add", "description": "Add two numbers",
    "parameters": {"type": "object", "properties": {"a": {"type": "number"}, "b": {"type": "number"}},
                   "required": ["a", "b"]}}}


def u(c):
    return {"role": "user", "content": c}


def a(c):
    return {"role": "assistant", "content": c}


def s(c=SYS):
    return {"role": "system", "content": c}


def call(name="get_weather", args=None, cid="call12345"):
    return {"id": cid, "type": "function",
            "function": {"name": name, "arguments": args if args is not None else {"location": "Paris", "unit": "celsius"}}}


def tool_msg(content='{"temperature": 21, "unit": "celsius"}', cid="call12345", name="get_weather"):
    return {"role": "tool", "content": content, "tool_call_id": cid, "name": name}


def generic_cases():
    """Plain chat: every template supports these (some raise by design; that is recorded)."""
    convs = [
        ("user_only", [u("Hello!")]),
        ("system_user", [s(), u("What is 2+2?")]),
        ("system_user_assistant", [s(), u("What is 2+2?"), a("2+2 = 4.")]),
        ("multi_turn", [u("Hi"), a("Hello! How can I help?"), u("Tell me a joke.")]),
        ("multi_turn_system", [s("Be brief."), u("Capital of France?"), a("Paris."), u("And of Italy?"), a("Rome.")]),
        ("unicode", [s("Réponds en français. ✓"), u("Ünïcödé 日本語 🙂 — ok?"), a("Oui ✓ 🙂")]),
        ("empty_user", [u(""), a("It looks like your message was empty.")]),
        ("whitespace", [s("  padded system  \n"), u("  spaced  \n\n"), a("\n answer with spaces \n")]),
        ("multiline", [u("line one\nline two\n\nline four"), a("first\nsecond")]),
        ("quotes_backslashes", [u('He said "hi" and it\'s fine: C:\\path\\n {"a": 1}'), a("Noted: \\ \" '")]),
        ("special_tokens_in_text", [u("What is <|im_start|> or [INST] or <s>?"), a("Control tokens.")]),
        ("four_rounds", [s(), u("1"), a("one"), u("2"), a("two"), u("3"), a("three"), u("4"), a("four")]),
        ("tabs_crlf", [u("col1\tcol2\r\nrow2\r\n"), a("\ttabbed\r\n")]),
        ("json_content", [u('{"key": [1, 2.5, null, true], "nested": {"x": "y"}}'), a("[]")]),
        ("long_content", [s(), u("word " * 300), a("ok " * 100)]),
        ("extra_keys", [{"role": "user", "content": "hi", "name": "alice", "meta": None}, a("hello alice")]),
    ]
    out = []
    for name, msgs in convs:
        for agp in (False, True):
            out.append({"name": f"{name}_agp{int(agp)}", "messages": msgs, "add_generation_prompt": agp})
    return out


def tool_cases(family):
    tools = [WEATHER, ADD]
    convs = [
        ("tools_user", [u("What's the weather in Paris?")], {}),
        ("tools_system_user", [s(), u("What's the weather in Paris?")], {}),
        ("tools_call_result_answer", [s(), u("Weather in Paris?"),
                                      {"role": "assistant", "content": None, "tool_calls": [call()]},
                                      tool_msg(), a("It is 21 °C in Paris.")], {}),
        ("tools_call_pending", [u("Add 2 and 3."),
                                {"role": "assistant", "tool_calls": [call("add", {"a": 2, "b": 3})]}], {}),
        ("tools_call_result", [u("Add 2 and 3."),
                               {"role": "assistant", "tool_calls": [call("add", {"a": 2, "b": 3.5})]},
                               tool_msg("5.5", name="add")], {}),
        ("tools_two_calls", [u("Weather in Paris and Rome?"),
                             {"role": "assistant", "content": "", "tool_calls": [
                                 call(), call(args={"location": "Rome"}, cid="call67890")]},
                             tool_msg(), tool_msg('{"temperature": 25}', cid="call67890"),
                             a("Paris 21 °C, Rome 25 °C.")], {}),
        ("tools_string_arguments", [u("Weather?"),
                                    {"role": "assistant", "tool_calls": [
                                        {"id": "call12345", "type": "function",
                                         "function": {"name": "get_weather", "arguments": '{"location": "Oslo"}'}}]},
                                    tool_msg("cold")], {}),
        ("tools_no_user", [s()], {}),
    ]
    if family in ("llama31", "llama32"):
        convs.append(("tools_in_system", [s(), u("Weather in Paris?")], {"tools_in_user_message": False}))
        convs.append(("date_string", [s(), u("What day is it?")], {"date_string": "01 Jan 2030"}))
    if family == "llama31":
        convs.append(("builtin_tools", [s(), u("Search for nmc"),
                                        {"role": "assistant", "tool_calls": [
                                            {"type": "function", "function": {"name": "brave_search",
                                                                              "arguments": {"query": "nmc"}}}]},
                                        {"role": "ipython", "content": "results"}],
                      {"builtin_tools": ["brave_search", "code_interpreter"]}))
    if family == "mistral_nemo":
        convs.append(("bad_call_id", [u("Weather?"),
                                      {"role": "assistant", "tool_calls": [call(cid="short")]}], {}))
    out = []
    for name, msgs, kw in convs:
        for agp in (False, True):
            c = {"name": f"{name}_agp{int(agp)}", "messages": msgs, "tools": tools, "add_generation_prompt": agp}
            if kw:
                c["kwargs"] = kw
            out.append(c)
    return out


def family_cases(family):
    out = []
    if family == "qwen3":
        think = [u("Why is the sky blue?"),
                 {"role": "assistant", "content": "Rayleigh scattering.", "reasoning_content": "Short wavelengths scatter more."}]
        inline = [u("2+2?"), a("<think>\nsimple sum\n</think>\n\n4")]
        multi = [u("Q1"), {"role": "assistant", "content": "A1", "reasoning_content": "R1"},
                 u("Q2"), {"role": "assistant", "content": "A2", "reasoning_content": "R2"}]
        for et in (None, True, False):
            kw = {} if et is None else {"enable_thinking": et}
            tag = {None: "default", True: "on", False: "off"}[et]
            for name, msgs in (("think_reasoning", think), ("think_inline", inline), ("think_multi", multi),
                               ("think_user", [u("Hi")])):
                for agp in (False, True):
                    c = {"name": f"{name}_{tag}_agp{int(agp)}", "messages": msgs, "add_generation_prompt": agp}
                    if kw:
                        c["kwargs"] = kw
                    out.append(c)
        tc = [s(), u("Weather in Paris?"),
              {"role": "assistant", "content": "", "tool_calls": [call()]},
              tool_msg(), tool_msg("second result"), a("It is 21 °C.")]
        for agp in (False, True):
            out.append({"name": f"tools_qwen3_content_agp{int(agp)}", "messages": tc, "tools": [WEATHER],
                        "add_generation_prompt": agp})
        out.append({"name": "tools_qwen3_call_text", "add_generation_prompt": False, "tools": [WEATHER, ADD],
                    "messages": [u("Add"), {"role": "assistant", "content": "Let me add.",
                                            "tool_calls": [call("add", {"a": 1, "b": 2})]}]})
        out.append({"name": "thinking_alias", "add_generation_prompt": False,
                    "messages": [u("Hi"), {"role": "assistant", "content": "Hello", "thinking": "greet"}]})
    if family == "mistral_nemo":
        out.append({"name": "not_alternating", "add_generation_prompt": True, "messages": [u("a"), u("b")]})
        out.append({"name": "assistant_first", "add_generation_prompt": False, "messages": [a("x"), u("y")]})
    if family in ("qwen25", "smollm2", "qwen3"):
        out.append({"name": "missing_content", "add_generation_prompt": False, "messages": [{"role": "user"}]})
    if family in ("llama31", "llama32"):
        out.append({"name": "content_missing_assistant", "add_generation_prompt": False,
                    "messages": [u("hi"), {"role": "assistant"}]})
    return out


# ---- rendering -----------------------------------------------------------------------
def make_tokenizer(family, template):
    tok = Tokenizer(models.WordLevel({"<unk>": 0}, unk_token="<unk>"))
    return PreTrainedTokenizerFast(tokenizer_object=tok, chat_template=template, **TOKENS[family])


def render(tok, case, messages=None, agp=None):
    return tok.apply_chat_template(
        messages if messages is not None else case["messages"], tools=case.get("tools"),
        add_generation_prompt=case["add_generation_prompt"] if agp is None else agp,
        tokenize=False, **case.get("kwargs", {}))


def render_prefix(tok, case, n, agp):
    # apply_chat_template refuses an empty conversation; the prefix before a first
    # assistant message may be empty, so render it with the same pipeline by hand.
    msgs = ctu._normalize_chat_messages(case["messages"][:n])
    template = tok.get_chat_template(None, case.get("tools"))
    kw = {**tok.special_tokens_map, **case.get("kwargs", {})}
    out, _ = ctu.render_jinja_template(conversations=[msgs], tools=case.get("tools"), chat_template=template,
                                       add_generation_prompt=agp, **kw)
    return out[0]


def spans(tok, case, full):
    res = []
    fb = full.encode()
    for i, m in enumerate(case["messages"]):
        if m.get("role") != "assistant":
            continue
        try:
            p = render_prefix(tok, case, i, True).encode()
            q = render_prefix(tok, case, i + 1, False).encode()
        except Exception:
            res.append({"message": i, "stable": False})
            continue
        if q.startswith(p) and fb.startswith(q):
            res.append({"message": i, "start": len(p), "end": len(q)})
        else:
            res.append({"message": i, "stable": False})
    return res


def run_case(tok, case):
    out = dict(case)
    try:
        text = render(tok, case)
    except Exception as e:  # the template raised: record what transformers says
        out["error"] = {"type": type(e).__name__, "message": str(e)}
        return out
    out["expected"] = text
    out["spans"] = spans(tok, case, text)
    return out


def list_form_golden():
    """tokenizer_config with the list-of-{name, template} form: default vs tool_use."""
    smol = open(os.path.join(DATA, "smollm2.jinja"), encoding="utf-8").read()
    qwen = open(os.path.join(DATA, "qwen25.jinja"), encoding="utf-8").read()
    tok = Tokenizer(models.WordLevel({"<unk>": 0}, unk_token="<unk>"))
    t = PreTrainedTokenizerFast(tokenizer_object=tok, chat_template={"default": smol, "tool_use": qwen},
                                **TOKENS["smollm2"])
    cases = [
        {"name": "list_default", "messages": [u("Hello!")], "add_generation_prompt": True},
        {"name": "list_tool_use", "messages": [u("Weather?")], "tools": [WEATHER], "add_generation_prompt": True},
        {"name": "list_empty_tools", "messages": [u("Weather?")], "tools": [], "add_generation_prompt": False},
    ]
    config = {"chat_template": [{"name": "default", "template": smol}, {"name": "tool_use", "template": qwen}],
              **TOKENS["smollm2"]}
    return {"config": config, "now": FIXED_UNIX, "cases": [run_case(t, c) for c in cases]}


def main():
    outdir = os.path.join(DATA, "goldens")
    os.makedirs(outdir, exist_ok=True)
    total = 0
    for family in sorted(TOKENS):
        template = open(os.path.join(DATA, f"{family}.jinja"), encoding="utf-8").read()
        tok = make_tokenizer(family, template)
        cases = generic_cases() + (tool_cases(family) if family in TOOL_FAMILIES else []) + family_cases(family)
        golden = {"config": {"chat_template": template, **TOKENS[family]}, "now": FIXED_UNIX,
                  "generator": f"tests/oracle/make_chat_goldens.py (transformers {transformers.__version__})",
                  "cases": [run_case(tok, c) for c in cases]}
        write(os.path.join(outdir, f"{family}.json"), golden)
        total += len(cases)
        n_err = sum(1 for c in golden["cases"] if "error" in c)
        print(f"{family}: {len(cases)} cases ({n_err} expected errors)")
    lf = list_form_golden()
    write(os.path.join(outdir, "list_form.json"), lf)
    print(f"list_form: {len(lf['cases'])} cases; total {total + len(lf['cases'])}")


def write(path, obj):
    tmp = path + ".tmp"
    with open(tmp, "w", encoding="utf-8") as f:
        json.dump(obj, f, ensure_ascii=False, indent=1)
        f.write("\n")
        f.flush()
        os.fsync(f.fileno())
    os.replace(tmp, path)


if __name__ == "__main__":
    sys.exit(main())
