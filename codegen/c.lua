-- codegen/c.lua — the C generator: IR (codegen/lib/dsl.lua) -> generated/schema.gen.h,
-- generated/schema.gen.c (structs, enums, descriptor tables, key lookups, rules, derived
-- values, equivalents, defaults) and generated/schema_text.gen.c (the JSON Schemas as C
-- strings, so the nmc binary needs no data files).
--
-- The descriptor types are hand-written in runtime/schema_rt.h; runtime/job.c and
-- runtime/rules.c walk them. Everything here iterates in a fixed order (declaration order
-- for fields, sorted names for objects/backends/keys), so two runs give identical bytes.
-- A definition this generator cannot express stops it with "file: what: message".
local dsl = require("dsl")
local NULL = dsl.NULL

local GENERATOR = "codegen/c.lua"

-- Named string patterns the C side implements by hand (runtime/job.c: pattern_match).
-- Matched on the regex; the name in the schema is free.
local PATTERNS = {
  ["^[a-z0-9_-]+(/[a-z0-9_-]+)?$"] = "NMC_PAT_SECRET_REF",
  ["^[A-Za-z0-9_.-]+/[A-Za-z0-9_.-]+$"] = "NMC_PAT_WORKSPACE_REF",
  ["^[\\w\\-.]+/[\\w\\-.]+$"] = "NMC_PAT_WORKSPACE_REF",
  ["^[0-9]+(,[0-9]+)*$"] = "NMC_PAT_GPU_LIST",
}

local C_KEYWORDS = {}
for w in ([[auto break case char const continue default do double else enum extern float for goto
  if inline int long register restrict return short signed sizeof static struct switch typedef union
  unsigned void volatile while bool true false _Bool _Complex _Imaginary]]):gmatch("%S+") do
  C_KEYWORDS[w] = true
end
local RESERVED_MEMBERS = { nmc_given = 1, nmc_has = 1, nmc_null = 1, nmc_bad = 1, nmc_json = 1 }

local function fail(file, what, msg) error(string.format("%s: %s: %s", file or "?", what, msg), 0) end

-- ---- small helpers ------------------------------------------------------------------------

local function cstr(s)
  if s == nil then return "NULL" end
  local r = s:gsub('[%c"\\\128-\255]', function(ch)
    if ch == '"' then return '\\"' elseif ch == "\\" then return "\\\\"
    elseif ch == "\n" then return "\\n" elseif ch == "\t" then return "\\t"
    else return string.format("\\%03o", ch:byte()) end
  end)
  r = r:gsub("%?%?", "?\\?") -- never emit a trigraph
  return '"' .. r .. '"'
end

local function ident(s)
  local r = s:gsub("[^%w_]", "_")
  if r:match("^%d") then r = "_" .. r end
  if C_KEYWORDS[r] then r = r .. "_" end
  return r
end

local function upper_ident(s) return (ident(s):upper():gsub("^_+", "")) end

local function cnum_float(v)
  if v == math.huge then return "INFINITY" elseif v == -math.huge then return "-INFINITY" end
  for _, p in ipairs({ 15, 16, 17 }) do
    local s = string.format("%." .. p .. "g", v)
    if tonumber(s) == v then
      if not s:find("[%.eEn]") then s = s .. ".0" end
      return s
    end
  end
  return string.format("%.17g", v)
end

local function cnum_int(v)
  if v == math.mininteger then return "INT64_MIN" end
  return string.format("INT64_C(%d)", v)
end

local function comment(s)
  s = (s or ""):gsub("%s+", " "):gsub("%*/", "* /"):gsub("/%*", "/ *")
  return s
end

