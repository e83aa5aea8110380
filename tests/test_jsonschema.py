"""tests/test_jsonschema.py — the generated JSON Schemas (generated/*.schema.json) and rules.json.

Checks that:
  - both schemas are valid draft 2020-12 schemas;
  - every rule example in rules.json gets the expected verdict (a rule JSON Schema can express
    rejects its example_bad *because of that rule*; every example_good is accepted);
  - defaults take part in the if/then rules (absent keys, null objects) exactly as nmc reads them;
  - the field-level strictness decisions hold (integral floats, no string->number coercion, ...);
  - the JSON Schema verdict equals `nmc validate` on the job fixtures under tests/data/jobs/ and on
    the rule examples (skipped when nmc has no validate command yet);
  - codegen/gen.lua stops on bad definitions with a message naming the file and the field, and
    writes identical bytes twice.
Run from the repository root (make test does): python3 -m pytest -q tests/test_jsonschema.py
"""
import copy
import json
import os
import pathlib
import subprocess
import tempfile

import jsonschema
import pytest

ROOT = pathlib.Path(__file__).resolve().parent.parent
GEN = ROOT / "generated"
BACKENDS = ("automodel", "unsloth")
LUA = os.environ.get("LUA", "lua5.4")


def load(name):
    with open(GEN / name, encoding="utf-8") as fh:
        return json.load(fh)


SCHEMAS = {b: load(f"{b}.schema.json") for b in BACKENDS}
RULES = load("rules.json")["rules"]
RULE_BY_CODE = {(r["backend"], r["code"]): r for r in RULES}
VALIDATORS = {b: jsonschema.Draft202012Validator(s) for b, s in SCHEMAS.items()}


def without_rules(backend):
    """The backend schema with the cross-field if/then rules taken out (field checks only)."""
    s = copy.deepcopy(SCHEMAS[backend])
    root = s["anyOf"][0]["$ref"].split("/")[-1]
    s["$defs"][root].pop("allOf", None)
    return jsonschema.Draft202012Validator(s)


FIELDS_ONLY = {b: without_rules(b) for b in BACKENDS}


def valid(backend, doc):
    return VALIDATORS[backend].is_valid(doc)


def envelope(spec):
    return {"name": "job-1", "description": "d", "project": "p", "spec": spec}


# ---- the schemas themselves ---------------------------------------------------------------

@pytest.mark.parametrize("backend", BACKENDS)
def test_schema_is_valid_2020_12(backend):
    s = SCHEMAS[backend]
    assert s["$schema"] == "https://json-schema.org/draft/2020-12/schema"
    assert s["$id"].endswith("/" + backend + ".schema.json")
    jsonschema.Draft202012Validator.check_schema(s)


@pytest.mark.parametrize("backend", BACKENDS)
def test_every_object_is_closed(backend):
    for name, d in SCHEMAS[backend]["$defs"].items():
        assert d.get("additionalProperties") is False, name


def test_rules_json_is_sorted_and_complete():
    keys = [(r["backend"], r["code"]) for r in RULES]
    assert keys == sorted(keys)
    assert len(set(keys)) == len(keys)
    for r in RULES:
        assert r["severity"] in ("error", "warning")
        assert r["kind"] in ("divisible", "forbid", "require")
        assert isinstance(r["json_schema"], bool) and isinstance(r["needs_model"], bool)
        if r["json_schema"]:
            assert r["severity"] == "error" and r["kind"] != "divisible" and not r["needs_model"]
        assert r["example_bad"] is not None and r["example_good"] is not None, r["code"]
    # every expressible rule appears as an if/then in its schema
    for b in BACKENDS:
        root = SCHEMAS[b]["anyOf"][0]["$ref"].split("/")[-1]
        comments = {c["$comment"].split()[1] for c in SCHEMAS[b]["$defs"][root].get("allOf", [])}
        want = {r["code"] for r in RULES if r["backend"] == b and r["json_schema"]}
        assert comments == want, b


