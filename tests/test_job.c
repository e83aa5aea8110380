/* test_job.c — the job loader at API level: defaults and autofill in the generated structs,
 * derived values, rule verdicts (including the model-dependent rules with fake model facts),
 * backend choice, the envelope, unions and aliases, and the explain JSON. The exact text
 * of every diagnostic class is covered by tests/run_cli.sh over tests/data/jobs.
 */
#include "job.h"
#include <check.h>
#include <stdlib.h>
#include <string.h>

static nmc_diags_t D;
static nmc_job_t *J;

static void setup(void) { nmc_diags_init(&D); J = NULL; }
static void teardown(void)
{
    nmc_job_free(J);
    nmc_diags_free(&D);
}

static nmc_job_status_t load(const char *text, int backend)
{
    nmc_job_opts_t o = { .backend = backend };
    nmc_job_free(J);
    nmc_diags_free(&D);
    nmc_diags_init(&D);
    J = NULL;
    return nmc_job_load_buffer(text, strlen(text), "job.json", &o, &J, &D);
}

/* the first record with this code, or NULL */
static const nmc_diag_t *find(const char *code)
{
    for (size_t i = 0; i < D.n; i++)
        if (strcmp(D.items[i].code, code) == 0) return &D.items[i];
    return NULL;
}

#define AM_NT "{\"model\": \"m\", \"dataset\": {\"training\": \"d\"}"
#define AM_MIN AM_NT ", \"training\": {}"
#define US_MIN "{\"model\": {\"name\": \"m\"}, \"dataset\": {\"path\": \"d\"}"

START_TEST(automodel_defaults)
{
    ck_assert_int_eq(load(AM_MIN "}", NMC_BACKEND_AUTOMODEL), NMC_JOB_VALID);
    const nmc_automodel_job_t *am = nmc_job_automodel(J);
    ck_assert_ptr_nonnull(am);
    ck_assert_ptr_null(nmc_job_unsloth(J));
    ck_assert_str_eq(am->model, "m");
    ck_assert_int_eq(am->batch.global_batch_size, 8);
    ck_assert_int_eq(am->batch.micro_batch_size, 1);
    ck_assert(nmc_field_has(&am->batch, NMC_AUTOMODEL_BATCH__GLOBAL_BATCH_SIZE));
    ck_assert(!nmc_field_given(&am->batch, NMC_AUTOMODEL_BATCH__GLOBAL_BATCH_SIZE));
    ck_assert(nmc_field_given(am, NMC_AUTOMODEL_JOB__MODEL));
    ck_assert_double_eq(am->optimizer.learning_rate, 5e-6);
    ck_assert_int_eq(am->training.finetuning_type, NMC_AUTOMODEL_TRAINING_FINETUNING_TYPE_LORA);
    /* lora is auto-filled for a LoRA finetuning_type */
    ck_assert_ptr_nonnull(am->training.lora);
    ck_assert_int_eq(am->training.lora->rank, 16);
    ck_assert_int_eq(am->training.lora->alpha, 32);
    ck_assert(!nmc_field_given(&am->training, NMC_AUTOMODEL_TRAINING__LORA));
    /* nullable with a null default */
    ck_assert_ptr_null(am->output);
    ck_assert(nmc_field_null(am, NMC_AUTOMODEL_JOB__OUTPUT));
    ck_assert(nmc_field_null(&am->parallelism, NMC_AUTOMODEL_PARALLELISM__EXPERT_PARALLEL_SIZE));
    ck_assert_int_eq(D.n, 0);
}
END_TEST

START_TEST(automodel_all_weights_no_autofill)
{
    ck_assert_int_eq(load("{\"model\": \"m\", \"dataset\": {\"training\": \"d\"}, \"training\": {\"finetuning_type\": \"all_weights\"}}",
                          NMC_BACKEND_AUTOMODEL), NMC_JOB_VALID);
    const nmc_automodel_job_t *am = nmc_job_automodel(J);
    ck_assert_ptr_null(am->training.lora);
    ck_assert_str_eq(J->derived[NMC_AUTOMODEL_DERIVED_OUTPUT_TYPE].v.s, "model");
}
END_TEST

