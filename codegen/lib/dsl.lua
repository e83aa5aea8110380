-- codegen/lib/dsl.lua — loads schema/*.lua definitions and returns one validated,
-- normalized intermediate representation (IR) that every generator consumes.
--
-- A schema file is plain Lua run in a sandbox whose globals are the constructors below.
-- Nothing in a schema file may depend on pairs() order: fields keep declaration order,
-- and every generator sorts whatever it iterates by key.
--
-- ## Constructors (globals inside schema files)
--   object "Name" { doc = "...", field "a" {...}, field "b" {...} }
--       An object type. Names are CamelCase and unique across all schema files.
--       Optional keys: c_name (default derived: AutomodelLora -> nmc_automodel_lora_t).
--   field "name" { type = T, ... }      one member of an object (see Field keys)
--   backend "automodel" { root = "AutomodelJob", doc = ..., rules = {...},
--                         derived = {...}, equivalents = {...}, schema_id = "..." }
--   rule "code" { ... }                 a cross-field rule (see Rules)
--   derive "name" { ... }               a derived value (see Derived)
--   NULL                                the JSON null (as a default value)
--   memory_table { ... }                the GPU memory guideline table (docs only)
--
-- ## Field keys
--   type      "bool" | "int" | "float" | "string" | "enum" | "object" | "list" | "map"
--             | "any_object" | "union" | "const"
--   doc       required, one or more sentences in our own words
--   default   a Lua value, NULL, or absent (= no default: absent stays absent)
--   required  true: must be present (nullable fields may still be null)
--   nullable  true: explicit null accepted
--   values    enum: list of literal strings (order kept, it is the documented order)
--   value     const: the only allowed literal
--   object    object/… : name of an object type
--   items     list: a type spec table { type = ..., (same keys as a field, no doc) }
--   map_values  map: a type spec for the values (keys are strings)
--   variants  union: list of type specs, tried in order; each may carry `when_json`
--             ("string"|"number"|"boolean"|"object"|"array") to pick it by JSON kind
--   ge, gt, le, lt   numeric bounds (inclusive / exclusive); int and float
--   min_len   string: minimum length in characters
--   pattern   string: { regex = "^...$", name = "secret_ref" } — regex in ECMA-262 subset
--             as JSON Schema uses; the C side implements each *name* by hand
--   source    provenance tag from the facts file: "D", "OA", "SRC", "SRC-new", ...
--   alias_of  this key is a deprecated alias of the named sibling field (warning)
--   removed   string: this key is always rejected with that message (legacy names)
--   autofill_when  list of clauses (see Rules): when they hold and the field is absent or
--             null, the field is filled with the object's defaults
--   notes     extra documentation lines (strictness decisions, quirks)
--   example   a Lua value shown in docs
--
-- ## Clauses (used by rules and autofill_when): a list of triples, all must hold
--   { "path.to.field", "==", v } "!=" ">" ">=" "<" "<=" "in" (v a list) "starts_with"
--   { "path", "set" }     present and not null (after defaults)
--   { "path", "unset" }   absent or null (after defaults)
--   { "path", "given" }   written by the user (before defaults)
--   Paths are absolute from the spec root; "$name" names a derived value.
--   Values are compared after defaults are filled (the reference validates that way).
--
-- ## Rules
--   rule "code" {
--     kind = "divisible", value = "path|$derived", by = { "path", ... },   -- value % prod(by) == 0
--     kind = "forbid",    when = { clauses },   -- error when all clauses hold
--     kind = "require",   when = { clauses }, field = "path",  -- field must be set
--     severity = "error" | "warning"     (default "error")
--     at = "path"         where the diagnostic points (default: first path of the rule)
--     message = "text with {path} or {$derived} placeholders"   (divisible: generated)
--     help = "text",
--     needs_model = true  checked once the model is known (model facts: "$model.num_experts")
--     facts = "§3 rule 5" reference into the facts file
--     example_bad = { ...spec fragment... }, example_good = { ... }  (docs; tests may use them)
--     json_schema = false  this rule cannot be written as JSON Schema if/then
--   }
--
-- ## Derived
--   derive "total_gpus" { product = { "parallelism.num_gpus_per_node", "parallelism.num_nodes" }, doc = ... }
--   derive "data_parallel_size" { quotient = { "$total_gpus", { "a", "b", "c" } }, doc = ... }
--             (integer division; undefined when not exact — the divisibility rule reports it)
--   derive "output_type" { cases = { { when = {clauses}, value = "adapter" }, { value = "model" } }, doc = ... }
--
-- ## IR (what load() returns)
--   ir.objects[name] = { name, doc, c_name, file, fields = { F... } }, ir.object_names (sorted)
--   ir.backends[name] = { name, root, doc, rules = {R...}, derived = {D...},
--                         equivalents = { ["other.path"] = "our.path" | {paths} }, schema_id,
--                         file }, ir.backend_names (sorted)
--   ir.memory_table = { columns = {...}, rows = {{...}}, notes = {...} } or nil
--   F = the field table with keys above plus: name, object_name (owner), path-independent.
--   NULL is ir.NULL (a unique sentinel table).
--
-- ## Additions (schema engineer; all optional, nothing above was renamed or removed)
--   Field keys:
--     meta = true     the key is document metadata, not job configuration (the top-level
--                     "$schema" string an editor uses): accept it, type-check it, ignore it.
--                     Its name is not a C identifier; C generators should skip meta fields.
--     type_help = "…" the help line to print when the JSON kind of the value is wrong
--                     (e.g. a JSON boolean given where the strings "true"/"false" are wanted)
--   Backend keys:
--     envelope = "Name"   an object type for the REST request envelope {name, description,
--                         project, spec, ...}; its field "spec" must be an object of `root`.
--                         A job file is either the bare spec (root) or this envelope.
--     notes = { "…" }     strictness decisions and quirks of this backend (docs)
--     equivalent_notes = { ["other.path"] = "…" }  a sentence for an equivalents entry whose
--                         mapping needs more than a path (e.g. a value change)
--   IR additions made by load():
--     rule.json_schema  always a boolean after load: false when the rule cannot be written as
--                       JSON Schema if/then (divisible, needs_model, a "$..." path, or a
--                       warning — JSON Schema has no warnings); an explicit true for such a
--                       rule is a definition error. An explicit false is kept.
--   Validations added: a backend's equivalents must map to paths of its own root (and come
--     from paths of another backend's root); every rule's example_bad/example_good must be
--     tables; autofill_when is only allowed on object fields; include() resolves next to the
--     including schema file (so --schema DIR works for any DIR).
--
-- ## Clause semantics (how a path reads a value; the C evaluator and the JSON Schema
--    generator both follow this, so their verdicts agree)
--   - Values are read after defaults and autofill (the reference validates that way).
--   - When an object on the way is absent, null, or (for a union field) not an object, the
--     rest of the path reads the DEFAULTS of that object type, as if it were {}. Example:
--     Unsloth "output.save_method" reads "lora" when `output` is null or left out.
--   - A path through a union field continues into its (first) object variant.
--   - A value that is absent or null: "==" / "in" / ">" ... / "starts_with" do not hold
--     (except "==" NULL, which holds), "!=" holds, "set" does not hold, "unset" holds.
--   - "given" holds when the user wrote the key (null included), before any default.

local M = {}

local NULL = setmetatable({}, { __tostring = function() return "null" end, __name = "NULL" })
M.NULL = NULL

local TYPES = { bool = 1, int = 1, float = 1, string = 1, enum = 1, object = 1, list = 1,
                map = 1, any_object = 1, union = 1, const = 1 }
local FIELD_KEYS = { type = 1, doc = 1, default = 1, required = 1, nullable = 1, values = 1,
  value = 1, object = 1, items = 1, map_values = 1, variants = 1, ge = 1, gt = 1, le = 1, lt = 1,
  min_len = 1, pattern = 1, source = 1, alias_of = 1, removed = 1, autofill_when = 1, notes = 1,
  example = 1, when_json = 1, meta = 1, type_help = 1 }
local RULE_KEYS = { kind = 1, value = 1, by = 1, when = 1, field = 1, severity = 1, at = 1,
  message = 1, help = 1, needs_model = 1, facts = 1, example_bad = 1, example_good = 1,
  json_schema = 1, doc = 1 }
local OPS = { ["=="] = 1, ["!="] = 1, [">"] = 1, [">="] = 1, ["<"] = 1, ["<="] = 1, ["in"] = 1,
  starts_with = 1, set = 0, unset = 0, given = 0 }

local function fail(file, what, msg)
  error(string.format("%s: %s: %s", file or "?", what, msg), 0)
end

local function sorted_keys(t)
  local ks = {}
  for k in pairs(t) do ks[#ks + 1] = k end
  table.sort(ks, function(a, b) return tostring(a) < tostring(b) end)
  return ks
end
M.sorted_keys = sorted_keys

local function snake(name)
  return (name:gsub("(%l)(%u)", "%1_%2"):gsub("(%u)(%u%l)", "%1_%2"):lower())
end
M.snake = snake

-- Load one schema file into `acc` (objects, backends, memory_table).
local function load_file(path, acc)
  local env = {}
  local current_file = path
  env.NULL = NULL
  env.field = function(name)
    if type(name) ~= "string" then fail(current_file, "field", "field name must be a string") end
    return function(spec)
      if type(spec) ~= "table" then fail(current_file, "field " .. name, "expects a table") end
      spec.name = name
      spec.__kind = "field"
      return spec
    end
  end
  env.object = function(name)
    return function(spec)
      spec.name = name
      spec.file = current_file
      if acc.objects[name] then
        fail(current_file, "object " .. name, "defined twice (first in " .. acc.objects[name].file .. ")")
      end
      local fields = {}
      for i, f in ipairs(spec) do
        if type(f) ~= "table" or f.__kind ~= "field" then
          fail(current_file, "object " .. name, "entry #" .. i .. " is not a field \"...\" { } definition")
        end
        f.__kind = nil
        f.object_name = name
        fields[#fields + 1] = f
        spec[i] = nil
      end
      spec.fields = fields
      acc.objects[name] = spec
      acc.object_order[#acc.object_order + 1] = name
      return spec
    end
  end
  env.rule = function(code)
    return function(spec) spec.code = code; spec.file = current_file; return spec end
  end
  env.derive = function(name)
    return function(spec) spec.name = name; spec.file = current_file; return spec end
  end
  env.backend = function(name)
    return function(spec)
      spec.name = name
      spec.file = current_file
      if acc.backends[name] then fail(current_file, "backend " .. name, "defined twice") end
      acc.backends[name] = spec
      return spec
    end
  end
  env.memory_table = function(spec) acc.memory_table = spec; return spec end
  env.include = function(other) -- schema files may share Lua helpers via plain tables
    local p = (current_file:match("^(.*)/[^/]*$") or ".") .. "/" .. other .. ".lua"
    local chunk, err = loadfile(p, "t", env)
    if not chunk then fail(current_file, "include", err) end
    return chunk()
  end
  setmetatable(env, { __index = { ipairs = ipairs, pairs = pairs, table = table, string = string,
    math = math, tostring = tostring, type = type, error = error, assert = assert },
    __newindex = function(t, k, v) rawset(t, k, v) end })
  local chunk, err = loadfile(path, "t", env)
  if not chunk then fail(path, "syntax", err) end
  local ok, e = pcall(chunk)
  if not ok then fail(path, "load", tostring(e)) end
end

local validate_type -- forward

local function check_bounds(file, what, f)
  for _, k in ipairs({ "ge", "gt", "le", "lt" }) do
    if f[k] ~= nil then
      if type(f[k]) ~= "number" then fail(file, what, k .. " must be a number") end
      if f.type ~= "int" and f.type ~= "float" then fail(file, what, k .. " only applies to int/float") end
    end
  end
  if f.ge and f.gt then fail(file, what, "both ge and gt given") end
  if f.le and f.lt then fail(file, what, "both le and lt given") end
end

local function check_value_fits(file, what, f, v, acc)
  if v == NULL then
    if not f.nullable then fail(file, what, "default null but field is not nullable") end
    return
  end
  local t = f.type
  if t == "bool" and type(v) ~= "boolean" then fail(file, what, "default must be a boolean") end
  if t == "int" and (type(v) ~= "number" or math.type(v) ~= "integer") then fail(file, what, "default must be an integer") end
  if t == "float" and type(v) ~= "number" then fail(file, what, "default must be a number") end
  if t == "string" and type(v) ~= "string" then fail(file, what, "default must be a string") end
  if t == "enum" then
    local found = false
    for _, e in ipairs(f.values) do if e == v then found = true end end
    if not found then fail(file, what, "default " .. tostring(v) .. " is not one of the enum values") end
  end
  if (t == "int" or t == "float") and type(v) == "number" then
    if f.ge and v < f.ge then fail(file, what, "default below ge") end
    if f.gt and v <= f.gt then fail(file, what, "default not above gt") end
    if f.le and v > f.le then fail(file, what, "default above le") end
    if f.lt and v >= f.lt then fail(file, what, "default not below lt") end
  end
  if t == "list" and type(v) ~= "table" then fail(file, what, "default must be a list") end
  if t == "object" and not (type(v) == "table") then fail(file, what, "default must be a table ({} = all defaults)") end
end

validate_type = function(file, what, f, acc, is_field)
  local keys = FIELD_KEYS
  for k in pairs(f) do
    if type(k) == "string" and not keys[k] and k ~= "name" and k ~= "object_name" then
      fail(file, what, "unknown key '" .. k .. "'")
    end
  end
  if not TYPES[f.type] then fail(file, what, "type '" .. tostring(f.type) .. "' is not one of the known types") end
  if is_field then
    if type(f.doc) ~= "string" or #f.doc < 8 then fail(file, what, "doc is missing or too short") end
  end
  check_bounds(file, what, f)
  if f.type == "enum" then
    if type(f.values) ~= "table" or #f.values == 0 then fail(file, what, "enum needs a non-empty values list") end
    local seen = {}
    for _, v in ipairs(f.values) do
      if type(v) ~= "string" then fail(file, what, "enum values must be strings") end
      if seen[v] then fail(file, what, "enum value '" .. v .. "' repeated") end
      seen[v] = true
    end
  elseif f.values ~= nil then
    fail(file, what, "values only applies to enum")
  end
  if f.type == "const" and f.value == nil then fail(file, what, "const needs value") end
  if f.type == "object" then
    if type(f.object) ~= "string" then fail(file, what, "object type needs object = \"Name\"") end
  end
  if f.type == "list" then
    if type(f.items) ~= "table" then fail(file, what, "list needs items = { type = ... }") end
    validate_type(file, what .. ".items", f.items, acc, false)
  end
  if f.type == "map" then
    if type(f.map_values) ~= "table" then fail(file, what, "map needs map_values = { type = ... }") end
    validate_type(file, what .. ".map_values", f.map_values, acc, false)
  end
  if f.type == "union" then
    if type(f.variants) ~= "table" or #f.variants < 2 then fail(file, what, "union needs >= 2 variants") end
    for i, v in ipairs(f.variants) do validate_type(file, what .. ".variants[" .. i .. "]", v, acc, false) end
  end
  if f.pattern ~= nil then
    if f.type ~= "string" then fail(file, what, "pattern only applies to strings") end
    if type(f.pattern) ~= "table" or type(f.pattern.regex) ~= "string" or type(f.pattern.name) ~= "string" then
      fail(file, what, "pattern must be { regex = \"...\", name = \"...\" }")
    end
  end
  if f.default ~= nil then check_value_fits(file, what, f, f.default, acc) end
end

local function check_clauses(file, what, clauses)
  if type(clauses) ~= "table" or #clauses == 0 then fail(file, what, "clauses must be a non-empty list") end
  for i, c in ipairs(clauses) do
    if type(c) ~= "table" or type(c[1]) ~= "string" or OPS[c[2]] == nil then
      fail(file, what, "clause #" .. i .. " must be { \"path\", op [, value] } with op one of == != > >= < <= in starts_with set unset given")
    end
    if OPS[c[2]] == 1 and c[3] == nil then fail(file, what, "clause #" .. i .. " (" .. c[2] .. ") needs a value") end
  end
end

-- Resolve "a.b.c" against the backend's root object; returns the field or nil.
local function resolve_path(acc, root, path)
  local obj = acc.objects[root]
  local f
  for seg in path:gmatch("[^.]+") do
    if not obj then return nil end
    f = nil
    for _, x in ipairs(obj.fields) do if x.name == seg then f = x end end
    if not f then return nil end
    obj = nil
    if f.type == "object" then
      obj = acc.objects[f.object]
    elseif f.type == "union" then
      for _, v in ipairs(f.variants) do
        if v.type == "object" and not obj then obj = acc.objects[v.object] end
      end
    end
  end
  return f
end
M.resolve_path = resolve_path

local function check_path(acc, b, file, what, path, derived_names)
  if path:sub(1, 1) == "$" then
    local n = path:sub(2)
    if n:match("^model%.") then return end
    if not derived_names[n] then fail(file, what, "unknown derived value '" .. path .. "'") end
    return
  end
  if not resolve_path(acc, b.root, path) then
    fail(file, what, "path '" .. path .. "' does not name a field of " .. b.root)
  end
end

local function validate_backend(acc, b)
  local file = b.file
  if not acc.objects[b.root or ""] then fail(file, "backend " .. b.name, "root object '" .. tostring(b.root) .. "' not defined") end
  if type(b.doc) ~= "string" then fail(file, "backend " .. b.name, "doc missing") end
  b.rules = b.rules or {}
  b.derived = b.derived or {}
  b.equivalents = b.equivalents or {}
  local dn = {}
  for _, d in ipairs(b.derived) do
    if dn[d.name] then fail(file, "derive " .. d.name, "defined twice") end
    dn[d.name] = true
    if type(d.doc) ~= "string" then fail(file, "derive " .. d.name, "doc missing") end
    local n = (d.product and 1 or 0) + (d.quotient and 1 or 0) + (d.cases and 1 or 0)
    if n ~= 1 then fail(file, "derive " .. d.name, "needs exactly one of product, quotient, cases") end
    if d.product then for _, p in ipairs(d.product) do check_path(acc, b, file, "derive " .. d.name, p, dn) end end
    if d.quotient then
      check_path(acc, b, file, "derive " .. d.name, d.quotient[1], dn)
      for _, p in ipairs(d.quotient[2]) do check_path(acc, b, file, "derive " .. d.name, p, dn) end
    end
    if d.cases then
      for _, c in ipairs(d.cases) do
        if c.when then
          check_clauses(file, "derive " .. d.name, c.when)
          for _, cl in ipairs(c.when) do check_path(acc, b, file, "derive " .. d.name, cl[1], dn) end
        end
      end
    end
  end
  local codes = {}
  for _, r in ipairs(b.rules) do
    local what = "rule " .. tostring(r.code)
    for k in pairs(r) do
      if not RULE_KEYS[k] and k ~= "code" and k ~= "file" then fail(file, what, "unknown key '" .. k .. "'") end
    end
    if type(r.code) ~= "string" or not r.code:match("^[a-z0-9][a-z0-9-]*$") then
      fail(file, what, "code must be lowercase-kebab")
    end
    if codes[r.code] then fail(file, what, "code used twice") end
    codes[r.code] = true
    r.severity = r.severity or "error"
    if r.severity ~= "error" and r.severity ~= "warning" then fail(file, what, "severity must be error or warning") end
    if type(r.help) ~= "string" then fail(file, what, "help missing") end
    if r.kind == "divisible" then
      check_path(acc, b, file, what, r.value, dn)
      if type(r.by) ~= "table" or #r.by == 0 then fail(file, what, "divisible needs by = { paths }") end
      for _, p in ipairs(r.by) do check_path(acc, b, file, what, p, dn) end
      if r.when then check_clauses(file, what, r.when) end
    elseif r.kind == "forbid" then
      check_clauses(file, what, r.when)
      if type(r.message) ~= "string" then fail(file, what, "forbid needs message") end
    elseif r.kind == "require" then
      check_clauses(file, what, r.when)
      check_path(acc, b, file, what, r.field or "?", dn)
      if type(r.message) ~= "string" then fail(file, what, "require needs message") end
    else
      fail(file, what, "kind must be divisible, forbid or require")
    end
    for _, c in ipairs(r.when or {}) do check_path(acc, b, file, what, c[1], dn) end
    if r.at then check_path(acc, b, file, what, r.at, dn) end
    for _, k in ipairs({ "example_bad", "example_good" }) do
      if r[k] ~= nil and type(r[k]) ~= "table" then fail(file, what, k .. " must be a table (a spec fragment)") end
    end
    if r.needs_model ~= nil and type(r.needs_model) ~= "boolean" then fail(file, what, "needs_model must be a boolean") end
    -- json_schema: computed unless explicitly false
    local expressible = r.kind ~= "divisible" and not r.needs_model and r.severity == "error"
    for _, c in ipairs(r.when or {}) do
      if c[1]:sub(1, 1) == "$" then expressible = false end
    end
    if r.field and r.field:sub(1, 1) == "$" then expressible = false end
    if r.json_schema == true and not expressible then
      fail(file, what, "json_schema = true, but a divisible/needs_model/warning/derived rule cannot be JSON Schema")
    elseif r.json_schema ~= nil and type(r.json_schema) ~= "boolean" then
      fail(file, what, "json_schema must be a boolean")
    end
    if r.json_schema == nil then r.json_schema = expressible end
  end
  -- additions: envelope, notes, equivalents
  if b.envelope ~= nil then
    local env = acc.objects[b.envelope]
    if not env then fail(file, "backend " .. b.name, "envelope object '" .. tostring(b.envelope) .. "' not defined") end
    local spec
    for _, f in ipairs(env.fields) do if f.name == "spec" then spec = f end end
    if not spec or spec.type ~= "object" or spec.object ~= b.root or not spec.required then
      fail(file, "backend " .. b.name, "envelope " .. b.envelope .. " needs a required field spec of object " .. b.root)
    end
  end
  if b.notes ~= nil and type(b.notes) ~= "table" then fail(file, "backend " .. b.name, "notes must be a list of strings") end
  for _, other in ipairs(sorted_keys(b.equivalents)) do
    local what = "backend " .. b.name .. " equivalents[" .. other .. "]"
    local targets = b.equivalents[other]
    if type(targets) == "string" then targets = { targets } end
    if type(targets) ~= "table" or #targets == 0 then fail(file, what, "must be a path or a list of paths") end
    for _, t in ipairs(targets) do
      if not resolve_path(acc, b.root, t) then fail(file, what, "path '" .. tostring(t) .. "' does not name a field of " .. b.root) end
    end
    local found = false
    for _, on in ipairs(sorted_keys(acc.backends)) do
      local ob = acc.backends[on]
      if on ~= b.name and acc.objects[ob.root or ""] and resolve_path(acc, ob.root, other) then found = true end
    end
    if not found then fail(file, what, "'" .. other .. "' is not a field path of any other backend") end
  end
  for _, k in ipairs(sorted_keys(b.equivalent_notes or {})) do
    if not b.equivalents[k] then fail(file, "backend " .. b.name, "equivalent_notes[" .. k .. "] has no equivalents entry") end
  end
end

-- Load the given schema files; returns the IR or raises "file: what: message".
function M.load(paths)
  local acc = { objects = {}, object_order = {}, backends = {}, NULL = NULL }
  table.sort(paths)
  for _, p in ipairs(paths) do load_file(p, acc) end
  for _, name in ipairs(acc.object_order) do
    local o = acc.objects[name]
    if not name:match("^%u[%w]*$") then fail(o.file, "object " .. name, "name must be CamelCase") end
    if type(o.doc) ~= "string" then fail(o.file, "object " .. name, "doc missing") end
    o.c_name = o.c_name or ("nmc_" .. snake(name) .. "_t")
    local seen = {}
    for _, f in ipairs(o.fields) do
      local what = "field " .. name .. "." .. f.name
      if seen[f.name] then fail(o.file, what, "declared twice") end
      seen[f.name] = true
      if not f.name:match("^[%a_$][%w_]*$") then fail(o.file, what, "bad field name") end
      if f.removed then
        if type(f.removed) ~= "string" then fail(o.file, what, "removed must be a message string") end
        f.type = f.type or "any_object"
      end
      validate_type(o.file, what, f, acc, true)
      if f.autofill_when then
        check_clauses(o.file, what, f.autofill_when)
        if f.type ~= "object" then fail(o.file, what, "autofill_when only applies to object fields") end
      end
      if f.meta ~= nil and f.meta ~= true then fail(o.file, what, "meta must be true or absent") end
      if f.type_help ~= nil and type(f.type_help) ~= "string" then fail(o.file, what, "type_help must be a string") end
    end
  end
  -- object references resolve
  local function check_refs(file, what, t)
    if t.type == "object" and not acc.objects[t.object] then
      fail(file, what, "refers to undefined object '" .. t.object .. "'")
    end
    if t.items then check_refs(file, what, t.items) end
    if t.map_values then check_refs(file, what, t.map_values) end
    for _, v in ipairs(t.variants or {}) do check_refs(file, what, v) end
  end
  for _, name in ipairs(acc.object_order) do
    local o = acc.objects[name]
    for _, f in ipairs(o.fields) do check_refs(o.file, "field " .. name .. "." .. f.name, f) end
    for _, f in ipairs(o.fields) do
      if f.alias_of then
        local ok = false
        for _, g in ipairs(o.fields) do if g.name == f.alias_of then ok = true end end
        if not ok then fail(o.file, "field " .. name .. "." .. f.name, "alias_of names no sibling") end
      end
    end
  end
  for _, bn in ipairs(sorted_keys(acc.backends)) do validate_backend(acc, acc.backends[bn]) end
  acc.object_names = sorted_keys(acc.objects)
  acc.backend_names = sorted_keys(acc.backends)
  acc.object_order = nil
  return acc
end

return M
