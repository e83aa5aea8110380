-- schema/lib/shared.lua — field constructors repeated in both backends' roots and envelopes.
-- Not a schema file itself (gen.lua loads only schema/*.lua); a backend file runs
--   local shared = include "lib/shared"
-- and calls these inside its object definitions. Each call builds a fresh field table.
local M = {}

-- The editor/selector key: a job may name its JSON Schema; nmc reads the last path
-- component ("automodel.schema.json" / "unsloth.schema.json") to pick the backend.
function M.schema_key()
  return field "$schema" {
    type = "string", meta = true, source = "nmc",
    doc = "Optional. The JSON Schema this file follows, for editors; any path or URL whose last component is `automodel.schema.json` or `unsloth.schema.json`. nmc uses it to pick the backend when --backend is not given.",
    example = "./automodel.schema.json",
  }
end

function M.spec_name()
  return field "name" {
    type = "string", nullable = true, default = NULL, source = "OA",
    doc = "Name of the job inside the spec. A name is generated when it is null or left out.",
  }
end

function M.output_model_removed()
  return field "output_model" {
    removed = "`output_model` was removed; name the result with `output`: {\"output\": {\"name\": \"my-model\"}}",
    source = "SRC",
    doc = "Legacy key for the output name. It is always rejected; use `output.name`.",
  }
end

function M.integrations()
  return field "integrations" {
    type = "object", object = "Integrations", nullable = true, default = NULL, source = "D",
    doc = "Experiment tracking with W&B and/or MLflow. Null or absent logs nowhere.",
  }
end

function M.deployment_config()
  return field "deployment_config" {
    type = "union", nullable = true, default = NULL, source = "SRC",
    variants = {
      { type = "string", min_len = 1, when_json = "string" },
      { type = "object", object = "DeploymentParams", when_json = "object" },
    },
    doc = "Deploy the result once training ends: either the name (`name` or `workspace/name`) of a stored deployment config, or an inline DeploymentParams object. Null or absent skips deployment.",
    notes = { "A referenced config is resolved when the job is submitted; nmc checks only its shape." },
  }
end

-- The REST request envelope <Backend>JobsJobRequest (facts §7) around a spec of `root`.
function M.envelope_fields(root)
  return {
    M.schema_key(),
    field "name" { type = "string", source = "OA",
      doc = "Job name. When left out, a name starting with the backend's name is generated." },
    field "description" { type = "string", source = "OA", doc = "Free-text description of the job." },
    field "project" { type = "string", source = "OA", doc = "Project inside the workspace that groups the job." },
    field "spec" { type = "object", object = root, required = true, source = "OA",
      doc = "The job configuration itself (the same object a bare job file holds)." },
    field "ownership" { type = "any_object", source = "OA", doc = "Ownership metadata, passed through unchanged." },
    field "custom_fields" { type = "any_object", source = "OA", doc = "Arbitrary user metadata, passed through unchanged." },
    field "output_location" { type = "string", source = "OA",
      doc = "Output location string of the REST API; the spec gives it no further meaning." },
  }
end

return M