local function sorted(t) local r = {}; for _, v in ipairs(t) do r[#r + 1] = v end; table.sort(r); return r end

-- JSON text of a Lua value, guided by a type spec (to tell {} as list from {} as object).
local function to_json(v, t)
  if v == NULL then return "null" end
  local tv = type(v)
  if tv == "boolean" then return v and "true" or "false" end
  if tv == "number" then
    if math.type(v) == "integer" then return tostring(v) end
    if v ~= v or v == math.huge or v == -math.huge then error("non-finite default", 0) end
    for _, p in ipairs({ 15, 16, 17 }) do
      local s = string.format("%." .. p .. "g", v)
      if tonumber(s) == v then return s end
    end
  end
  if tv == "string" then
    return '"' .. v:gsub('[%c"\\]', function(c)
      if c == '"' then return '\\"' elseif c == "\\" then return "\\\\"
      elseif c == "\n" then return "\\n" else return string.format("\\u%04x", c:byte()) end
    end) .. '"'
  end
  if tv == "table" then
    local is_list = (#v > 0) or (t and t.type == "list")
    if is_list then
      local parts = {}
      for i, x in ipairs(v) do parts[i] = to_json(x, t and t.items) end
      return "[" .. table.concat(parts, ",") .. "]"
    end
    local parts = {}
    for _, k in ipairs(dsl.sorted_keys(v)) do
      parts[#parts + 1] = to_json(tostring(k)) .. ":" .. to_json(v[k], nil)
    end
    return "{" .. table.concat(parts, ",") .. "}"
  end
  error("cannot write " .. tv .. " as JSON", 0)
end

-- ---- naming -------------------------------------------------------------------------------

local function obj_prefix(o) return (o.c_name:gsub("_t$", "")) end          -- nmc_automodel_batch
local function obj_desc_sym(o) return obj_prefix(o) .. "_desc" end          -- nmc_automodel_batch_desc
local function obj_struct_tag(o) return obj_prefix(o) end
local function member_name(f) return ident(f.name) end
local function field_const(o, f) return obj_prefix(o):upper() .. "__" .. upper_ident(f.name) end
local function enum_type(o, f) return obj_prefix(o) .. "_" .. ident(f.name):lower() .. "_t" end
local function enum_names_sym(o, f) return obj_prefix(o) .. "_" .. ident(f.name):lower() .. "_names" end
local function enum_const(o, f, v) return (obj_prefix(o) .. "_" .. ident(f.name)):upper() .. "_" .. upper_ident(v) end

-- ---- storage ------------------------------------------------------------------------------

local function store_of(ir, f)
  local t = f.type
  if f.meta then return "NMC_FSTORE_NONE", nil end
  if t == "bool" then return "NMC_FSTORE_BOOL", "bool"
  elseif t == "int" then return "NMC_FSTORE_INT", "int64_t"
  elseif t == "float" then return "NMC_FSTORE_FLOAT", "double"
  elseif t == "string" then return "NMC_FSTORE_STRING", "const char *"
  elseif t == "enum" then return "NMC_FSTORE_ENUM", nil -- type set by caller
  elseif t == "object" then
    local o = ir.objects[f.object]
    if f.nullable then return "NMC_FSTORE_OBJECT_PTR", o.c_name .. " *" end
    return "NMC_FSTORE_OBJECT", o.c_name
  elseif t == "list" then
    local it = f.items.type
    if it == "string" or it == "enum" then return "NMC_FSTORE_STR_LIST", "nmc_str_list_t" end
    if it == "int" then return "NMC_FSTORE_INT_LIST", "nmc_int_list_t" end
    if it == "float" then return "NMC_FSTORE_FLOAT_LIST", "nmc_float_list_t" end
    return "NMC_FSTORE_JSON", "const nmc_json_t *"
  elseif t == "union" then return "NMC_FSTORE_UNION", "nmc_union_t"
  elseif t == "const" then
    if type(f.value) == "string" then return "NMC_FSTORE_STRING", "const char *" end
    return "NMC_FSTORE_JSON", "const nmc_json_t *"
  end
  return "NMC_FSTORE_JSON", "const nmc_json_t *" -- map, any_object
end

local JSON_KIND = { null = "NMC_JSON_NULL", boolean = "NMC_JSON_BOOL", number = "NMC_JSON_NUMBER",
  string = "NMC_JSON_STRING", array = "NMC_JSON_ARRAY", object = "NMC_JSON_OBJECT" }

local TYPE_KIND = { bool = "NMC_T_BOOL", int = "NMC_T_INT", float = "NMC_T_FLOAT", string = "NMC_T_STRING",
  enum = "NMC_T_ENUM", object = "NMC_T_OBJECT", list = "NMC_T_LIST", map = "NMC_T_MAP",
  any_object = "NMC_T_ANY_OBJECT", union = "NMC_T_UNION", const = "NMC_T_CONST" }

local function label_of(ir, t)
  local k = t.type
  if k == "bool" then return "boolean" elseif k == "int" then return "integer"
  elseif k == "float" then return "number" elseif k == "string" then return "string"
  elseif k == "enum" then return "string"
  elseif k == "object" then return "object"
  elseif k == "list" then return "array"
  elseif k == "map" then return "object"
  elseif k == "any_object" then return "object"
  elseif k == "const" then return to_json(t.value)
  elseif k == "union" then
    local parts, seen = {}, {}
    for _, v in ipairs(t.variants) do
      local l = label_of(ir, v)
      if not seen[l] then seen[l] = true; parts[#parts + 1] = l end
    end
    return table.concat(parts, " or ")
  end
  return k
end

-- ---- the generator ------------------------------------------------------------------------

return function(ir, out)
  local H, C = {}, {}
  local function h(s) H[#H + 1] = s end
  local function c(s) C[#C + 1] = s end

  local inputs = {}
  do
    local seen = {}
    for _, n in ipairs(ir.object_names) do
      local f = ir.objects[n].file
      if f and not seen[f] then seen[f] = true; inputs[#inputs + 1] = f end
    end
    for _, n in ipairs(ir.backend_names) do
      local f = ir.backends[n].file
      if f and not seen[f] then seen[f] = true; inputs[#inputs + 1] = f end
    end
    table.sort(inputs)
  end
  local banner = "/* Generated by " .. GENERATOR .. " from " .. table.concat(inputs, ", ") ..
    ".\n * DO NOT EDIT: change schema/ or codegen/c.lua and run `make gen`. */\n"

  -- check every object's fields once, before emitting anything
  for _, on in ipairs(ir.object_names) do
    local o = ir.objects[on]
    if not o.c_name:match("^[%a_][%w_]*_t$") then fail(o.file, "object " .. on, "c_name must be an identifier ending in _t") end
    local members = {}
    for _, f in ipairs(o.fields) do
      local what = "field " .. on .. "." .. f.name
      local m = f.meta and ("meta:" .. f.name) or member_name(f)
      if RESERVED_MEMBERS[m] then fail(o.file, what, "the member name " .. m .. " is reserved for bookkeeping") end
      if members[m] then fail(o.file, what, "C member name " .. m .. " collides with field " .. members[m]) end
      members[m] = f.name
      if f.pattern and not PATTERNS[f.pattern.regex] then
        fail(o.file, what, "pattern '" .. f.pattern.name .. "' (" .. f.pattern.regex ..
          ") has no hand-written C matcher: add it to nmc_pattern_t (runtime/schema_rt.h), runtime/job.c and PATTERNS in codegen/c.lua")
      end
      local function check_nested_patterns(t, w)
        if t.pattern and not PATTERNS[t.pattern.regex] then fail(o.file, w, "pattern '" .. t.pattern.name .. "' has no C matcher") end
        if t.items then check_nested_patterns(t.items, w .. ".items") end
        if t.map_values then check_nested_patterns(t.map_values, w .. ".map_values") end
        for i, v in ipairs(t.variants or {}) do check_nested_patterns(v, w .. ".variants[" .. i .. "]") end
      end
      check_nested_patterns(f, what)
      if f.alias_of then
        for _, g in ipairs(o.fields) do
          if g.name == f.alias_of and (g.type ~= f.type or g.object ~= f.object) then
            fail(o.file, what, "alias_of " .. g.name .. " must have the same type as its target")
          end
        end
      end
      if f.type == "object" and f.default ~= nil and f.default ~= NULL and type(f.default) == "table" and next(f.default) == nil then
        for _, g in ipairs(ir.objects[f.object].fields) do
          if g.required then
            fail(o.file, what, "default {} but " .. f.object .. "." .. g.name .. " is required (a default must be complete)")
          end
        end
      end
      if f.type == "enum" then
        local consts = {}
        for _, v in ipairs(f.values) do
          local k = upper_ident(v)
          if consts[k] then fail(o.file, what, "enum values '" .. consts[k] .. "' and '" .. v .. "' map to the same C name") end
          consts[k] = v
        end
      end
    end
  end

  -- path resolution against a backend root --------------------------------------------------
  local function derived_index(b, name)
    for i, d in ipairs(b.derived) do if d.name == name then return i - 1 end end
    return nil
  end

  -- returns { kind=..., chain={...}, derived=i, text=, name= } or raises
  local function resolve_ref(b, path, file, what)
    if path:sub(1, 1) == "$" then
      local n = path:sub(2)
      if n:match("^model%.") then
        return { kind = "NMC_REF_MODEL", chain = {}, derived = -1, text = path, name = n:sub(7) }
      end
      local i = derived_index(b, n)
      if not i then fail(file, what, "unknown derived value '" .. path .. "'") end
      return { kind = "NMC_REF_DERIVED", chain = {}, derived = i, text = path, name = n }
    end
    local obj = ir.objects[b.root]
    local chain, last = {}, nil
    for seg in path:gmatch("[^.]+") do
      if not obj then fail(file, what, "path '" .. path .. "' goes through a non-object") end
      local idx
      for i, f in ipairs(obj.fields) do if f.name == seg then idx = i - 1; last = f end end
      if not idx then fail(file, what, "path '" .. path .. "' does not name a field of " .. b.root) end
      chain[#chain + 1] = idx
      obj = nil
      if last.type == "object" then obj = ir.objects[last.object]
      elseif last.type == "union" then -- continues into the first object variant
        for _, v in ipairs(last.variants) do
          if v.type == "object" and not obj then obj = ir.objects[v.object] end
        end
      end
    end
    return { kind = "NMC_REF_FIELD", chain = chain, derived = -1, text = path, name = last.name }
  end

  local sym_counter = 0
  local function fresh(prefix) sym_counter = sym_counter + 1; return string.format("%s_%d", prefix, sym_counter) end

  -- emits a static chain array into `sink`, returns the C initializer of an nmc_ref_t
  local function ref_init(r, sink)
    local chain = "NULL"
    if #r.chain > 0 then
      chain = fresh("chain")
      local xs = {}
      for i, v in ipairs(r.chain) do xs[i] = tostring(v) end
      sink[#sink + 1] = string.format("static const uint16_t %s[] = { %s };", chain, table.concat(xs, ", "))
    end
    return string.format("{ .kind = %s, .n = %d, .chain = %s, .derived = %d, .text = %s, .name = %s }",
      r.kind, #r.chain, chain, r.derived, cstr(r.text), cstr(r.name))
  end

  local OPS = { ["=="] = "NMC_OP_EQ", ["!="] = "NMC_OP_NE", [">"] = "NMC_OP_GT", [">="] = "NMC_OP_GE",
    ["<"] = "NMC_OP_LT", ["<="] = "NMC_OP_LE", ["in"] = "NMC_OP_IN", starts_with = "NMC_OP_STARTS_WITH",
    set = "NMC_OP_SET", unset = "NMC_OP_UNSET", given = "NMC_OP_GIVEN" }

  local function lit_init(v, file, what)
    if v == nil or v == NULL then return "{ .kind = NMC_LIT_NULL }" end
    if type(v) == "boolean" then return string.format("{ .kind = NMC_LIT_BOOL, .b = %s }", tostring(v)) end
    if type(v) == "number" then
      if math.type(v) == "integer" then
        return string.format("{ .kind = NMC_LIT_INT, .i = %s, .d = %s }", cnum_int(v), cnum_float(v + 0.0))
      end
      return string.format("{ .kind = NMC_LIT_FLOAT, .d = %s }", cnum_float(v))
    end
    if type(v) == "string" then return string.format("{ .kind = NMC_LIT_STRING, .s = %s }", cstr(v)) end
    fail(file, what, "clause value must be null, a boolean, a number or a string")
  end

  -- emits a static clause array; returns its symbol and count
  local function clauses_sym(b, clauses, file, what, sink)
    if not clauses or #clauses == 0 then return "NULL", 0 end
    local items = {}
    for i, cl in ipairs(clauses) do
      local r = resolve_ref(b, cl[1], file, what)
      local op = OPS[cl[2]]
      if not op then fail(file, what, "clause #" .. i .. ": unknown operator " .. tostring(cl[2])) end
      local list, nlist, lit = "NULL", 0, "{ .kind = NMC_LIT_NULL }"
      if cl[2] == "in" then
        if type(cl[3]) ~= "table" or #cl[3] == 0 then fail(file, what, "clause #" .. i .. ": 'in' needs a non-empty list") end
        list = fresh("inlist")
        local ls = {}
        for j, v in ipairs(cl[3]) do ls[j] = "    " .. lit_init(v, file, what) .. "," end
        sink[#sink + 1] = string.format("static const nmc_lit_t %s[] = {\n%s\n};", list, table.concat(ls, "\n"))
        nlist = #cl[3]
      elseif cl[3] ~= nil then
        lit = lit_init(cl[3], file, what)
      end
      if cl[2] == "starts_with" and type(cl[3]) ~= "string" then fail(file, what, "clause #" .. i .. ": starts_with needs a string") end
      items[#items + 1] = string.format("    { .ref = %s, .op = %s, .lit = %s, .list = %s, .n_list = %d },",
        ref_init(r, sink), op, lit, list, nlist)
    end
    local sym = fresh("clauses")
    sink[#sink + 1] = string.format("static const nmc_clause_t %s[] = {\n%s\n};", sym, table.concat(items, "\n"))
    return sym, #clauses
  end

  -- which backends reach which objects (autofill clauses resolve against those roots)
  local reach = {}
  for _, bn in ipairs(ir.backend_names) do
    local b = ir.backends[bn]
    local seen = {}
    local function walk_t(t)
      if t.type == "object" then
        if not seen[t.object] then
          seen[t.object] = true
          reach[t.object] = reach[t.object] or {}
          reach[t.object][#reach[t.object] + 1] = b
          for _, f in ipairs(ir.objects[t.object].fields) do walk_t(f) end
        end
      end
      if t.items then walk_t(t.items) end
      if t.map_values then walk_t(t.map_values) end
      for _, v in ipairs(t.variants or {}) do walk_t(v) end
    end
    walk_t({ type = "object", object = b.root })
    if b.envelope then walk_t({ type = "object", object = b.envelope }) end
  end

  -- ---- header -----------------------------------------------------------------------------
  h("/* schema.gen.h — job structs, enums and descriptor tables for every nmc backend. */")
  h(banner)
  h("#ifndef NMC_SCHEMA_GEN_H\n#define NMC_SCHEMA_GEN_H\n#include \"schema_rt.h\"\n")
  h("/* Backends, in sorted order; nmc_schema_backends[id]. */")
  h("enum {")
  for i, bn in ipairs(ir.backend_names) do h(string.format("    NMC_BACKEND_%s = %d,", upper_ident(bn), i - 1)) end
  h(string.format("    NMC_BACKEND_COUNT = %d\n};", #ir.backend_names))
  h("extern const nmc_backend_desc_t *const nmc_schema_backends[NMC_BACKEND_COUNT];")
  for _, bn in ipairs(ir.backend_names) do h("extern const nmc_backend_desc_t nmc_backend_" .. ident(bn) .. ";") end
  h("")
  for _, bn in ipairs(ir.backend_names) do
    local b = ir.backends[bn]
    h("/* Derived values of " .. bn .. ": nmc_job_t.derived[...] */")
    h("enum {")
    for i, d in ipairs(b.derived) do
      h(string.format("    NMC_%s_DERIVED_%s = %d, /* %s */", upper_ident(bn), upper_ident(d.name), i - 1, comment(d.doc)))
    end
    h(string.format("    NMC_%s_DERIVED_COUNT = %d\n};", upper_ident(bn), #b.derived))
  end
  h("")
  h("/* Forward declarations of every job struct. */")
  for _, on in ipairs(ir.object_names) do
    local o = ir.objects[on]
    h(string.format("typedef struct %s %s;", obj_struct_tag(o), o.c_name))
  end
  h("")

  -- enums
  for _, on in ipairs(ir.object_names) do
    local o = ir.objects[on]
    for _, f in ipairs(o.fields) do
      if f.type == "enum" then
        h(string.format("/* %s.%s */\ntypedef enum {", on, f.name))
        for i, v in ipairs(f.values) do h(string.format("    %s = %d, /* \"%s\" */", enum_const(o, f, v), i - 1, comment(v))) end
        h(string.format("    %s_COUNT = %d\n} %s;", (obj_prefix(o) .. "_" .. ident(f.name)):upper(), #f.values, enum_type(o, f)))
        h(string.format("extern const char *const %s[%d];", enum_names_sym(o, f), #f.values))
      end
    end
  end
  h("")

  -- structs in dependency order (embedded members first)
  local emitted, order = {}, {}
  local function visit(on, stack)
    if emitted[on] then return end
    if stack[on] then fail(ir.objects[on].file, "object " .. on, "embeds itself (make the field nullable to hold it by pointer)") end
    stack[on] = true
    for _, f in ipairs(ir.objects[on].fields) do
      if f.type == "object" and not f.nullable then visit(f.object, stack) end
    end
    stack[on] = nil
    emitted[on] = true
    order[#order + 1] = on
  end
  for _, on in ipairs(ir.object_names) do visit(on, {}) end

  for _, on in ipairs(order) do
    local o = ir.objects[on]
    local words = (#o.fields + 63) // 64
    if words == 0 then words = 1 end
    h(string.format("/* %s (%s): %s */", on, o.file, comment(o.doc)))
    h("enum {")
    for i, f in ipairs(o.fields) do h(string.format("    %s = %d,", field_const(o, f), i - 1)) end
    h(string.format("    %s__N_FIELDS = %d\n};", obj_prefix(o):upper(), #o.fields))
    h(string.format("struct %s {", obj_struct_tag(o)))
    for _, f in ipairs(o.fields) do
      local _, ctype = store_of(ir, f)
      if f.type == "enum" then ctype = enum_type(o, f) end
      if ctype then
        local sep = ctype:sub(-1) == "*" and "" or " "
        h(string.format("    %s%s%s; /* %s */", ctype, sep, member_name(f), comment(f.doc)))
      end
    end
    h(string.format("    uint64_t nmc_given[%d]; /* bit per field: written by the user */", words))
    h(string.format("    uint64_t nmc_has[%d];   /* bit per field: holds a value (written or default) */", words))
    h(string.format("    uint64_t nmc_null[%d];  /* bit per field: null */", words))
    h(string.format("    uint64_t nmc_bad[%d];   /* bit per field: written value failed validation */", words))
    h("    const nmc_json_t *nmc_json; /* source object, NULL when defaulted */")
    h("};")
    h(string.format("extern const nmc_object_desc_t %s;\n", obj_desc_sym(o)))
  end
  h("#endif")

  -- ---- source -----------------------------------------------------------------------------
  c("/* schema.gen.c — descriptor tables, key lookups, rules and derived values. */")
  c(banner)
  c("#include \"schema.gen.h\"\n#include <math.h>\n#include <stddef.h>\n#include <string.h>\n")

  -- enum name tables
  for _, on in ipairs(ir.object_names) do
    local o = ir.objects[on]
    for _, f in ipairs(o.fields) do
      if f.type == "enum" then
        local xs = {}
        for i, v in ipairs(f.values) do xs[i] = cstr(v) end
        c(string.format("const char *const %s[%d] = { %s };", enum_names_sym(o, f), #f.values, table.concat(xs, ", ")))
      end
    end
  end
  c("")

  -- forward declarations of descriptors (objects refer to each other)
  for _, on in ipairs(ir.object_names) do
    c(string.format("extern const nmc_object_desc_t %s;", obj_desc_sym(ir.objects[on])))
  end
  c("")

  -- type descriptors: returns the C initializer body; statics go into `sink`
  local function type_init(t, prefix, sink, o, f)
    local parts = { ".kind = " .. TYPE_KIND[t.type] }
    local bounds = {}
    if t.ge then bounds[#bounds + 1] = "NMC_B_GE"; parts[#parts + 1] = ".lo = " .. cnum_float(t.ge + 0.0) end
    if t.gt then bounds[#bounds + 1] = "NMC_B_GT"; parts[#parts + 1] = ".lo = " .. cnum_float(t.gt + 0.0) end
    if t.le then bounds[#bounds + 1] = "NMC_B_LE"; parts[#parts + 1] = ".hi = " .. cnum_float(t.le + 0.0) end
    if t.lt then bounds[#bounds + 1] = "NMC_B_LT"; parts[#parts + 1] = ".hi = " .. cnum_float(t.lt + 0.0) end
    if #bounds > 0 then parts[#parts + 1] = ".bounds = " .. table.concat(bounds, " | ") end
    if t.pattern then parts[#parts + 1] = ".pattern = " .. PATTERNS[t.pattern.regex] end
    if t.nullable then parts[#parts + 1] = ".nullable = true" end
    parts[#parts + 1] = ".when_json = " .. (t.when_json and ("(int8_t)" .. JSON_KIND[t.when_json]) or "-1")
    if t.when_json and not JSON_KIND[t.when_json] then error(prefix .. ": bad when_json " .. t.when_json, 0) end
    if t.min_len then parts[#parts + 1] = ".min_len = " .. tostring(t.min_len) end
    if t.type == "enum" then
      local names
      if f and o and t == f then
        names = enum_names_sym(o, f)
      else
        names = prefix .. "_names"
        local xs = {}
        for i, v in ipairs(t.values) do xs[i] = cstr(v) end
        sink[#sink + 1] = string.format("static const char *const %s[] = { %s };", names, table.concat(xs, ", "))
      end
      sink[#sink + 1] = string.format("static const nmc_enum_desc_t %s_enum = { %s, %d };", prefix, names, #t.values)
      parts[#parts + 1] = ".enm = &" .. prefix .. "_enum"
    end
    if t.type == "object" then parts[#parts + 1] = ".obj = &" .. obj_desc_sym(ir.objects[t.object]) end
    local sub = t.items or t.map_values
    if sub then
      local sym = prefix .. "_sub"
      local body = type_init(sub, sym, sink)
      sink[#sink + 1] = string.format("static const nmc_type_desc_t %s = { %s };", sym, body)
      parts[#parts + 1] = ".sub = &" .. sym
    end
    if t.type == "union" then
      local vs = {}
      for i, v in ipairs(t.variants) do vs[i] = "    { " .. type_init(v, prefix .. "_v" .. i, sink) .. " }," end
      sink[#sink + 1] = string.format("static const nmc_type_desc_t %s_variants[] = {\n%s\n};", prefix, table.concat(vs, "\n"))
      parts[#parts + 1] = ".variants = " .. prefix .. "_variants"
      parts[#parts + 1] = ".n_variants = " .. #t.variants
    end
    if t.type == "const" then parts[#parts + 1] = ".const_json = " .. cstr(to_json(t.value)) end
    parts[#parts + 1] = ".label = " .. cstr(label_of(ir, t))
    return table.concat(parts, ", ")
  end

  local function default_init(f, prefix, sink, store, o)
    local v = f.default
    if v == nil or v == NULL then return nil end
    if store == "NMC_FSTORE_BOOL" then return string.format("{ .b = %s }", tostring(v))
    elseif store == "NMC_FSTORE_INT" then return string.format("{ .i = %s }", cnum_int(v))
    elseif store == "NMC_FSTORE_FLOAT" then return string.format("{ .d = %s }", cnum_float(v + 0.0))
    elseif store == "NMC_FSTORE_STRING" then return string.format("{ .s = %s }", cstr(v))
    elseif store == "NMC_FSTORE_ENUM" then
      for i, x in ipairs(f.values) do
        if x == v then return string.format("{ .e = %s, .s = %s }", enum_const(o, f, x), cstr(x)) end
      end
    elseif store == "NMC_FSTORE_STR_LIST" or store == "NMC_FSTORE_INT_LIST" or store == "NMC_FSTORE_FLOAT_LIST" then
      if #v == 0 then return "{ .n = 0 }" end
      local sym = prefix .. "_def"
      local xs, ctype, key = {}, "const char *const", ".sl"
      for i, x in ipairs(v) do
        if store == "NMC_FSTORE_STR_LIST" then xs[i] = cstr(x)
        elseif store == "NMC_FSTORE_INT_LIST" then xs[i] = cnum_int(x); ctype = "const int64_t"; key = ".il"
        else xs[i] = cnum_float(x + 0.0); ctype = "const double"; key = ".fl" end
      end
      sink[#sink + 1] = string.format("static %s %s[] = { %s };", ctype, sym, table.concat(xs, ", "))
      return string.format("{ %s = %s, .n = %d }", key, sym, #v)
    end
    return string.format("{ .json = %s }", cstr(to_json(v, f)))
  end

  -- key lookup: switch on length, then memcmp
  local function lookup_fn(o)
    local name = "lookup_" .. obj_prefix(o):gsub("^nmc_", "")
    local by_len, lens = {}, {}
    for i, f in ipairs(o.fields) do
      local n = #f.name
      if not by_len[n] then by_len[n] = {}; lens[#lens + 1] = n end
      by_len[n][#by_len[n] + 1] = { f.name, i - 1 }
    end
    table.sort(lens)
    local L = { string.format("static int %s(const char *k, size_t n)\n{", name) }
    if #lens > 0 then
      L[#L + 1] = "    switch (n) {"
      for _, n in ipairs(lens) do
        L[#L + 1] = string.format("    case %d:", n)
        for _, e in ipairs(by_len[n]) do
          L[#L + 1] = string.format("        if (memcmp(k, %s, %d) == 0) return %d;", cstr(e[1]), n, e[2])
        end
        L[#L + 1] = "        break;"
      end
      L[#L + 1] = "    default:\n        break;\n    }"
    else
      L[#L + 1] = "    (void)k;\n    (void)n;"
    end
    L[#L + 1] = "    return -1;\n}"
    return name, table.concat(L, "\n")
  end

  for _, on in ipairs(ir.object_names) do
    local o = ir.objects[on]
    local sink = {}
    local rows = {}
    local oid = obj_prefix(o):gsub("^nmc_", "")
    for i, f in ipairs(o.fields) do
      local what = "field " .. on .. "." .. f.name
      local prefix = "t_" .. oid .. "_" .. ident(f.name):lower()
      local store = store_of(ir, f)
      local flags = {}
      if f.required then flags[#flags + 1] = "NMC_F_REQUIRED" end
      if f.nullable then flags[#flags + 1] = "NMC_F_NULLABLE" end
      if f.default ~= nil then flags[#flags + 1] = "NMC_F_HAS_DEFAULT" end
      if f.default == NULL then flags[#flags + 1] = "NMC_F_DEFAULT_NULL" end
      if f.removed then flags[#flags + 1] = "NMC_F_REMOVED" end
      if f.alias_of then flags[#flags + 1] = "NMC_F_ALIAS" end
      if f.meta then flags[#flags + 1] = "NMC_F_META" end
      local autofill, n_autofill = "NULL", 0
      if f.autofill_when then
        flags[#flags + 1] = "NMC_F_AUTOFILL"
        local bs = reach[on] or {}
        if #bs == 0 then fail(o.file, what, "autofill_when on an object no backend reaches") end
        local first_sig
        for _, b in ipairs(bs) do
          local sig = {}
          for _, cl in ipairs(f.autofill_when) do
            local r = resolve_ref(b, cl[1], o.file, what .. " autofill_when")
            sig[#sig + 1] = r.kind .. ":" .. table.concat(r.chain, ",") .. ":" .. r.derived
          end
          sig = table.concat(sig, ";")
          if first_sig and sig ~= first_sig then
            fail(o.file, what, "autofill_when paths resolve differently in backends " .. bs[1].name .. " and " .. b.name)
          end
          first_sig = sig
        end
        autofill, n_autofill = clauses_sym(bs[1], f.autofill_when, o.file, what .. " autofill_when", sink)
      end
      if #flags == 0 then flags[1] = "0" end
      local alias = -1
      if f.alias_of then
        for j, g in ipairs(o.fields) do if g.name == f.alias_of then alias = j - 1 end end
      end
      local ok, tinit = pcall(type_init, f, prefix, sink, o, f)
      if not ok then fail(o.file, what, tostring(tinit)) end
      local ok2, dinit = pcall(default_init, f, prefix, sink, store, o)
      if not ok2 then fail(o.file, what, tostring(dinit)) end
      local L = {
        "    {",
        string.format("        .name = %s, .name_len = %d, .index = %d, .store = %s,", cstr(f.name), #f.name, i - 1, store),
        string.format("        .flags = %s,", table.concat(flags, " | ")),
        f.meta and "        .offset = 0, /* meta key: no member */" or string.format("        .offset = offsetof(%s, %s),", o.c_name, member_name(f)),
        string.format("        .type = { %s },", tinit),
        dinit and string.format("        .def = %s,", dinit) or nil,
        string.format("        .alias_of = %d, .removed = %s, .autofill = %s, .n_autofill = %d,", alias, cstr(f.removed), autofill, n_autofill),
        f.type_help and string.format("        .type_help = %s,", cstr(f.type_help)) or nil,
        string.format("        .doc = %s,", cstr(f.doc)),
        "    },",
      }
      local R = {}
      for j = 1, 10 do if L[j] then R[#R + 1] = L[j] end end
      rows[#rows + 1] = table.concat(R, "\n")
    end
    local lname, lcode = lookup_fn(o)
    c(string.format("/* ---- %s (%s) ---- */", on, o.file))
    for _, s in ipairs(sink) do c(s) end
    c(lcode)
    if #rows > 0 then
      c(string.format("static const nmc_field_desc_t fields_%s[] = {\n%s\n};", oid, table.concat(rows, "\n")))
    end
    c(string.format("const nmc_object_desc_t %s = {", obj_desc_sym(o)))
    c(string.format("    .name = %s, .c_name = %s,", cstr(on), cstr(o.c_name)))
    c(string.format("    .doc = %s,", cstr(o.doc)))
    c(string.format("    .size = sizeof(%s),", o.c_name))
    c(string.format("    .given_off = offsetof(%s, nmc_given), .has_off = offsetof(%s, nmc_has),", o.c_name, o.c_name))
    c(string.format("    .null_off = offsetof(%s, nmc_null), .bad_off = offsetof(%s, nmc_bad),", o.c_name, o.c_name))
    c(string.format("    .json_off = offsetof(%s, nmc_json),", o.c_name))
    c(string.format("    .fields = %s, .n_fields = %d,", #rows > 0 and ("fields_" .. oid) or "NULL", #o.fields))
    c(string.format("    .lookup = %s,\n};\n", lname))
  end

  -- backends: rules, derived values, equivalents
  local schema_files = {}
  for _, bn in ipairs(ir.backend_names) do
    local b = ir.backends[bn]
    local sink = {}
    local bid = ident(bn)
    -- derived
    local drows = {}
    for _, d in ipairs(b.derived) do
      local what = "derive " .. d.name
      local kind, ops, nops, divs, ndivs, cases, ncases = nil, "NULL", 0, "NULL", 0, "NULL", 0
      local function refs(list)
        local xs = {}
        for i, p in ipairs(list) do xs[i] = "    " .. ref_init(resolve_ref(b, p, b.file, what), sink) .. "," end
        local sym = fresh("refs")
        sink[#sink + 1] = string.format("static const nmc_ref_t %s[] = {\n%s\n};", sym, table.concat(xs, "\n"))
        return sym, #list
      end
      if d.product then kind = "NMC_DERIVE_PRODUCT"; ops, nops = refs(d.product)
      elseif d.quotient then
        kind = "NMC_DERIVE_QUOTIENT"
        ops, nops = refs({ d.quotient[1] })
        divs, ndivs = refs(d.quotient[2])
      else
        kind = "NMC_DERIVE_CASES"
        local xs = {}
        for i, cs in ipairs(d.cases) do
          local w, nw = clauses_sym(b, cs.when, b.file, what, sink)
          if cs.value == nil then fail(b.file, what, "case #" .. i .. " has no value") end
          xs[i] = string.format("    { .when = %s, .n_when = %d, .value = %s },", w, nw, lit_init(cs.value, b.file, what))
        end
        cases = fresh("cases")
        ncases = #d.cases
        sink[#sink + 1] = string.format("static const nmc_derive_case_t %s[] = {\n%s\n};", cases, table.concat(xs, "\n"))
      end
      drows[#drows + 1] = string.format(
        "    { .name = %s, .kind = %s, .operands = %s, .n_operands = %d, .divisors = %s, .n_divisors = %d,\n      .cases = %s, .n_cases = %d, .doc = %s },",
        cstr(d.name), kind, ops, nops, divs, ndivs, cases, ncases, cstr(d.doc))
    end
    -- rules
    local rrows = {}
    for _, r in ipairs(b.rules) do
      local what = "rule " .. r.code
      local kind = ({ divisible = "NMC_RULE_DIVISIBLE", forbid = "NMC_RULE_FORBID", require = "NMC_RULE_REQUIRE" })[r.kind]
      local parts = { string.format(".code = %s, .kind = %s, .severity = %s", cstr(r.code), kind,
        r.severity == "warning" and "NMC_SEV_WARNING" or "NMC_SEV_ERROR") }
      if r.needs_model then parts[#parts + 1] = ".needs_model = true" end
      local first_field -- default `at`
      local function note_field(ref) if not first_field and ref.kind == "NMC_REF_FIELD" then first_field = ref end end
      if r.kind == "divisible" then
        local v = resolve_ref(b, r.value, b.file, what)
        note_field(v)
        parts[#parts + 1] = ".value = " .. ref_init(v, sink)
        local xs = {}
        for i, p in ipairs(r.by) do
          local ref = resolve_ref(b, p, b.file, what)
          note_field(ref)
          xs[i] = "    " .. ref_init(ref, sink) .. ","
        end
        local sym = fresh("by")
        sink[#sink + 1] = string.format("static const nmc_ref_t %s[] = {\n%s\n};", sym, table.concat(xs, "\n"))
        parts[#parts + 1] = string.format(".by = %s, .n_by = %d", sym, #r.by)
      end
      if r.when then
        for _, cl in ipairs(r.when) do note_field(resolve_ref(b, cl[1], b.file, what)) end
        local w, nw = clauses_sym(b, r.when, b.file, what, sink)
        parts[#parts + 1] = string.format(".when = %s, .n_when = %d", w, nw)
      end
      if r.kind == "require" then
        local fr = resolve_ref(b, r.field, b.file, what)
        if fr.kind ~= "NMC_REF_FIELD" then fail(b.file, what, "require.field must be a field path") end
        first_field = fr
        parts[#parts + 1] = ".field = " .. ref_init(fr, sink)
      end
      local at = r.at and resolve_ref(b, r.at, b.file, what) or first_field
      if at then parts[#parts + 1] = ".has_at = true, .at = " .. ref_init(at, sink) end
      if r.message then parts[#parts + 1] = ".message = " .. cstr(r.message) end
      parts[#parts + 1] = ".help = " .. cstr(r.help)
      if r.facts then parts[#parts + 1] = ".facts = " .. cstr(r.facts) end
      -- placeholders must resolve
      for ph in (r.message or ""):gmatch("{([^}]*)}") do resolve_ref(b, ph, b.file, what .. " message placeholder") end
      for ph in (r.help or ""):gmatch("{([^}]*)}") do resolve_ref(b, ph, b.file, what .. " help placeholder") end
      rrows[#rrows + 1] = "    { " .. table.concat(parts, ",\n      ") .. " },"
    end
    -- equivalents
    local erows = {}
    for _, k in ipairs(dsl.sorted_keys(b.equivalents)) do
      local v = b.equivalents[k]
      if type(v) == "string" then v = { v } end
      local xs = {}
      for i, p in ipairs(v) do
        resolve_ref(b, p, b.file, "equivalents[" .. k .. "]")
        xs[i] = cstr(p)
      end
      local sym = fresh("equiv")
      sink[#sink + 1] = string.format("static const char *const %s[] = { %s };", sym, table.concat(xs, ", "))
      local note = b.equivalent_notes and b.equivalent_notes[k]
      erows[#erows + 1] = string.format("    { %s, %s, %d, %s },", cstr(k), sym, #v, cstr(note))
    end
    c(string.format("/* ---- backend %s (%s) ---- */", bn, b.file))
    for _, s in ipairs(sink) do c(s) end
    if #drows > 0 then c(string.format("static const nmc_derive_desc_t derived_%s[] = {\n%s\n};", bid, table.concat(drows, "\n"))) end
    if #rrows > 0 then c(string.format("static const nmc_rule_desc_t rules_%s[] = {\n%s\n};", bid, table.concat(rrows, "\n"))) end
    if #erows > 0 then c(string.format("static const nmc_equiv_t equiv_%s[] = {\n%s\n};", bid, table.concat(erows, "\n"))) end
    schema_files[bn] = bn .. ".schema.json"
    c(string.format("extern const char nmc_schema_text_%s[];", bid))
    c(string.format("const nmc_backend_desc_t nmc_backend_%s = {", bid))
    c(string.format("    .name = %s, .id = NMC_BACKEND_%s,", cstr(bn), upper_ident(bn)))
    c(string.format("    .doc = %s,", cstr(b.doc)))
    c(string.format("    .schema_id = %s, .schema_file = %s,", cstr(b.schema_id), cstr(schema_files[bn])))
    c(string.format("    .root = &%s,", obj_desc_sym(ir.objects[b.root])))
    if b.envelope then c(string.format("    .envelope = &%s,", obj_desc_sym(ir.objects[b.envelope]))) end
    c(string.format("    .rules = %s, .n_rules = %d,", #rrows > 0 and ("rules_" .. bid) or "NULL", #rrows))
    c(string.format("    .derived = %s, .n_derived = %d,", #drows > 0 and ("derived_" .. bid) or "NULL", #drows))
    c(string.format("    .equivalents = %s, .n_equivalents = %d,", #erows > 0 and ("equiv_" .. bid) or "NULL", #erows))
    c(string.format("    .json_schema = nmc_schema_text_%s,\n};\n", bid))
  end
  local bl = {}
  for i, bn in ipairs(ir.backend_names) do bl[i] = "&nmc_backend_" .. ident(bn) end
  c(string.format("const nmc_backend_desc_t *const nmc_schema_backends[NMC_BACKEND_COUNT] = { %s };", table.concat(bl, ", ")))

  -- ---- embedded JSON Schemas --------------------------------------------------------------
  -- Run the JSON Schema generator into a capture (it is deterministic), when it exists.
  local captured = {}
  local fh = io.open("codegen/jsonschema.lua", "r")
  if fh then
    fh:close()
    local js = require("jsonschema")
    local ok, err = pcall(js, ir, {
      generated = function(rel, text) captured[rel] = text end,
      docs = function() end,
    })
    if not ok then error("running codegen/jsonschema.lua for embedding: " .. tostring(err), 0) end
  end
  local T = { "/* schema_text.gen.c — the generated JSON Schema of each backend, for `nmc schema`. */", banner,
    "#include \"schema.gen.h\"\n" }
  for _, bn in ipairs(ir.backend_names) do
    local text = captured[schema_files[bn]] or ""
    T[#T + 1] = string.format("/* generated/%s */", schema_files[bn])
    if text == "" then
      T[#T + 1] = string.format("const char nmc_schema_text_%s[] = \"\";", ident(bn))
    else
      T[#T + 1] = string.format("const char nmc_schema_text_%s[] =", ident(bn))
      local lines = {}
      for line in (text):gmatch("([^\n]*\n?)") do
        if line ~= "" then lines[#lines + 1] = "    " .. cstr(line) end
      end
      T[#T + 1] = table.concat(lines, "\n") .. ";"
    end
  end

  out.generated("schema.gen.h", table.concat(H, "\n") .. "\n")
  out.generated("schema.gen.c", table.concat(C, "\n") .. "\n")
  out.generated("schema_text.gen.c", table.concat(T, "\n") .. "\n")
end