# ---- rule examples ------------------------------------------------------------------------

@pytest.mark.parametrize("rule", RULES, ids=lambda r: f'{r["backend"]}-{r["code"]}')
def test_rule_examples(rule):
    b = rule["backend"]
    good, bad = rule["example_good"], rule["example_bad"]
    assert valid(b, good), list(VALIDATORS[b].iter_errors(good))
    assert valid(b, envelope(good))
    # the bad example breaks nothing but its own rule
    assert FIELDS_ONLY[b].is_valid(bad), list(FIELDS_ONLY[b].iter_errors(bad))
    if rule["json_schema"]:
        assert not valid(b, bad)
        assert not valid(b, envelope(bad))
    else:
        assert valid(b, bad)


# ---- defaults in rules ---------------------------------------------------------------------

U = {"model": {"name": "m"}, "dataset": {"path": "d"}}
A = {"model": "m", "dataset": {"training": "d"}, "training": {}}


def job(base, **kw):
    j = copy.deepcopy(base)
    j.update(kw)
    return j


@pytest.mark.parametrize("doc,ok", [
    # load_in_4bit defaults to true: all_weights must turn it off explicitly
    (job(U, training={"finetuning_type": "all_weights"}), False),
    (job(U, model={"name": "m", "load_in_4bit": True}, training={"finetuning_type": "all_weights"}), False),
    (job(U, model={"name": "m", "load_in_4bit": False}, training={"finetuning_type": "all_weights"}), True),
    (job(U, model={"name": "m", "load_in_4bit": False}, training={"finetuning_type": "all_weights", "lora": None}), True),
    (job(U, model={"name": "m", "load_in_4bit": False}, training={"finetuning_type": "all_weights", "lora": {}}), False),
    # 8-bit alone conflicts with the default 4-bit
    (job(U, model={"name": "m", "load_in_8bit": True}), False),
    (job(U, model={"name": "m", "load_in_8bit": True, "load_in_4bit": False}), True),
    # warmup_steps 0 counts as unset
    (job(U, schedule={"warmup_ratio": 0.1}), True),
    (job(U, schedule={"warmup_steps": 0, "warmup_ratio": 0.1}), True),
    (job(U, schedule={"warmup_steps": 0.0, "warmup_ratio": 0.1}), True),
    (job(U, schedule={"warmup_steps": 5, "warmup_ratio": None}), True),
    (job(U, schedule={"warmup_steps": 5, "warmup_ratio": 0.0}), False),
    # save_method: merged_* only with lora; "lora" with all_weights passes (a warning in nmc)
    (job(U, model={"name": "m", "load_in_4bit": False}, training={"finetuning_type": "all_weights"},
         output={"save_method": "merged_4bit"}), False),
    (job(U, model={"name": "m", "load_in_4bit": False}, training={"finetuning_type": "all_weights"},
         output={"save_method": "lora"}), True),
    (job(U, output={"save_method": "merged_4bit"}), True),
    # a LoRA adapter job (save_method defaults to lora, also when output is null) needs lora_enabled
    (job(U, deployment_config={"lora_enabled": False}), False),
    (job(U, output=None, deployment_config={"lora_enabled": False}), False),
    (job(U, output={"name": "o"}, deployment_config={"gpu": 2}), True),
    (job(U, deployment_config="default/my-deploy"), True),
    (job(U, deployment_config=None), True),
    (job(U, model={"name": "m", "load_in_4bit": False}, training={"finetuning_type": "all_weights"},
         deployment_config={"lora_enabled": False}), True),
])
def test_unsloth_rules_with_defaults(doc, ok):
    assert valid("unsloth", doc) == ok, list(VALIDATORS["unsloth"].iter_errors(doc))
    assert valid("unsloth", envelope(doc)) == ok


