-- codegen/jsonschema.lua — the JSON Schema generator: IR -> generated/<backend>.schema.json
-- (draft 2020-12, one per backend) and generated/rules.json (every rule with whether JSON
-- Schema can express it, and its examples, for tests).
--
-- Shape of a backend schema:
--   root: "$schema", "$id" (the backend's schema_id), "anyOf": [bare spec, request envelope]
--   "$defs": one entry per object reachable from the spec or the envelope, each with
--     "additionalProperties": false, "required", per-property type/bounds/enum/pattern/
--     default/description; nullable fields add "null"; aliases are "deprecated": true;
--     removed keys are {"not": {}} with the removal message as description.
--   The spec's $def carries "allOf": one "if"/"then" per rule whose ir json_schema is true.
--
-- Rule clauses are encoded with the semantics written at the top of lib/dsl.lua: values are
-- read after defaults, so an if/then must also hold when a key is absent and its DEFAULT
-- triggers the condition (Unsloth load_in_4bit defaults to true: all_weights with the key
-- left out must fail). Every clause becomes a schema over the spec object that is true
-- exactly when the clause holds; absent/null objects on the way read their defaults.
--
-- This module must not modify the IR: codegen/c.lua runs it a second time to embed the text.
local dsl = require("dsl")
local J = require("jsonenc")
local NULL = dsl.NULL

local GENERATOR = "codegen/jsonschema.lua"
local DRAFT = "https://json-schema.org/draft/2020-12/schema"

local function fail(what, msg) error(GENERATOR .. ": " .. what .. ": " .. msg, 0) end

local function field_of(ir, objname, name)
  for _, f in ipairs(ir.objects[objname].fields) do if f.name == name then return f end end
  return nil
end

local function sub_object(f) -- object type a path continues into (object field or union variant)
  if f.type == "object" then return f.object end
  if f.type == "union" then
    for _, v in ipairs(f.variants) do if v.type == "object" then return v.object end end
  end
  return nil
end

local function copy(v) -- deep copy of a Lua value (keeps NULL, keeps array/object shape)
  if type(v) ~= "table" or J.is_null(v) then return v end
  local r = {}
  for k, x in pairs(v) do r[k] = copy(x) end
  if J.is_array(v) then J.array(r) elseif next(v) == nil then J.object(r) end
  return r
end

-- ---- types ---------------------------------------------------------------------------------

local type_schema

local function add_bounds(s, t)
  if t.ge ~= nil then s.minimum = t.ge end
  if t.gt ~= nil then s.exclusiveMinimum = t.gt end
  if t.le ~= nil then s.maximum = t.le end
  if t.lt ~= nil then s.exclusiveMaximum = t.lt end
end

-- The schema of one value of type spec t (a field or an items/variant spec), without null.
type_schema = function(t)
  local k = t.type
  if k == "bool" then return { type = "boolean" }
  elseif k == "int" then local s = { type = "integer" }; add_bounds(s, t); return s
  elseif k == "float" then local s = { type = "number" }; add_bounds(s, t); return s
  elseif k == "string" then
    local s = { type = "string" }
    if t.min_len then s.minLength = t.min_len end
    if t.pattern then s.pattern = t.pattern.regex end
    return s
  elseif k == "enum" then return { type = "string", enum = J.array(copy(t.values)) }
  elseif k == "const" then return { const = t.value }
  elseif k == "object" then return { ["$ref"] = "#/$defs/" .. t.object }
  elseif k == "list" then return { type = "array", items = type_schema(t.items) }
  elseif k == "map" then return { type = "object", additionalProperties = type_schema(t.map_values) }
  elseif k == "any_object" then return { type = "object" }
  elseif k == "union" then
    local vs = {}
    for i, v in ipairs(t.variants) do vs[i] = type_schema(v) end
    return { anyOf = vs }
  end
  fail("type", "unknown type " .. tostring(k))
end

local function with_null(s)
  if s.anyOf and not s.type then
    local vs = {}
    for i, v in ipairs(s.anyOf) do vs[i] = v end
    vs[#vs + 1] = { type = "null" }
    return { anyOf = vs }
  elseif s.enum then
    local e = copy(s.enum); e[#e + 1] = NULL
    return { type = J.array({ s.type, "null" }), enum = J.array(e) }
  elseif type(s.type) == "string" and not s["$ref"] then
    local r = {}
    for k, v in pairs(s) do r[k] = v end
    r.type = J.array({ s.type, "null" })
    return r
  end
  return { anyOf = { s, { type = "null" } } }
end

local function field_schema(f)
  if f.removed then
    return { ["not"] = J.object(), description = "Removed: " .. f.removed }
  end
  local s = type_schema(f)
  if f.nullable then s = with_null(s) end
  s.description = f.doc
  if f.default ~= nil then s.default = copy(f.default) end
  if f.alias_of then s.deprecated = true; s.description = f.doc end
  if f.example ~= nil then s.examples = J.array({ copy(f.example) }) end
  return s
end

local function object_schema(o)
  local props, req = {}, {}
  for _, f in ipairs(o.fields) do
    props[f.name] = field_schema(f)
    if f.required then req[#req + 1] = f.name end
  end
  local s = { type = "object", description = o.doc, additionalProperties = false,
    properties = J.object(props) }
  if #req > 0 then s.required = J.array(req) end
  -- A deprecated alias and the field it stands for may not both be given (duplicate-alias).
  local dep = {}
  for _, f in ipairs(o.fields) do
    if f.alias_of then dep[f.name] = { ["not"] = { required = J.array({ f.alias_of }) } } end
  end
  if next(dep) then s.dependentSchemas = J.object(dep) end
  return s
end

-- ---- clauses -> schemas --------------------------------------------------------------------
-- Schemas are Lua tables or the booleans true/false (JSON Schema's trivial schemas).

local function any_of(list)
  local r = {}
  for _, s in ipairs(list) do
    if s == true then return true end
    if s ~= false then r[#r + 1] = s end
  end
  if #r == 0 then return false end
  if #r == 1 then return r[1] end
  return { anyOf = J.array(r) }
end

local function all_of(list)
  local r = {}
  for _, s in ipairs(list) do
    if s == false then return false end
    if s ~= true then r[#r + 1] = s end
  end
  if #r == 0 then return true end
  if #r == 1 then return r[1] end
  return { allOf = J.array(r) }
end

local function negate(s)
  if s == true then return false end
  if s == false then return true end
  if type(s) == "table" and s["not"] ~= nil and next(s, next(s)) == nil then return s["not"] end
  return { ["not"] = s }
end

-- at(P, X): X applies to the object found at path P (a list of keys) of the spec; false
-- when some object on P is absent or not an object.
local function at(P, X, i)
  i = i or 1
  if i > #P then return X end
  if X == false then return false end
  local inner = at(P, X, i + 1)
  local node
  if inner == true then node = { type = "object" }
  elseif inner.type == nil then
    node = { type = "object" }
    for k, v in pairs(inner) do node[k] = v end
  else node = all_of({ { type = "object" }, inner }) end
  return { type = "object", required = J.array({ P[i] }), properties = { [P[i]] = node } }
end

local function pattern_escape(s) return (s:gsub("[%^%$%(%)%%%.%[%]%*%+%-%?{}|\\/]", "\\%0")) end

-- Static truth of a clause for a value known at generation time. `v` is nil (missing),
-- NULL, a scalar, or the marker OBJ for an object/list value.
local OBJ = {}
local function holds(op, arg, v)
  local missing = (v == nil or v == NULL)
  if op == "set" then return not missing end
  if op == "unset" then return missing end
  if op == "given" then return false end
  if op == "==" then
    if arg == NULL then return missing end
    return (not missing) and v ~= OBJ and v == arg
  end
  if op == "!=" then
    if arg == NULL then return not missing end
    return missing or v == OBJ or v ~= arg
  end
  if missing or v == OBJ then return false end
  if op == "in" then
    for _, a in ipairs(arg) do if a == v then return true end end
    return false
  end
  if op == "starts_with" then return type(v) == "string" and v:sub(1, #arg) == arg end
  if type(v) ~= "number" then return false end
  if op == ">" then return v > arg elseif op == ">=" then return v >= arg
  elseif op == "<" then return v < arg elseif op == "<=" then return v <= arg end
  fail("clause", "unknown op " .. tostring(op))
end

-- The schema of one VALUE that makes the clause hold (null and non-null values alike).
local function value_schema(op, arg)
  if op == "set" then return { ["not"] = { type = "null" } } end
  if op == "unset" then return { type = "null" } end
  if op == "==" then
    if arg == NULL then return { type = "null" } end
    return { const = arg }
  end
  if op == "!=" then
    if arg == NULL then return { ["not"] = { type = "null" } } end
    return { ["not"] = { const = arg } }
  end
  if op == "in" then return { enum = J.array(copy(arg)) } end
  if op == "starts_with" then return { type = "string", pattern = "^" .. pattern_escape(arg) } end
  if op == ">" then return { type = "number", exclusiveMinimum = arg } end
  if op == ">=" then return { type = "number", minimum = arg } end
  if op == "<" then return { type = "number", exclusiveMaximum = arg } end
  if op == "<=" then return { type = "number", maximum = arg } end
  fail("clause", "unknown op " .. tostring(op))
end

local clause_schema, clauses_schema

local function split(path)
  local segs = {}
  for s in path:gmatch("[^.]+") do segs[#segs + 1] = s end
  return segs
end

-- Truth of the clause when the object at segs[1..i-1] reads its defaults (it is absent or
-- null). Returns a schema over the spec (true/false, or a condition for autofill fields).
local function virtual(ctx, objname, segs, i, op, arg)
  local f = field_of(ctx.ir, objname, segs[i])
  if i < #segs then return virtual(ctx, sub_object(f), segs, i + 1, op, arg) end
  if op == "given" then return false end
  if f.autofill_when then
    local af = clauses_schema(ctx, f.autofill_when)
    return any_of({ all_of({ af, holds(op, arg, OBJ) }), all_of({ negate(af), holds(op, arg, nil) }) })
  end
  local d = f.default
  if type(d) == "table" and d ~= NULL then d = OBJ end
  return holds(op, arg, d)
end

-- Schema over the spec: the clause on segs[i..] holds, the object at segs[1..i-1] being
-- present (P = segs[1..i-1]).
local function real(ctx, objname, segs, i, op, arg)
  local P = table.move(segs, 1, i - 1, 1, {})
  local s = segs[i]
  local f = field_of(ctx.ir, objname, s)
  if i < #segs then
    local inside = real(ctx, sub_object(f), segs, i + 1, op, arg)
    local not_obj = at(P, { ["not"] = { required = J.array({ s }), properties = { [s] = { type = "object" } } } })
    return any_of({ inside, all_of({ not_obj, virtual(ctx, sub_object(f), segs, i + 1, op, arg) }) })
  end
  if op == "given" then return at(P, { required = J.array({ s }) }) end
  if f.autofill_when then
    -- absent and null both take the autofill path
    local present = at(P, { required = J.array({ s }),
      properties = { [s] = all_of({ { ["not"] = { type = "null" } }, value_schema(op, arg) }) } })
    local absent = at(P, { ["not"] = { required = J.array({ s }), properties = { [s] = { ["not"] = { type = "null" } } } } })
    return any_of({ present, all_of({ absent, virtual(ctx, objname, segs, i, op, arg) }) })
  end
  local when_absent = virtual(ctx, objname, segs, i, op, arg)
  if when_absent == true then -- "properties" alone also holds when the key is absent
    return at(P, { properties = { [s] = value_schema(op, arg) } })
  end
  local present = at(P, { required = J.array({ s }), properties = { [s] = value_schema(op, arg) } })
  local absent = at(P, { ["not"] = { required = J.array({ s }) } })
  return any_of({ present, all_of({ absent, when_absent }) })
end

clause_schema = function(ctx, c)
  if c[1]:sub(1, 1) == "$" then fail("clause", "derived value " .. c[1] .. " cannot be JSON Schema") end
  return real(ctx, ctx.root, split(c[1]), 1, c[2], c[3])
end

clauses_schema = function(ctx, clauses)
  local parts = {}
  for i, c in ipairs(clauses) do parts[i] = clause_schema(ctx, c) end
  return all_of(parts)
end

local function rule_schema(ctx, r)
  local cond = clauses_schema(ctx, r.when)
  local then_s
  if r.kind == "forbid" then
    then_s = { ["not"] = J.object(), description = "error[" .. r.code .. "]: " .. r.message }
  elseif r.kind == "require" then
    then_s = clause_schema(ctx, { r.field, "set" })
    if then_s == true then return nil end
    if type(then_s) == "table" then
      local t = {}
      for k, v in pairs(then_s) do t[k] = v end
      t.description = "error[" .. r.code .. "]: " .. r.message
      then_s = t
    end
  else
    fail("rule " .. r.code, "kind " .. tostring(r.kind) .. " cannot be JSON Schema")
  end
  if cond == false then return nil end
  return { ["$comment"] = "rule " .. r.code .. " (" .. (r.facts or "nmc") .. ")", ["if"] = cond, ["then"] = then_s }
end

-- ---- per backend ---------------------------------------------------------------------------

local function reachable(ir, roots)
  local seen, order = {}, {}
  local function walk_t(t)
    if t.type == "object" then
      if not seen[t.object] then
        seen[t.object] = true
        order[#order + 1] = t.object
        for _, f in ipairs(ir.objects[t.object].fields) do walk_t(f) end
      end
    end
    if t.items then walk_t(t.items) end
    if t.map_values then walk_t(t.map_values) end
    for _, v in ipairs(t.variants or {}) do walk_t(v) end
  end
  for _, r in ipairs(roots) do walk_t({ type = "object", object = r }) end
  table.sort(order)
  return order
end

local function backend_schema(ir, b)
  local ctx = { ir = ir, root = b.root }
  local roots = { b.root }
  if b.envelope then roots[2] = b.envelope end
  local defs = {}
  for _, on in ipairs(reachable(ir, roots)) do defs[on] = object_schema(ir.objects[on]) end
  local checks = {}
  for _, r in ipairs(b.rules) do
    if r.json_schema then
      local s = rule_schema(ctx, r)
      if s then checks[#checks + 1] = s end
    end
  end
  if #checks > 0 then defs[b.root].allOf = J.array(checks) end
  local top = {
    ["$schema"] = DRAFT,
    ["$id"] = b.schema_id,
    ["$comment"] = "generated by " .. GENERATOR .. " from schema/*.lua; DO NOT EDIT (run make gen)",
    title = "nmc " .. b.name .. " job",
    description = b.doc .. " A job file is either the bare spec or the REST request envelope with the spec under \"spec\".",
    ["$defs"] = defs,
  }
  local alts = { { ["$ref"] = "#/$defs/" .. b.root } }
  if b.envelope then alts[2] = { ["$ref"] = "#/$defs/" .. b.envelope } end
  top.anyOf = J.array(alts)
  return top
end

local function rules_list(ir)
  local list = {}
  for _, bn in ipairs(ir.backend_names) do
    local b = ir.backends[bn]
    for _, r in ipairs(b.rules) do
      list[#list + 1] = {
        backend = bn, code = r.code, severity = r.severity, kind = r.kind,
        json_schema = r.json_schema and true or false, needs_model = r.needs_model and true or false,
        facts = r.facts or NULL, at = r.at or NULL,
        example_bad = r.example_bad and copy(r.example_bad) or NULL,
        example_good = r.example_good and copy(r.example_good) or NULL,
      }
    end
  end
  table.sort(list, function(a, c)
    if a.backend ~= c.backend then return a.backend < c.backend end
    return a.code < c.code
  end)
  return J.array(list)
end

return function(ir, out)
  for _, bn in ipairs(ir.backend_names) do
    local b = ir.backends[bn]
    if type(b.schema_id) ~= "string" or not b.schema_id:match("/" .. bn .. "%.schema%.json$") then
      fail("backend " .. bn, "schema_id must be a URL ending in /" .. bn .. ".schema.json")
    end
    out.generated(bn .. ".schema.json", J.encode(backend_schema(ir, b), { indent = 2 }))
  end
  local doc = {
    ["$comment"] = "generated by " .. GENERATOR .. " from schema/*.lua; DO NOT EDIT (run make gen)",
    rules = rules_list(ir),
  }
  out.generated("rules.json", J.encode(doc, { indent = 2 }))
end
