-- codegen/lib/jsonenc.lua — a deterministic JSON encoder for the generators.
--
-- Same input, same bytes: object keys are sorted (byte order), numbers have one spelling,
-- strings are escaped the same way every time. Lua values map to JSON as follows:
--   nil / dsl.NULL (any table whose metatable __name is "NULL")  -> null
--   boolean -> true/false; string -> "..." (UTF-8 passed through, controls escaped)
--   integer (math.type "integer")  -> 42
--   float -> shortest %.Ng (N = 1..17) that reads back equal, with ".0" added when it
--            would otherwise look like an integer (so 0.0 stays a float: "0.0"); exponent
--            without leading zeros ("1e-08" -> "1e-8"); inf/nan are an error (not JSON).
--   table -> array when it was made with M.array(t) or has keys 1..n only (n >= 1);
--            object when made with M.object(t), when empty, or otherwise. Non-string keys of
--            an object are an error.
-- M.encode(v, { indent = 2 })  pretty-prints (indent spaces per level, "\n" at the end);
--   short arrays of scalars stay on one line. M.encode(v) gives the compact form.
-- Errors are raised as "jsonenc: <what> at <path>".
local M = {}

local ARRAY = setmetatable({}, { __name = "jsonenc.array" })
local OBJECT = setmetatable({}, { __name = "jsonenc.object" })
local kind_of = setmetatable({}, { __mode = "k" }) -- table -> ARRAY | OBJECT

function M.array(t) t = t or {}; kind_of[t] = ARRAY; return t end
function M.object(t) t = t or {}; kind_of[t] = OBJECT; return t end

local function is_null(v)
  if v == nil then return true end
  if type(v) ~= "table" then return false end
  local mt = getmetatable(v)
  return mt ~= nil and mt.__name == "NULL"
end
M.is_null = is_null

local function is_array(t)
  if kind_of[t] == ARRAY then return true end
  if kind_of[t] == OBJECT then return false end
  local n = #t
  if n == 0 then return false end
  local count = 0
  for _ in pairs(t) do count = count + 1 end
  return count == n
end
M.is_array = is_array

local function fail(what, path) error("jsonenc: " .. what .. " at " .. (path == "" and "(root)" or path), 0) end

function M.number(v, path)
  if math.type(v) == "integer" then return string.format("%d", v) end
  if v ~= v or v == math.huge or v == -math.huge then fail("non-finite number", path or "") end
  local s
  for p = 1, 17 do
    s = string.format("%." .. p .. "g", v)
    if tonumber(s) == v then break end
  end
  s = s:gsub("e([+-])0*(%d)", function(sign, d) return "e" .. (sign == "-" and "-" or "") .. d end)
  if not s:find("[%.eEn]") then s = s .. ".0" end
  return s
end

local ESC = { ['"'] = '\\"', ["\\"] = "\\\\", ["\b"] = "\\b", ["\f"] = "\\f", ["\n"] = "\\n",
  ["\r"] = "\\r", ["\t"] = "\\t" }
function M.string(s)
  return '"' .. s:gsub('[%c"\\]', function(c) return ESC[c] or string.format("\\u%04x", c:byte()) end) .. '"'
end

local function sorted_keys(t, path)
  local ks = {}
  for k in pairs(t) do
    if type(k) ~= "string" then fail("non-string object key " .. tostring(k), path) end
    ks[#ks + 1] = k
  end
  table.sort(ks)
  return ks
end

local function scalar(v)
  return is_null(v) or type(v) ~= "table"
end

local encode
encode = function(v, indent, level, path, seen)
  if is_null(v) then return "null" end
  local t = type(v)
  if t == "boolean" then return v and "true" or "false" end
  if t == "number" then return M.number(v, path) end
  if t == "string" then return M.string(v) end
  if t ~= "table" then fail("cannot encode a " .. t, path) end
  if seen[v] then fail("cycle", path) end
  seen[v] = true
  local nl, pad, pad_in, colon = "", "", "", ":"
  if indent then
    nl = "\n"; pad = string.rep(" ", indent * level); pad_in = string.rep(" ", indent * (level + 1)); colon = ": "
  end
  local res
  if is_array(v) then
    local parts, all_scalar, len = {}, true, 0
    for i = 1, #v do
      parts[i] = encode(v[i], indent, level + 1, path .. "[" .. (i - 1) .. "]", seen)
      if not scalar(v[i]) then all_scalar = false end
      len = len + #parts[i] + 2
    end
    if #parts == 0 then res = "[]"
    elseif not indent or (all_scalar and len + #pad < 90) then res = "[" .. table.concat(parts, indent and ", " or ",") .. "]"
    else res = "[" .. nl .. pad_in .. table.concat(parts, "," .. nl .. pad_in) .. nl .. pad .. "]" end
  else
    local ks = sorted_keys(v, path)
    if #ks == 0 then res = "{}"
    else
      local parts = {}
      for i, k in ipairs(ks) do
        parts[i] = M.string(k) .. colon .. encode(v[k], indent, level + 1, path .. "." .. k, seen)
      end
      res = "{" .. nl .. pad_in .. table.concat(parts, "," .. nl .. pad_in) .. nl .. pad .. "}"
    end
  end
  seen[v] = nil
  return res
end

-- Encode v; opts.indent (number) pretty-prints and ends the text with a newline.
function M.encode(v, opts)
  local indent = opts and opts.indent or nil
  local s = encode(v, indent, 0, "", {})
  if indent then s = s .. "\n" end
  return s
end

return M