@pytest.mark.parametrize("doc,ok", [
    (job(A, training={"training_type": "distillation"}), False),
    (job(A, training={"training_type": "distillation", "teacher_model": None}), False),
    (job(A, training={"training_type": "distillation", "teacher_model": "t"}), True),
    (job(A, training={"training_type": "distillation", "teacher_model": "t", "recipe": "cross_encoder"}), False),
    # lora is auto-filled for lora*; merge defaults false -> adapter -> lora_enabled must stay true
    (job(A, deployment_config={"lora_enabled": False}), False),
    (job(A, training={"lora": None}, deployment_config={"lora_enabled": False}), False),
    (job(A, training={"lora": {"merge": True}}, deployment_config={"lora_enabled": False}), True),
    (job(A, training={"finetuning_type": "all_weights"}, deployment_config={"lora_enabled": False}), True),
    (job(A, deployment_config="ws/cfg"), True),
    (job(A, batch={"packed_sequence_size": 128}), False),
    (job(A, batch={"packed_sequence_size": None}), True),
    (job(A, batch={"packed_sequence_size": 128, "sequence_packing": True}), True),
    (job(A, training={"lora": {"target_modules": ["a"], "exclude_modules": None}}), True),
    (job(A, training={"lora": {"target_modules": ["a"], "exclude_modules": ["b"]}}), False),
])
def test_automodel_rules_with_defaults(doc, ok):
    assert valid("automodel", doc) == ok, list(VALIDATORS["automodel"].iter_errors(doc))
    assert valid("automodel", envelope(doc)) == ok


# ---- field-level strictness -------------------------------------------------------------------

@pytest.mark.parametrize("backend,doc,ok", [
    ("automodel", job(A, training={"max_seq_length": 4096.0}), True),   # integral float is an int
    ("automodel", job(A, training={"max_seq_length": 1.5}), False),
    ("automodel", job(A, training={"max_seq_length": "16"}), False),    # no string -> number coercion
    ("automodel", job(A, training={"max_seq_length": True}), False),
    ("automodel", job(A, model=7), False),                               # no number -> string coercion
    ("automodel", job(A, dataset={"training": "d", "shuffle": "yes"}), False),
    ("automodel", job(A, optimizer={"learning_rate": -0.0}), False),     # -0.0 fails > 0
    ("automodel", job(A, optimizer={"weight_decay": -0.0}), True),       # ... and passes >= 0
    ("automodel", job(A, optimizer={"adam_beta1": 1.0}), False),
    ("automodel", job(A, training={"lora": {"dropout": 1.0}}), True),    # Automodel allows 1.0
    ("unsloth", job(U, training={"lora": {"dropout": 1.0}}), False),     # Unsloth: < 1
    ("automodel", job(A, output_model="x"), False),                     # removed key
    ("automodel", job(A, output={"description": "no name"}), False),     # output.name required
    ("automodel", job(A, output=None), True),
    ("automodel", job(A, bogus=1), False),                               # unknown key
    ("automodel", job(A, batch={"per_device_train_batch_size": 2}), False),  # other backend's key
    ("automodel", {"model": "m", "dataset": {"training": "d"}}, False),  # training is required
    ("automodel", job(A, model=""), False),                              # empty reference
    ("automodel", job(A, parallelism={"expert_parallel_size": None}), True),
    ("automodel", job(A, **{"$schema": "https://x.example/a/automodel.schema.json"}), True),
    ("automodel", job(A, integrations={"wandb": {"run_name": "r"}}), True),  # deprecated alias
    ("automodel", job(A, integrations={"wandb": {"api_key_secret": "ws/key"}}), True),
    ("automodel", job(A, integrations={"wandb": {"api_key_secret": "WS/Key"}}), False),
    ("automodel", job(A, integrations={"wandb": {"api_key_secret": "a/b/c"}}), False),
    ("automodel", job(A, integrations={"mlflow": {"tags": {"k": "v"}}}), True),
    ("automodel", job(A, integrations={"mlflow": {"tags": {"k": 1}}}), False),
    ("automodel", job(A, deployment_config={"tool_call_config": {"tool_call_plugin": "ws/plugin-1.0"}}), True),
    ("automodel", job(A, deployment_config={"tool_call_config": {"tool_call_plugin": "plugin"}}), False),
    ("automodel", job(A, deployment_config=""), False),
    ("automodel", job(A, schedule={"validation_split": 1.0}), False),
    ("automodel", job(A, optimizer={"optimizer": "FusedAdam"}), True),
    ("unsloth", job(U, training={"use_gradient_checkpointing": True}), False),  # must be a string
    ("unsloth", job(U, training={"use_gradient_checkpointing": "true"}), True),
    ("unsloth", job(U, training={"training_type": "distillation"}), False),
    ("unsloth", job(U, training={"finetuning_type": "lora_merged"}), False),
    ("unsloth", job(U, model="m"), False),                               # an object here
    ("unsloth", job(U, model={"name": "m", "device_map": "auto"}), True),
    ("unsloth", job(U, model={"name": "m", "device_map": 0}), True),
    ("unsloth", job(U, model={"name": "m", "device_map": {"": 0}}), True),
    ("unsloth", job(U, model={"name": "m", "device_map": [0]}), False),
    ("unsloth", job(U, training={"lora": {"init_lora_weights": "pissa"}}), True),
    ("unsloth", job(U, training={"lora": {"init_lora_weights": False}}), True),
    ("unsloth", job(U, training={"lora": {"init_lora_weights": "uniform"}}), False),
    ("unsloth", job(U, training={"lora": {"layers_to_transform": [0, 1]}}), True),
    ("unsloth", job(U, training={"lora": {"layers_to_transform": 3}}), True),
    ("unsloth", job(U, training={"lora": {"layer_replication": [[0, 16], [8, 24]]}}), True),
    ("unsloth", job(U, hardware={"gpus": "0,1"}), True),
    ("unsloth", job(U, hardware={"gpus": "0, 1"}), False),
    ("unsloth", job(U, hardware={"gpus": 0}), False),
    ("unsloth", job(U, parallelism={}), False),
    ("unsloth", {"dataset": {"path": "d"}}, False),                      # model is required
])
def test_field_strictness(backend, doc, ok):
    assert valid(backend, doc) == ok, list(VALIDATORS[backend].iter_errors(doc))


