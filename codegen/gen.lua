-- codegen/gen.lua — `make gen`: schema/*.lua -> generated/ and docs/reference/.
--
-- Loads every schema file through lib/dsl.lua (which validates the definitions and stops
-- with "file: what: message" on a bad one), then runs each generator module in a fixed
-- order. A generator is codegen/<name>.lua returning function(ir, out), where
--   out.generated(relpath, text)  writes generated/<relpath>
--   out.docs(relpath, text)       writes docs/reference/<relpath>
-- Nothing is written unless every generator succeeds; files in the output folders that
-- no generator produced are removed (so a renamed output leaves no stale file behind).
-- Output must be byte-identical run to run: no timestamps, no absolute paths.
--
-- usage: lua5.4 codegen/gen.lua [--out DIR] [--docs DIR] [--schema DIR]
package.path = "codegen/?.lua;codegen/lib/?.lua;" .. package.path

local dsl = require("dsl")

local out_dir, docs_dir, schema_dir = "generated", "docs/reference", "schema"
local i = 1
while i <= #arg do
  local a = arg[i]
  if a == "--out" then out_dir = arg[i + 1]; i = i + 2
  elseif a == "--docs" then docs_dir = arg[i + 1]; i = i + 2
  elseif a == "--schema" then schema_dir = arg[i + 1]; i = i + 2
  else io.stderr:write("gen.lua: unknown argument " .. a .. "\n"); os.exit(2) end
end

local function list(dir, suffix)
  local p = io.popen('ls -1 "' .. dir .. '" 2>/dev/null')
  local res = {}
  for line in p:lines() do
    if suffix == nil or line:sub(-#suffix) == suffix then res[#res + 1] = line end
  end
  p:close()
  table.sort(res)
  return res
end

local files = {}
for _, f in ipairs(list(schema_dir, ".lua")) do files[#files + 1] = schema_dir .. "/" .. f end
if #files == 0 then io.stderr:write("gen.lua: no schema files in " .. schema_dir .. "\n"); os.exit(1) end

local ok, ir = pcall(dsl.load, files)
if not ok then
  io.stderr:write("codegen: bad schema definition: " .. tostring(ir) .. "\n")
  os.exit(1)
end

local outputs = {} -- list of { dir, rel, text }
local seen = {}
local function add(dir, rel, text)
  local key = dir .. "/" .. rel
  if seen[key] then error("two generators wrote " .. key, 0) end
  seen[key] = true
  outputs[#outputs + 1] = { dir = dir, rel = rel, text = text }
end
local out = {
  generated = function(rel, text) add(out_dir, rel, text) end,
  docs = function(rel, text) add(docs_dir, rel, text) end,
}

local GENERATORS = { "c", "jsonschema", "markdown" }
for _, g in ipairs(GENERATORS) do
  local f = io.open("codegen/" .. g .. ".lua", "r")
  if f then
    f:close()
    local gen = require(g)
    local gok, err = pcall(gen, ir, out)
    if not gok then
      io.stderr:write("codegen: generator " .. g .. " failed: " .. tostring(err) .. "\n")
      os.exit(1)
    end
  end
end

os.execute('mkdir -p "' .. out_dir .. '" "' .. docs_dir .. '"')
for _, dir in ipairs({ out_dir, docs_dir }) do
  for _, name in ipairs(list(dir)) do
    if not seen[dir .. "/" .. name] and name ~= "README.md" then os.remove(dir .. "/" .. name) end
  end
end
for _, o in ipairs(outputs) do
  local path = o.dir .. "/" .. o.rel
  local fh = assert(io.open(path, "wb"))
  fh:write(o.text)
  fh:close()
end