START_TEST(automodel_derived)
{
    ck_assert_int_eq(load(AM_MIN ", \"batch\": {\"global_batch_size\": 64, \"micro_batch_size\": 2},"
                                 " \"parallelism\": {\"num_nodes\": 2, \"num_gpus_per_node\": 4, \"tensor_parallel_size\": 2}}",
                          NMC_BACKEND_AUTOMODEL), NMC_JOB_VALID);
    const nmc_derived_t *d = J->derived;
    ck_assert(d[NMC_AUTOMODEL_DERIVED_TOTAL_GPUS].defined);
    ck_assert_int_eq(d[NMC_AUTOMODEL_DERIVED_TOTAL_GPUS].v.i, 8);
    ck_assert_int_eq(d[NMC_AUTOMODEL_DERIVED_DATA_PARALLEL_SIZE].v.i, 4);
    ck_assert_int_eq(d[NMC_AUTOMODEL_DERIVED_GRADIENT_ACCUMULATION_STEPS].v.i, 8);
    ck_assert_int_eq(d[NMC_AUTOMODEL_DERIVED_EFFECTIVE_BATCH_SIZE].v.i, 64);
    ck_assert_str_eq(d[NMC_AUTOMODEL_DERIVED_OUTPUT_TYPE].v.s, "adapter");
}
END_TEST

START_TEST(automodel_dp_undefined_when_not_exact)
{
    ck_assert_int_eq(load(AM_MIN ", \"parallelism\": {\"num_gpus_per_node\": 3, \"tensor_parallel_size\": 2}}",
                          NMC_BACKEND_AUTOMODEL), NMC_JOB_INVALID);
    ck_assert(!J->derived[NMC_AUTOMODEL_DERIVED_DATA_PARALLEL_SIZE].defined);
    ck_assert_ptr_nonnull(find("gpus-not-divisible"));
    ck_assert_ptr_null(find("gbs-not-divisible")); /* needs DP: not reported twice */
}
END_TEST

START_TEST(gbs_rule_message_and_position)
{
    const char *src = AM_MIN ",\n\"batch\": {\"global_batch_size\": 10, \"micro_batch_size\": 4},\n"
                      "\"parallelism\": {\"num_gpus_per_node\": 2}}";
    ck_assert_int_eq(load(src, NMC_BACKEND_AUTOMODEL), NMC_JOB_INVALID);
    ck_assert_int_eq(D.n_errors, 1);
    const nmc_diag_t *r = find("gbs-not-divisible");
    ck_assert_ptr_nonnull(r);
    ck_assert_str_eq(r->message, "batch.global_batch_size 10 is not divisible by micro_batch_size × data_parallel_size"
                                 " = 4 × 2 = 8; nearest valid: 8 or 16");
    ck_assert_uint_eq(r->line, 2);
    ck_assert_uint_eq(r->col, 32);
    ck_assert_str_eq(r->path, "batch.global_batch_size");
    ck_assert_str_eq(r->pointer, "/batch/global_batch_size");
    /* the other side of the boundary */
    ck_assert_int_eq(load(AM_MIN ", \"batch\": {\"global_batch_size\": 8, \"micro_batch_size\": 4},"
                                 " \"parallelism\": {\"num_gpus_per_node\": 2}}", NMC_BACKEND_AUTOMODEL), NMC_JOB_VALID);
}
END_TEST

START_TEST(defaults_take_part_in_rules)
{
    ck_assert_int_eq(load(AM_MIN ", \"batch\": {\"micro_batch_size\": 3}}", NMC_BACKEND_AUTOMODEL), NMC_JOB_INVALID);
    const nmc_diag_t *r = find("gbs-not-divisible");
    ck_assert_ptr_nonnull(r);
    ck_assert_str_eq(r->message, "batch.global_batch_size 8 (default) is not divisible by micro_batch_size × "
                                 "data_parallel_size = 3 × 1 = 3; nearest valid: 6 or 9");
}
END_TEST