def test_envelope_shape():
    assert valid("automodel", {"$schema": "automodel.schema.json", "spec": A, "ownership": {"a": 1},
                               "custom_fields": {}, "output_location": "x"})
    assert not valid("automodel", {"name": "j"})                         # spec is required
    assert not valid("automodel", {"spec": A, "workspace": "w"})         # workspace is not in the body
    assert not valid("automodel", {"spec": U})                           # other backend's spec


# ---- nmc parity -----------------------------------------------------------------------------

def nmc_bin():
    b = os.environ.get("NMC_BIN") or str(ROOT / "nmc")
    return b if os.path.isfile(b) and os.access(b, os.X_OK) else None


def run_nmc(backend, path):
    p = subprocess.run([nmc_bin(), "validate", "--backend", backend, "--format", "json", str(path)],
                       capture_output=True, text=True, timeout=60)
    return p.returncode, p.stdout + p.stderr


_NMC_STATE = {}


def nmc_validate_available():
    if "ok" not in _NMC_STATE:
        ok = False
        if nmc_bin():
            with tempfile.TemporaryDirectory() as d:
                f = pathlib.Path(d) / "job.json"
                f.write_text(json.dumps(A))
                rc, _ = run_nmc("automodel", f)
                ok = rc in (0, 1)
        _NMC_STATE["ok"] = ok
    return _NMC_STATE["ok"]


