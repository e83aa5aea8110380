-- schema/common.lua — pieces both backends share: experiment tracking (integrations),
-- the inline deployment parameters, progress reporting.
-- Facts: /work/shared/reference/customizer-schema-facts.md §6 (integrations, DeploymentParams),
-- §1.5 / §2.6 (progress_reporting). The request envelope differs per backend only in the type
-- of `spec`, so each backend file declares its own (AutomodelJobRequest, UnslothJobRequest).
-- DSL reference: codegen/lib/dsl.lua.

object "ProgressReporting" {
  doc = "Which metrics keep a full history in the job record.",
  field "time_series_metrics" {
    type = "list", items = { type = "string", min_len = 1 }, nullable = true, default = NULL,
    source = "OA",
    doc = "Glob patterns (e.g. \"train_loss\", \"*_loss\", \"*\") naming the metrics whose every value is kept as a time series. Metrics that match no pattern still show their latest value. Null keeps the backend's choice: loss, learning rate and gradient norm.",
    example = { "train_loss", "*_lr" },
  },
}

object "WandbIntegration" {
  doc = "Weights & Biases run tracking. The block asks for tracking; it becomes active only when an API key is available.",
  field "project" { type = "string", nullable = true, default = NULL, source = "OA",
    doc = "W&B project to log into. Null uses the output name." },
  field "name" { type = "string", nullable = true, default = NULL, source = "OA",
    doc = "Display name of the run. Null uses the job id." },
  field "run_name" { type = "string", nullable = true, alias_of = "name", source = "SK",
    doc = "Old spelling of `name`. Still read, with a deprecation warning; write `name` instead." },
  field "entity" { type = "string", nullable = true, default = NULL, source = "OA",
    doc = "W&B team or user account that owns the project." },
  field "tags" { type = "list", items = { type = "string" }, nullable = true, default = NULL, source = "OA",
    doc = "Labels attached to the run, for filtering in the W&B UI." },
  field "notes" { type = "string", nullable = true, default = NULL, source = "OA",
    doc = "Free-form notes stored with the run." },
  field "base_url" { type = "string", nullable = true, default = NULL, source = "OA",
    doc = "Address of a self-hosted W&B server. Null means the public W&B cloud." },
  field "api_key_secret" {
    type = "string", nullable = true, default = NULL, source = "OA",
    pattern = { regex = "^[a-z0-9_-]+(/[a-z0-9_-]+)?$", name = "secret_ref" },
    doc = "Platform secret that holds WANDB_API_KEY: `secret` (in the job's workspace) or `workspace/secret`. Lowercase letters, digits, `_` and `-` only.",
    example = "my-team/wandb-key",
  },
}

object "MlflowIntegration" {
  doc = "MLflow run tracking. Active only when a tracking URI is known (here or in MLFLOW_TRACKING_URI).",
  field "experiment_name" { type = "string", nullable = true, default = NULL, source = "OA",
    doc = "MLflow experiment that receives the run. Null uses the output name." },
  field "name" { type = "string", nullable = true, default = NULL, source = "OA",
    doc = "Display name of the run. Null uses the job id." },
  field "tags" { type = "map", map_values = { type = "string" }, nullable = true, default = NULL, source = "OA",
    doc = "String key/value tags attached to the run." },
  field "description" { type = "string", nullable = true, default = NULL, source = "OA",
    doc = "Free-text description of the run." },
  field "tracking_uri" { type = "string", nullable = true, default = NULL, source = "OA",
    doc = "URI of the MLflow tracking server. Null falls back to the MLFLOW_TRACKING_URI environment variable." },
}

object "Integrations" {
  doc = "Optional experiment tracking; each non-null block requests one tracker.",
  field "wandb" { type = "object", object = "WandbIntegration", nullable = true, default = NULL, source = "OA",
    doc = "Weights & Biases settings; null or absent turns W&B off." },
  field "mlflow" { type = "object", object = "MlflowIntegration", nullable = true, default = NULL, source = "OA",
    doc = "MLflow settings; null or absent turns MLflow off." },
}

object "ToolCallConfig" {
  doc = "Tool-calling setup of the deployed NIM.",
  field "tool_call_parser" { type = "string", nullable = true, default = NULL, source = "JR",
    doc = "Parser the server uses to extract tool calls, for example openai, hermes, pythonic, llama3_json or mistral." },
  field "tool_call_plugin" {
    type = "string", nullable = true, default = NULL, source = "JR",
    pattern = { regex = "^[A-Za-z0-9_.-]+/[A-Za-z0-9_.-]+$", name = "workspace_fileset" },
    doc = "Fileset with a custom tool-call parser plugin, written `workspace/fileset` (letters, digits, `_`, `.`, `-`).",
    example = "default/my-parser",
  },
  field "auto_tool_choice" { type = "bool", nullable = true, default = NULL, source = "JR",
    doc = "Let the model decide on its own when to call a tool." },
}

object "DeploymentParams" {
  doc = "Inline deployment settings, used instead of a reference to a stored deployment config.",
  field "gpu" { type = "int", default = 1, gt = 0, source = "JR",
    doc = "Number of GPUs the deployment gets." },
  field "additional_envs" { type = "map", map_values = { type = "string" }, nullable = true, default = NULL, source = "JR",
    doc = "Extra environment variables passed to the NIM container." },
  field "disk_size" { type = "string", nullable = true, default = NULL, source = "JR",
    doc = "Disk size to request for the deployment, as a size string." },
  field "image_name" { type = "string", nullable = true, default = NULL, source = "JR",
    doc = "NGC image of the NIM to run. Null picks the multi-LLM NIM." },
  field "image_tag" { type = "string", nullable = true, default = NULL, source = "JR",
    doc = "Tag of that image." },
  field "lora_enabled" { type = "bool", default = true, source = "JR",
    doc = "Whether the deployment can serve LoRA adapters. A job that produces a plain adapter needs it left true." },
  field "tool_call_config" { type = "object", object = "ToolCallConfig", nullable = true, default = NULL, source = "JR",
    doc = "Tool-calling options; null leaves tool calling off." },
}