START_TEST(all_violations_reported)
{
    ck_assert_int_eq(load(AM_NT ", \"batch\": {\"global_batch_size\": 6, \"micro_batch_size\": 4,"
                                 " \"packed_sequence_size\": 64}, \"training\": {\"training_type\": \"distillation\"}}",
                          NMC_BACKEND_AUTOMODEL), NMC_JOB_INVALID);
    ck_assert_ptr_nonnull(find("gbs-not-divisible"));
    ck_assert_ptr_nonnull(find("packed-size-needs-packing"));
    ck_assert_ptr_nonnull(find("distillation-needs-teacher"));
    ck_assert_int_eq(D.n_errors, 3);
}
END_TEST

START_TEST(ep_rule_both_sides)
{
    ck_assert_int_eq(load(AM_MIN ", \"parallelism\": {\"num_gpus_per_node\": 8, \"tensor_parallel_size\": 2,"
                                 " \"expert_parallel_size\": 2}}", NMC_BACKEND_AUTOMODEL), NMC_JOB_INVALID);
    ck_assert_ptr_nonnull(find("ep-needs-tp1"));
    ck_assert_int_eq(D.n_errors, 1);
    ck_assert_int_eq(load(AM_MIN ", \"parallelism\": {\"num_gpus_per_node\": 8, \"expert_parallel_size\": 2}}",
                          NMC_BACKEND_AUTOMODEL), NMC_JOB_VALID);
}
END_TEST

START_TEST(model_facts_num_experts)
{
    ck_assert_int_eq(load(AM_MIN ", \"parallelism\": {\"num_gpus_per_node\": 4, \"expert_parallel_size\": 4}}",
                          NMC_BACKEND_AUTOMODEL), NMC_JOB_VALID);
    nmc_model_fact_t f6[] = { { "num_experts", { .kind = NMC_LIT_INT, .i = 6, .d = 6 } } };
    nmc_model_facts_t facts = { f6, 1 };
    nmc_diags_t d;
    nmc_diags_init(&d);
    ck_assert_uint_eq(nmc_job_check_model(J, &facts, &d), 1);
    ck_assert_str_eq(d.items[0].code, "ep-experts-not-divisible");
    ck_assert_str_eq(d.items[0].message, "the model's num_experts 6 is not divisible by expert_parallel_size = 4");
    ck_assert_str_eq(d.items[0].path, "parallelism.expert_parallel_size");
    nmc_diags_free(&d);
    nmc_model_fact_t f8[] = { { "num_experts", { .kind = NMC_LIT_INT, .i = 8, .d = 8 } } };
    facts.items = f8;
    nmc_diags_init(&d);
    ck_assert_uint_eq(nmc_job_check_model(J, &facts, &d), 0);
    ck_assert_uint_eq(d.n, 0);
    /* no facts: the model rules are skipped, not failed */
    ck_assert_uint_eq(nmc_job_check_model(J, NULL, &d), 0);
    nmc_diags_free(&d);
}
END_TEST

START_TEST(model_facts_tokenizer)
{
    ck_assert_int_eq(load(AM_NT ", \"training\": {\"training_type\": \"distillation\", \"teacher_model\": \"llama-8b\"}}",
                          NMC_BACKEND_AUTOMODEL), NMC_JOB_VALID);
    nmc_model_fact_t no[] = { { "teacher_same_tokenizer", { .kind = NMC_LIT_BOOL, .b = false } } };
    nmc_model_facts_t facts = { no, 1 };
    nmc_diags_t d;
    nmc_diags_init(&d);
    ck_assert_uint_eq(nmc_job_check_model(J, &facts, &d), 1);
    ck_assert_str_eq(d.items[0].code, "teacher-tokenizer-mismatch");
    ck_assert_str_eq(d.items[0].message, "teacher llama-8b does not share the student's tokenizer and vocabulary");
    nmc_diags_free(&d);
    nmc_model_fact_t yes[] = { { "teacher_same_tokenizer", { .kind = NMC_LIT_BOOL, .b = true } } };
    facts.items = yes;
    nmc_diags_init(&d);
    ck_assert_uint_eq(nmc_job_check_model(J, &facts, &d), 0);
    nmc_diags_free(&d);
}
END_TEST