def diag_codes(text):
    """(severity, code) pairs of the diagnostics in nmc's --format json output."""
    found = []

    def walk(x):
        if isinstance(x, dict):
            if isinstance(x.get("code"), str):
                found.append((x.get("severity", "error"), x["code"]))
            for v in x.values():
                walk(v)
        elif isinstance(x, list):
            for v in x:
                walk(v)

    for chunk in [text] + text.splitlines():
        try:
            walk(json.loads(chunk))
            break
        except ValueError:
            continue
    return found


def fixtures():
    out = []
    for b in BACKENDS:
        for kind in ("valid", "invalid"):
            d = ROOT / "tests" / "data" / "jobs" / b / kind
            if d.is_dir():
                out += [(b, kind, p) for p in sorted(d.glob("*.json"))]
    return out


FIXTURES = fixtures()


def expressible(backend, codes):
    for sev, c in codes:
        if sev != "error":
            continue
        if c.startswith("json-"):
            return False
        r = RULE_BY_CODE.get((backend, c))
        if r is not None and not r["json_schema"]:
            return False
    return True


@pytest.mark.skipif(not FIXTURES, reason="no job fixtures under tests/data/jobs/ yet")
@pytest.mark.parametrize("backend,kind,path", FIXTURES, ids=lambda x: str(x).split("/")[-1] if isinstance(x, pathlib.Path) else str(x))
def test_fixture_parity_with_nmc(backend, kind, path):
    if not nmc_validate_available():
        pytest.skip("nmc has no working `validate --format json` yet")
    rc, text = run_nmc(backend, path)
    assert rc in (0, 1), f"nmc crashed or failed to run (rc {rc}): {text[:2000]}"
    assert rc == (0 if kind == "valid" else 1), text[:2000]
    codes = diag_codes(text)
    if not expressible(backend, codes):
        pytest.skip("outcome depends on a rule JSON Schema cannot express: %s" % codes)
    try:
        with open(path, encoding="utf-8") as fh:
            doc = json.load(fh)
    except ValueError:
        pytest.skip("not parseable by Python's json (a json-* syntax case)")
    assert valid(backend, doc) == (rc == 0), (codes, list(VALIDATORS[backend].iter_errors(doc))[:3])


@pytest.mark.parametrize("rule", RULES, ids=lambda r: f'{r["backend"]}-{r["code"]}')
def test_rule_examples_with_nmc(rule, tmp_path):
    if not nmc_validate_available():
        pytest.skip("nmc has no working `validate --format json` yet")
    if rule["needs_model"]:
        pytest.skip("needs a model to check")
    b = rule["backend"]
    good, bad = tmp_path / "good.json", tmp_path / "bad.json"
    good.write_text(json.dumps(rule["example_good"]))
    bad.write_text(json.dumps(rule["example_bad"]))
    rc, text = run_nmc(b, good)
    assert rc == 0, text[:2000]
    rc, text = run_nmc(b, bad)
    assert rc == (1 if rule["severity"] == "error" else 0), text[:2000]
    assert rule["code"] in [c for _, c in diag_codes(text)], text[:2000]


# ---- the generator -------------------------------------------------------------------------

def run_gen(schema_dir, out):
    return subprocess.run([LUA, "codegen/gen.lua", "--schema", str(schema_dir), "--out", str(out / "gen"),
                           "--docs", str(out / "docs")], cwd=ROOT, capture_output=True, text=True, timeout=120)


GOOD_OBJECT = '''
object "TJob" {
  doc = "A test job.",
  field "model" { type = "string", required = true, doc = "The model to train." },
%s
}
backend "tback" { root = "TJob", doc = "A test backend.", schema_id = "https://x.example/tback.schema.json" %s }
'''

