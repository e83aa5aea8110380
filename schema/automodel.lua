-- schema/automodel.lua — the Automodel backend job (AutomodelJobInput).
-- SAMPLE ONLY (coordinator's sketch of the DSL); the schema engineer replaces it with the
-- full definition from the facts file. See codegen/lib/dsl.lua for every key.

object "AutomodelParallelism" {
  doc = "GPU and node layout.",
  field "num_nodes" { type = "int", default = 1, gt = 0, source = "D", doc = "Number of training nodes." },
  field "num_gpus_per_node" { type = "int", default = 1, gt = 0, source = "D", doc = "GPUs on each node." },
  field "tensor_parallel_size" { type = "int", default = 1, gt = 0, source = "D", doc = "Split each layer across this many GPUs." },
  field "pipeline_parallel_size" { type = "int", default = 1, gt = 0, source = "D", doc = "Split the layer stack into stages." },
  field "context_parallel_size" { type = "int", default = 1, gt = 0, source = "D", doc = "Shard the sequence dimension." },
  field "expert_parallel_size" { type = "int", nullable = true, default = NULL, gt = 0, source = "D", doc = "Expert parallelism for MoE models." },
}

object "AutomodelBatch" {
  doc = "Batch sizes and packing.",
  field "global_batch_size" { type = "int", default = 8, gt = 0, source = "D", doc = "Samples per optimizer step over all data-parallel ranks." },
  field "micro_batch_size" { type = "int", default = 1, gt = 0, source = "D", doc = "Samples per forward/backward on each GPU." },
}

object "AutomodelJob" {
  doc = "An Automodel fine-tuning job.",
  field "model" { type = "string", required = true, source = "D", doc = "Model Entity to fine-tune." },
  field "batch" { type = "object", object = "AutomodelBatch", default = {}, source = "D", doc = "Batch sizes." },
  field "parallelism" { type = "object", object = "AutomodelParallelism", default = {}, source = "D", doc = "GPU layout." },
}

backend "automodel" {
  root = "AutomodelJob",
  doc = "Automodel: SFT and distillation on one or many GPUs.",
  derived = {
    derive "total_gpus" { product = { "parallelism.num_gpus_per_node", "parallelism.num_nodes" }, doc = "GPUs in the job." },
    derive "data_parallel_size" { quotient = { "$total_gpus", { "parallelism.tensor_parallel_size", "parallelism.pipeline_parallel_size", "parallelism.context_parallel_size" } }, doc = "Data-parallel replicas." },
  },
  rules = {
    rule "gbs-not-divisible" {
      kind = "divisible", value = "batch.global_batch_size",
      by = { "batch.micro_batch_size", "$data_parallel_size" },
      help = "make global_batch_size a multiple of micro_batch_size × data_parallel_size",
      facts = "§3 rule 4",
    },
    rule "ep-needs-tp1" {
      kind = "forbid",
      when = { { "parallelism.expert_parallel_size", ">", 1 }, { "parallelism.tensor_parallel_size", ">", 1 }, { "$total_gpus", ">", 1 } },
      at = "parallelism.tensor_parallel_size",
      message = "tensor_parallel_size must be 1 when expert_parallel_size > 1 (got {parallelism.tensor_parallel_size})",
      help = "set parallelism.tensor_parallel_size to 1, or leave expert_parallel_size unset",
      facts = "§3 rule 6",
    },
  },
  equivalents = { ["batch.per_device_train_batch_size"] = { "batch.micro_batch_size", "batch.global_batch_size" } },
}