START_TEST(unsloth_defaults_and_rules)
{
    ck_assert_int_eq(load(US_MIN "}", NMC_BACKEND_UNSLOTH), NMC_JOB_VALID);
    const nmc_unsloth_job_t *us = nmc_job_unsloth(J);
    ck_assert_ptr_nonnull(us);
    ck_assert(us->model.load_in_4bit);
    ck_assert_ptr_nonnull(us->training.lora);
    ck_assert_uint_eq(us->training.lora->target_modules.n, 7);
    ck_assert_str_eq(us->training.lora->target_modules.v[6], "down_proj");
    ck_assert_int_eq(us->training.lora->alpha, 16);
    ck_assert_str_eq(us->training.training_type, "sft");
    ck_assert_int_eq(J->derived[NMC_UNSLOTH_DERIVED_TOTAL_GPUS].v.i, 1);
    ck_assert_str_eq(J->derived[NMC_UNSLOTH_DERIVED_LOAD_QUANTIZATION].v.s, "4bit");
    /* the default load_in_4bit takes part in the full-weight rule */
    ck_assert_int_eq(load(US_MIN ", \"training\": {\"finetuning_type\": \"all_weights\"}}", NMC_BACKEND_UNSLOTH),
                     NMC_JOB_INVALID);
    ck_assert_ptr_nonnull(find("full-weight-4bit"));
    /* warmup_steps 0 counts as unset */
    ck_assert_int_eq(load(US_MIN ", \"schedule\": {\"warmup_steps\": 0, \"warmup_ratio\": 0.1}}", NMC_BACKEND_UNSLOTH),
                     NMC_JOB_VALID);
    ck_assert_int_eq(load(US_MIN ", \"schedule\": {\"warmup_steps\": 1, \"warmup_ratio\": 0.1}}", NMC_BACKEND_UNSLOTH),
                     NMC_JOB_INVALID);
    ck_assert_int_eq(J->derived[NMC_UNSLOTH_DERIVED_EFFECTIVE_BATCH_SIZE].v.i, 1);
}
END_TEST

START_TEST(numbers_strictness)
{
    ck_assert_int_eq(load(AM_MIN ", \"batch\": {\"global_batch_size\": 4096.0}}", NMC_BACKEND_AUTOMODEL), NMC_JOB_VALID);
    ck_assert_int_eq(nmc_job_automodel(J)->batch.global_batch_size, 4096);
    ck_assert_int_eq(load(AM_MIN ", \"batch\": {\"global_batch_size\": 1.5}}", NMC_BACKEND_AUTOMODEL), NMC_JOB_INVALID);
    ck_assert_ptr_nonnull(find("not-integer"));
    ck_assert_int_eq(load(AM_MIN ", \"batch\": {\"global_batch_size\": \"16\"}}", NMC_BACKEND_AUTOMODEL), NMC_JOB_INVALID);
    ck_assert_str_eq(find("type-mismatch")->help, "remove the quotes: 16");
    ck_assert_int_eq(load(AM_MIN ", \"optimizer\": {\"weight_decay\": -0.0}}", NMC_BACKEND_AUTOMODEL), NMC_JOB_VALID);
    ck_assert_int_eq(load(AM_MIN ", \"optimizer\": {\"learning_rate\": -0.0}}", NMC_BACKEND_AUTOMODEL), NMC_JOB_INVALID);
    ck_assert_ptr_nonnull(find("out-of-range"));
    ck_assert_int_eq(load(AM_MIN ", \"batch\": {\"global_batch_size\": 99999999999999999999}}", NMC_BACKEND_AUTOMODEL),
                     NMC_JOB_INVALID);
    ck_assert_ptr_nonnull(find("out-of-range"));
}
END_TEST

START_TEST(unknown_keys_help)
{
    ck_assert_int_eq(load(AM_MIN ", \"optimizer\": {\"warmup_step\": 3}}", NMC_BACKEND_AUTOMODEL), NMC_JOB_INVALID);
    ck_assert_str_eq(find("unknown-key")->help, "did you mean `warmup_steps`?");
    ck_assert_int_eq(load(AM_MIN ", \"schedule\": {\"warmup_steps\": 3}}", NMC_BACKEND_AUTOMODEL), NMC_JOB_INVALID);
    ck_assert_str_eq(find("other-backend-key")->help, "automodel uses optimizer.warmup_steps instead");
    ck_assert_int_eq(load(AM_NT ", \"training\": {\"warmup_steps\": 3}}", NMC_BACKEND_AUTOMODEL), NMC_JOB_INVALID);
    ck_assert_str_eq(find("unknown-key")->help, "`warmup_steps` belongs in `optimizer` for automodel");
}
END_TEST