BAD_DEFINITIONS = [
    ("nodoc", 'field "steps" { type = "int", default = 1 },', "", "field TJob.steps", "doc"),
    ("range", 'field "steps" { type = "int", default = 0, gt = 0, doc = "Number of steps." },', "",
     "field TJob.steps", "default not above gt"),
    ("enum", 'field "kind" { type = "enum", values = { "a", "b" }, default = "c", doc = "Which kind." },', "",
     "field TJob.kind", "not one of the enum values"),
    ("typo", 'field "steps" { type = "int", defualt = 1, doc = "Number of steps." },', "",
     "field TJob.steps", "unknown key 'defualt'"),
    ("type", 'field "steps" { type = "integer", doc = "Number of steps." },', "",
     "field TJob.steps", "not one of the known types"),
    ("rulepath", 'field "steps" { type = "int", default = 1, doc = "Number of steps." },',
     ', rules = { rule "x-y" { kind = "forbid", when = { { "stepz", ">", 1 } }, message = "m", help = "h" } }',
     "rule x-y", "path 'stepz' does not name a field"),
    ("jsonschema", 'field "steps" { type = "int", default = 1, doc = "Number of steps." },',
     ', rules = { rule "w" { kind = "forbid", severity = "warning", json_schema = true, when = { { "steps", ">", 1 } }, message = "m", help = "h" } }',
     "rule w", "json_schema = true"),
]


@pytest.mark.parametrize("name,fields,extra,what,msg", BAD_DEFINITIONS, ids=[b[0] for b in BAD_DEFINITIONS])
def test_gen_rejects_bad_definition(name, fields, extra, what, msg, tmp_path):
    sdir = tmp_path / "schema"
    sdir.mkdir()
    (sdir / "bad.lua").write_text(GOOD_OBJECT % (fields, extra))
    p = run_gen(sdir, tmp_path)
    assert p.returncode == 1, p.stderr
    err = p.stderr.strip()
    assert f"{sdir}/bad.lua" in err and what in err and msg in err, err
    assert not (tmp_path / "gen").exists()


def test_gen_is_deterministic(tmp_path):
    a, b = tmp_path / "a", tmp_path / "b"
    for d in (a, b):
        d.mkdir()
        p = run_gen(ROOT / "schema", d)
        assert p.returncode == 0, p.stderr
    names = sorted(str(p.relative_to(a)) for p in a.rglob("*") if p.is_file())
    assert names == sorted(str(p.relative_to(b)) for p in b.rglob("*") if p.is_file())
    for n in names:
        assert (a / n).read_bytes() == (b / n).read_bytes(), n
    # and the committed JSON Schemas / docs are what the generator gives
    for n in ("automodel.schema.json", "unsloth.schema.json", "rules.json"):
        assert (a / "gen" / n).read_bytes() == (GEN / n).read_bytes(), f"generated/{n} is stale: run make gen"
    for n in ("automodel.md", "unsloth.md", "index.md"):
        assert (a / "docs" / n).read_bytes() == (ROOT / "docs" / "reference" / n).read_bytes(), \
            f"docs/reference/{n} is stale: run make gen"


def test_jsonenc_spellings():
    """lib/jsonenc.lua (shared with the C generator): sorted keys, one spelling per number."""
    snippet = r'''
package.path = "codegen/lib/?.lua;" .. package.path
local J = require("jsonenc")
io.write(J.encode({ b = { 1, 2.5, 1e-8, -0.0, 0.0, 1/3, 1e300 }, a = J.array(), c = {}, ["k\n"] = "x\1\"\\é" }))
io.write("\n", tostring(pcall(J.encode, { 0/0 })), "\n", select(2, pcall(J.encode, { a = { [2] = 1 } })))
'''
    p = subprocess.run([LUA, "-e", snippet], cwd=ROOT, capture_output=True, text=True, timeout=30)
    assert p.returncode == 0, p.stderr
    lines = p.stdout.split("\n")
    assert lines[0] == ('{"a":[],"b":[1,2.5,1e-8,-0.0,0.0,0.3333333333333333,1e300],"c":{},'
                        '"k\\n":"x\\u0001\\"\\\\é"}')
    assert json.loads(lines[0])["b"][2] == 1e-8
    assert lines[1] == "false"
    assert lines[2] == "jsonenc: non-string object key 2 at .a"