START_TEST(envelope_and_backend_choice)
{
    ck_assert_int_eq(load("{\"name\": \"j\", \"spec\": " US_MIN "}, \"$schema\": \"x/unsloth.schema.json\"}", -1),
                     NMC_JOB_VALID);
    ck_assert(J->is_envelope);
    ck_assert_int_eq(J->backend_source, NMC_JOB_BACKEND_SCHEMA_KEY);
    ck_assert_str_eq(nmc_job_unsloth(J)->model.name, "m");
    ck_assert_str_eq(((const nmc_unsloth_job_request_t *)J->envelope)->name, "j");
    /* the option wins, with a warning */
    ck_assert_int_eq(load("{\"$schema\": \"automodel.schema.json\", \"model\": {\"name\": \"m\"}, \"dataset\": {\"path\": \"d\"}}",
                          NMC_BACKEND_UNSLOTH), NMC_JOB_VALID);
    ck_assert_ptr_nonnull(find("schema-backend-mismatch"));
    /* no choice: automodel, and a note that it would pass as unsloth */
    ck_assert_int_eq(load(US_MIN "}", -1), NMC_JOB_INVALID);
    ck_assert_int_eq(J->backend_source, NMC_JOB_BACKEND_DEFAULT);
    const nmc_diag_t *n = find("valid-as-other-backend");
    ck_assert_ptr_nonnull(n);
    ck_assert_str_eq(n->help, "run with --backend unsloth or add \"$schema\": \"unsloth.schema.json\"");
    ck_assert_ptr_eq(n, &D.items[D.n - 1]); /* last */
}
END_TEST

START_TEST(unions_and_aliases)
{
    ck_assert_int_eq(load(AM_NT ", \"training\": {\"finetuning_type\": \"lora_merged\"}, \"deployment_config\": "
                                 "{\"lora_enabled\": false}, \"integrations\": {\"wandb\": {\"run_name\": \"r1\"}}}",
                          NMC_BACKEND_AUTOMODEL), NMC_JOB_VALID);
    const nmc_automodel_job_t *am = nmc_job_automodel(J);
    ck_assert_int_eq(am->deployment_config.variant, 1);
    const nmc_deployment_params_t *dp = am->deployment_config.obj;
    ck_assert_ptr_nonnull(dp);
    ck_assert(!dp->lora_enabled);
    ck_assert_int_eq(dp->gpu, 1); /* default inside the union's object */
    ck_assert_str_eq(am->integrations->wandb->name, "r1");
    ck_assert_ptr_nonnull(find("deprecated-key"));
    ck_assert_int_eq(D.n_warnings, 1);
    ck_assert_int_eq(load(AM_MIN ", \"deployment_config\": \"ws/cfg\"}", NMC_BACKEND_AUTOMODEL), NMC_JOB_VALID);
    am = nmc_job_automodel(J);
    ck_assert_ptr_null(am->deployment_config.obj);
    ck_assert_str_eq(am->deployment_config.json->u.str.s, "ws/cfg");
    ck_assert_int_eq(load("{\"model\": {\"name\": \"m\", \"device_map\": 7}, \"dataset\": {\"path\": \"d\"}}", NMC_BACKEND_UNSLOTH), NMC_JOB_VALID);
    ck_assert_int_eq(nmc_job_unsloth(J)->model.device_map.variant, 1);
}
END_TEST

START_TEST(explain_json)
{
    ck_assert_int_eq(load(AM_MIN ", \"parallelism\": {\"num_gpus_per_node\": 2}, \"$schema\": \"automodel.schema.json\"}",
                          -1), NMC_JOB_VALID);
    char *buf = NULL;
    size_t len = 0;
    FILE *f = open_memstream(&buf, &len);
    nmc_job_explain(J, f);
    fclose(f);
    nmc_arena_t *a = nmc_arena_new();
    nmc_json_t *doc = NULL;
    nmc_diags_t d;
    nmc_diags_init(&d);
    ck_assert_int_eq(nmc_json_parse(a, buf, len, "explain", NULL, &doc, &d), 0);
    const nmc_json_t *spec = nmc_json_get(doc, "spec"), *der = nmc_json_get(doc, "derived");
    ck_assert_ptr_null(nmc_json_get(spec, "$schema"));
    ck_assert_int_eq(nmc_json_get(nmc_json_get(spec, "batch"), "global_batch_size")->u.num.i, 8);
    ck_assert_int_eq(nmc_json_get(nmc_json_get(nmc_json_get(spec, "training"), "lora"), "rank")->u.num.i, 16);
    ck_assert_int_eq(nmc_json_get(spec, "output")->kind, NMC_JSON_NULL);
    ck_assert_str_eq(nmc_json_get(der, "backend")->u.str.s, "automodel");
    ck_assert_int_eq(nmc_json_get(der, "data_parallel_size")->u.num.i, 2);
    ck_assert_int_eq(nmc_json_get(der, "gradient_accumulation_steps")->u.num.i, 4);
    ck_assert_str_eq(nmc_json_get(der, "output_type")->u.str.s, "adapter");
    nmc_diags_free(&d);
    nmc_arena_free(a);
    free(buf);
}
END_TEST

START_TEST(io_error)
{
    nmc_job_opts_t o = { .backend = -1 };
    ck_assert_int_eq(nmc_job_load_file("/nonexistent/dir/job.json", &o, &J, &D), NMC_JOB_IO_ERROR);
    ck_assert_str_eq(D.items[0].code, "io-error");
    ck_assert_ptr_nonnull(J);
    ck_assert_ptr_null(J->spec);
}
END_TEST

START_TEST(hostile_inputs_do_not_crash)
{
    static const char *inputs[] = {
        "", "null", "[]", "{", "{\"spec\": 5}", "{\"spec\": {\"spec\": {}}}", "{\"model\": {\"model\": [[[[]]]]}}",
        "{\"$schema\": null}", "{\"$schema\": \"\"}", "{\"batch\": {\"global_batch_size\": -9223372036854775808}}",
        "{\"parallelism\": {\"num_gpus_per_node\": 9223372036854775807, \"num_nodes\": 9223372036854775807}}",
        "{\"training\": {\"lora\": {\"target_modules\": [1, null, \"x\"]}}}",
    };
    for (int b = -1; b < NMC_BACKEND_COUNT; b++)
        for (size_t i = 0; i < sizeof inputs / sizeof *inputs; i++) {
            nmc_job_status_t st = load(inputs[i], b);
            ck_assert_int_eq(st, NMC_JOB_INVALID);
            ck_assert_uint_gt(D.n_errors, 0);
        }
}
END_TEST

static Suite *suite(void)
{
    Suite *s = suite_create("job");
    TCase *t = tcase_create("job");
    tcase_add_checked_fixture(t, setup, teardown);
    tcase_add_test(t, automodel_defaults);
    tcase_add_test(t, automodel_all_weights_no_autofill);
    tcase_add_test(t, automodel_derived);
    tcase_add_test(t, automodel_dp_undefined_when_not_exact);
    tcase_add_test(t, gbs_rule_message_and_position);
    tcase_add_test(t, defaults_take_part_in_rules);
    tcase_add_test(t, all_violations_reported);
    tcase_add_test(t, ep_rule_both_sides);
    tcase_add_test(t, model_facts_num_experts);
    tcase_add_test(t, model_facts_tokenizer);
    tcase_add_test(t, unsloth_defaults_and_rules);
    tcase_add_test(t, numbers_strictness);
    tcase_add_test(t, unknown_keys_help);
    tcase_add_test(t, envelope_and_backend_choice);
    tcase_add_test(t, unions_and_aliases);
    tcase_add_test(t, explain_json);
    tcase_add_test(t, io_error);
    tcase_add_test(t, hostile_inputs_do_not_crash);
    suite_add_tcase(s, t);
    return s;
}

int main(void)
{
    SRunner *r = srunner_create(suite());
    srunner_run_all(r, CK_NORMAL);
    int failed = srunner_ntests_failed(r);
    srunner_free(r);
    return failed ? 1 : 0;
}
