/* test_model_config.c — config.json parsing for every supported architecture (both the
 * transformers 4 and 5 spellings), the errors with their exact codes and positions, the
 * implied tensor list, and the checkpoint-vs-config check (fixtures and hand-made
 * mismatching checkpoints). */
#include "model_config.h"
#include "safetensors.h"
#include <check.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define FIXTURES "tests/data/models"

/* Minimal sizes shared by the hand-written configs (the test adds the rest). */
#define SIZES "\"vocab_size\": 256, \"hidden_size\": 64, \"intermediate_size\": 128, " \
              "\"num_hidden_layers\": 2, \"num_attention_heads\": 4"

static nmc_arena_t *A;
static nmc_diags_t D;

static void setup(void)
{
    A = nmc_arena_new();
    nmc_diags_init(&D);
}

static void teardown(void)
{
    nmc_diags_free(&D);
    nmc_arena_free(A);
}

static int parse(const char *json, nmc_model_config_t *c)
{
    nmc_json_t *root;
    nmc_diags_free(&D); /* each parse is judged on its own diagnostics */
    nmc_diags_init(&D);
    ck_assert_int_eq(nmc_json_parse(A, json, strlen(json), "config.json", NULL, &root, &D), 0);
    return nmc_model_config_parse(A, root, "config.json", c, &D);
}

static void parse_ok(const char *json, nmc_model_config_t *c)
{
    int rc = parse(json, c);
    ck_assert_msg(rc == 0, "parse failed: %s", D.n ? D.items[0].message : "?");
    ck_assert_uint_eq(D.n_errors, 0);
}

/* Parse must fail and the first error must have `code` (and `msg` when not NULL). */
static const nmc_diag_t *parse_err(const char *json, const char *code, const char *msg)
{
    nmc_model_config_t c;
    ck_assert_int_eq(parse(json, &c), -1);
    ck_assert_uint_ge(D.n, 1);
    const nmc_diag_t *r = &D.items[0];
    ck_assert_str_eq(r->code, code);
    if (msg) ck_assert_str_eq(r->message, msg);
    return r;
}

static bool has_tensor(const nmc_model_config_t *c, const char *name, int64_t d0, int64_t d1)
{
    nmc_tensor_spec_t *v;
    size_t n = nmc_model_config_tensors(A, c, &v);
    for (size_t i = 0; i < n; i++)
        if (strcmp(v[i].name, name) == 0)
            return v[i].shape[0] == d0 && (v[i].ndim == 1 ? d1 == 0 : v[i].shape[1] == d1);
    return false;
}

/* ---- fixtures --------------------------------------------------------------------------- */
static void check_fixture(const char *dir, nmc_model_config_t *c)
{
    ck_assert_int_eq(nmc_model_config_load(A, dir, c, &D), 0);
    nmc_st_t *st;
    ck_assert_int_eq(nmc_st_open(dir, &st, &D), 0);
    ck_assert_int_eq(nmc_model_config_check_checkpoint(c, st, dir, &D), 0);
    int64_t total = 0;
    for (size_t i = 0; i < nmc_st_count(st); i++) total += nmc_st_at(st, i)->numel;
    ck_assert_int_eq(nmc_model_config_param_count(c), total);
    nmc_st_close(st);
    ck_assert_uint_eq(D.n, 0);
}

START_TEST(fixture_llama)
{
    nmc_model_config_t c;
    check_fixture(FIXTURES "/tiny-llama", &c);
    ck_assert_int_eq(c.arch, NMC_ARCH_LLAMA);
    ck_assert_str_eq(c.architecture, "LlamaForCausalLM");
    ck_assert_int_eq(c.vocab_size, 2048);
    ck_assert_int_eq(c.num_kv_heads, 2);
    ck_assert_int_eq(c.head_dim, 16);
    ck_assert_int_eq(c.rope.type, NMC_ROPE_LLAMA3); /* transformers 5: rope_parameters */
    ck_assert_double_eq(c.rope.theta, 500000.0);
    ck_assert_double_eq(c.rope.factor, 8.0);
    ck_assert_double_eq(c.rope.high_freq_factor, 4.0);
    ck_assert_double_eq(c.rope.original_max_position, 256.0);
    ck_assert_double_eq(c.rms_norm_eps, 1e-5);
    ck_assert(!c.tie_word_embeddings && !c.qk_norm && !c.qkv_bias);
    ck_assert_int_eq(c.bos_token_id, 1);
    ck_assert_int_eq(c.n_eos, 2);
    ck_assert_int_eq(c.eos_token_ids[1], 3);
    ck_assert_str_eq(c.dtype, "bfloat16");
}
END_TEST

START_TEST(fixture_qwen3)
{
    nmc_model_config_t c;
    check_fixture(FIXTURES "/tiny-qwen3", &c);
    ck_assert_int_eq(c.arch, NMC_ARCH_QWEN3);
    ck_assert(c.qk_norm && c.tie_word_embeddings && !c.qkv_bias);
    ck_assert_int_eq(c.bos_token_id, -1);
    ck_assert_int_eq(c.n_eos, 1);
    ck_assert_int_eq(c.rope.type, NMC_ROPE_DEFAULT);
    ck_assert_double_eq(c.rope.theta, 1000000.0);
    ck_assert_int_eq(c.sliding_window, 0); /* use_sliding_window false */
    ck_assert(has_tensor(&c, "model.layers.1.self_attn.k_norm.weight", 16, 0));
    ck_assert(!has_tensor(&c, "lm_head.weight", 2048, 64));
    nmc_model_config_t s;
    check_fixture(FIXTURES "/tiny-qwen3-sharded", &s);
}
END_TEST

/* ---- architectures (hand-written configs, transformers 4 spelling) ---------------------- */
START_TEST(llama2_linear_legacy)
{
    nmc_model_config_t c;
    parse_ok("{\"architectures\": [\"LlamaForCausalLM\"], " SIZES ", \"rope_theta\": 10000.0,"
             " \"rope_scaling\": {\"type\": \"linear\", \"factor\": 2.0}, \"torch_dtype\": "
             "\"float16\", \"bos_token_id\": 1, \"eos_token_id\": 2, \"attention_bias\": true,"
             " \"mlp_bias\": true}", &c);
    ck_assert_int_eq(c.num_kv_heads, 4); /* default: num_attention_heads */
    ck_assert_int_eq(c.head_dim, 16);    /* default: hidden / heads */
    ck_assert_int_eq(c.rope.type, NMC_ROPE_LINEAR);
    ck_assert_double_eq(c.rope.factor, 2.0);
    ck_assert_str_eq(c.dtype, "float16");
    ck_assert_int_eq(c.max_position_embeddings, 2048);
    ck_assert(c.qkv_bias && c.o_bias && c.mlp_bias);
    ck_assert(has_tensor(&c, "model.layers.0.self_attn.o_proj.bias", 64, 0));
    ck_assert(has_tensor(&c, "model.layers.1.mlp.down_proj.bias", 64, 0));
    ck_assert(has_tensor(&c, "model.layers.1.mlp.gate_proj.weight", 128, 64));
    ck_assert(has_tensor(&c, "lm_head.weight", 256, 64));
}
END_TEST

START_TEST(llama3_rope_type)
{
    nmc_model_config_t c;
    parse_ok("{\"architectures\": [\"LlamaForCausalLM\"], " SIZES ", \"num_key_value_heads\": 1,"
             " \"rope_theta\": 500000.0, \"rope_scaling\": {\"rope_type\": \"llama3\", \"factor\":"
             " 32.0, \"low_freq_factor\": 1.0, \"high_freq_factor\": 4.0, "
             "\"original_max_position_embeddings\": 8192}, \"eos_token_id\": [128001, 128008, "
             "128009], \"tie_word_embeddings\": true}", &c);
    ck_assert_int_eq(c.rope.type, NMC_ROPE_LLAMA3);
    ck_assert_double_eq(c.rope.factor, 32.0);
    ck_assert_double_eq(c.rope.original_max_position, 8192.0);
    ck_assert_int_eq(c.n_eos, 3);
    ck_assert_int_eq(c.eos_token_ids[2], 128009);
    ck_assert(has_tensor(&c, "model.layers.0.self_attn.k_proj.weight", 16, 64));
    ck_assert(!has_tensor(&c, "lm_head.weight", 256, 64));
}
END_TEST

START_TEST(mistral)
{
    nmc_model_config_t c;
    parse_ok("{\"architectures\": [\"MistralForCausalLM\"], " SIZES ", \"num_key_value_heads\": 2,"
             " \"sliding_window\": 4096, \"head_dim\": 16}", &c);
    ck_assert_int_eq(c.arch, NMC_ARCH_MISTRAL);
    ck_assert_int_eq(c.sliding_window, 4096);
    nmc_model_config_t n;
    parse_ok("{\"architectures\": [\"MistralForCausalLM\"], " SIZES ", \"sliding_window\": null}", &n);
    ck_assert_int_eq(n.sliding_window, 0);
}
END_TEST

START_TEST(qwen2_bias)
{
    nmc_model_config_t c;
    parse_ok("{\"architectures\": [\"Qwen2ForCausalLM\"], " SIZES ", \"num_key_value_heads\": 2,"
             " \"sliding_window\": 32768, \"use_sliding_window\": false, "
             "\"tie_word_embeddings\": true}", &c);
    ck_assert(c.qkv_bias && !c.o_bias && !c.qk_norm);
    ck_assert_int_eq(c.sliding_window, 0);
    ck_assert(has_tensor(&c, "model.layers.0.self_attn.q_proj.bias", 64, 0));
    ck_assert(has_tensor(&c, "model.layers.0.self_attn.v_proj.bias", 32, 0));
    ck_assert(!has_tensor(&c, "model.layers.0.self_attn.o_proj.bias", 64, 0));
}
END_TEST

START_TEST(qwen3_explicit_head_dim)
{
    nmc_model_config_t c;
    /* Qwen3-0.6B-like: hidden 1024, 16 heads, head_dim 128 (not hidden / heads) */
    parse_ok("{\"architectures\": [\"Qwen3ForCausalLM\"], \"vocab_size\": 256, \"hidden_size\": "
             "1024, \"intermediate_size\": 3072, \"num_hidden_layers\": 1, \"num_attention_heads\":"
             " 16, \"num_key_value_heads\": 8, \"head_dim\": 128, \"rope_theta\": 1000000, "
             "\"attention_bias\": false, \"dtype\": \"bfloat16\"}", &c);
    ck_assert_int_eq(c.head_dim, 128);
    ck_assert_double_eq(c.rope.theta, 1000000.0);
    ck_assert(has_tensor(&c, "model.layers.0.self_attn.q_proj.weight", 2048, 1024));
    ck_assert(has_tensor(&c, "model.layers.0.self_attn.o_proj.weight", 1024, 2048));
    ck_assert(has_tensor(&c, "model.layers.0.self_attn.q_norm.weight", 128, 0));
}
END_TEST

START_TEST(model_type_fallback)
{
    nmc_model_config_t c;
    parse_ok("{\"model_type\": \"qwen2\", " SIZES "}", &c);
    ck_assert_int_eq(c.arch, NMC_ARCH_QWEN2);
}
END_TEST

START_TEST(qwen3_moe)
{
    nmc_model_config_t c;
    parse_ok("{\"architectures\": [\"Qwen3MoeForCausalLM\"], " SIZES ", \"num_key_value_heads\": "
             "2, \"num_experts\": 4, \"num_experts_per_tok\": 2, \"moe_intermediate_size\": 32, "
             "\"decoder_sparse_step\": 1, \"mlp_only_layers\": [0], \"norm_topk_prob\": true, "
             "\"router_aux_loss_coef\": 0.01}", &c);
    ck_assert(nmc_arch_is_moe(c.arch));
    ck_assert_int_eq(c.moe.num_experts, 4);
    ck_assert_int_eq(c.moe.num_experts_per_tok, 2);
    ck_assert(c.moe.norm_topk_prob);
    ck_assert_double_eq(c.moe.router_aux_loss_coef, 0.01);
    ck_assert(has_tensor(&c, "model.layers.0.mlp.gate_proj.weight", 128, 64)); /* dense */
    ck_assert(!has_tensor(&c, "model.layers.0.mlp.gate.weight", 4, 64));
    ck_assert(has_tensor(&c, "model.layers.1.mlp.gate.weight", 4, 64));
    ck_assert(has_tensor(&c, "model.layers.1.mlp.experts.3.down_proj.weight", 64, 32));
    ck_assert(has_tensor(&c, "model.layers.1.self_attn.q_norm.weight", 16, 0));
}
END_TEST

START_TEST(mixtral)
{
    nmc_model_config_t c;
    parse_ok("{\"architectures\": [\"MixtralForCausalLM\"], " SIZES ", \"num_key_value_heads\": 2,"
             " \"num_local_experts\": 8, \"num_experts_per_tok\": 2, \"sliding_window\": null}", &c);
    ck_assert_int_eq(c.moe.num_experts, 8);
    ck_assert_int_eq(c.moe.moe_intermediate_size, 128);
    ck_assert(has_tensor(&c, "model.layers.1.block_sparse_moe.gate.weight", 8, 64));
    ck_assert(has_tensor(&c, "model.layers.1.block_sparse_moe.experts.7.w2.weight", 64, 128));
    ck_assert(has_tensor(&c, "model.layers.0.block_sparse_moe.experts.0.w3.weight", 128, 64));
}
END_TEST

/* ---- errors ------------------------------------------------------------------------------ */
START_TEST(unsupported_architecture)
{
    const nmc_diag_t *r = parse_err("{\n  \"architectures\": [\"GPT2LMHeadModel\"], " SIZES "}",
                                    "config-unsupported-architecture",
                                    "architecture 'GPT2LMHeadModel' is not supported");
    ck_assert_str_eq(r->expected, "LlamaForCausalLM, MistralForCausalLM, Qwen2ForCausalLM, "
                                  "Qwen3ForCausalLM, Qwen3MoeForCausalLM, MixtralForCausalLM");
    ck_assert_uint_eq(r->line, 2);
    ck_assert_uint_eq(r->col, 21);
    parse_err("{" SIZES "}", "config-unsupported-architecture",
              "config names no architecture (no \"architectures\" or \"model_type\")");
    parse_err("{\"model_type\": \"gemma\", " SIZES "}", "config-unsupported-architecture",
              "architecture 'gemma' is not supported");
}
END_TEST

START_TEST(missing_and_typed_keys)
{
    parse_err("{\"architectures\": [\"LlamaForCausalLM\"], \"vocab_size\": 256, "
              "\"intermediate_size\": 128, \"num_hidden_layers\": 2, \"num_attention_heads\": 4}",
              "config-missing-key", "missing required key \"hidden_size\"");
    const nmc_diag_t *r = parse_err("{\"architectures\": [\"LlamaForCausalLM\"],\n"
                                    "\"hidden_size\": \"64\", \"vocab_size\": 256, "
                                    "\"intermediate_size\": 128, \"num_hidden_layers\": 2, "
                                    "\"num_attention_heads\": 4}",
                                    "config-bad-type", "\"hidden_size\" must be an integer");
    ck_assert_uint_eq(r->line, 2);
    ck_assert_uint_eq(r->col, 16);
    ck_assert_str_eq(r->path, "hidden_size");
    parse_err("{\"architectures\": [\"LlamaForCausalLM\"], " SIZES ", \"tie_word_embeddings\": 1}",
              "config-bad-type", "\"tie_word_embeddings\" must be true or false");
    parse_err("{\"architectures\": [\"LlamaForCausalLM\"], " SIZES ", \"eos_token_id\": [\"x\"]}",
              "config-bad-type", "\"eos_token_id\" must be an id or a list of at most 8 ids");
    parse_err("{\"architectures\": \"LlamaForCausalLM\", " SIZES "}", "config-bad-type",
              "\"architectures\" must be a non-empty array of strings");
}
END_TEST

START_TEST(sanity_checks)
{
    parse_err("{\"architectures\": [\"LlamaForCausalLM\"], \"vocab_size\": 256, \"hidden_size\": "
              "65, \"intermediate_size\": 128, \"num_hidden_layers\": 2, \"num_attention_heads\": 4}",
              "config-inconsistent", "hidden_size 65 is not divisible by num_attention_heads 4");
    parse_err("{\"architectures\": [\"LlamaForCausalLM\"], " SIZES ", \"num_key_value_heads\": 3}",
              "config-inconsistent", "num_attention_heads 4 is not divisible by num_key_value_heads 3");
    parse_err("{\"architectures\": [\"LlamaForCausalLM\"], \"vocab_size\": 0, \"hidden_size\": 64,"
              " \"intermediate_size\": 128, \"num_hidden_layers\": 2, \"num_attention_heads\": 4}",
              "config-out-of-range", "\"vocab_size\" is 0; it must be > 0");
    parse_err("{\"architectures\": [\"LlamaForCausalLM\"], " SIZES ", \"head_dim\": 15}",
              "config-out-of-range", "head_dim 15 must be positive and even (rotary embedding pairs)");
    parse_err("{\"architectures\": [\"LlamaForCausalLM\"], " SIZES ", \"hidden_act\": \"gelu\"}",
              "config-unsupported", "hidden_act 'gelu' is not supported");
    parse_err("{\"architectures\": [\"LlamaForCausalLM\"], " SIZES ", \"rope_scaling\": "
              "{\"rope_type\": \"yarn\", \"factor\": 4.0}}",
              "config-rope-unsupported", "rope scaling type 'yarn' is not supported");
    parse_err("{\"architectures\": [\"LlamaForCausalLM\"], " SIZES ", \"rope_scaling\": "
              "{\"rope_type\": \"llama3\", \"factor\": 8.0, \"low_freq_factor\": 1.0, "
              "\"high_freq_factor\": 4.0}}",
              "config-missing-key", "missing required key \"original_max_position_embeddings\"");
    parse_err("{\"architectures\": [\"Qwen3MoeForCausalLM\"], " SIZES ", \"num_experts\": 2, "
              "\"num_experts_per_tok\": 4, \"moe_intermediate_size\": 32}",
              "config-out-of-range", NULL);
    parse_err("{\"architectures\": [\"MixtralForCausalLM\"], " SIZES ", \"num_local_experts\": 8}",
              "config-missing-key",
              "missing required key \"num_experts_per_tok\"");
}
END_TEST

START_TEST(load_missing_file)
{
    nmc_model_config_t c;
    ck_assert_int_eq(nmc_model_config_load(A, "tests/data/no-such-model", &c, &D), -1);
    ck_assert_str_eq(D.items[0].code, "io-error");
}
END_TEST

/* ---- checkpoint check ------------------------------------------------------------------ */
static char tmpdir[128];

/* Tiny Llama config: vocab 8, hidden 4, 1 layer, 2 heads, tied. Writes its checkpoint with
 * `mutate` applied: 0 exact, 1 wrong shape, 2 missing + unexpected, 3 I64 dtype. */
static nmc_st_t *tiny_checkpoint(nmc_model_config_t *c, int mutate)
{
    parse_ok("{\"architectures\": [\"LlamaForCausalLM\"], \"vocab_size\": 8, \"hidden_size\": 4, "
             "\"intermediate_size\": 6, \"num_hidden_layers\": 1, \"num_attention_heads\": 2, "
             "\"tie_word_embeddings\": true}", c);
    nmc_tensor_spec_t *v;
    size_t n = nmc_model_config_tensors(A, c, &v);
    ck_assert_uint_eq(n, 11); /* embed, 9 per layer, norm (tied) */
    static float zeros[64];
    static int64_t izeros[64];
    nmc_st_write_tensor_t *t = calloc(n, sizeof *t);
    for (size_t i = 0; i < n; i++) {
        t[i].name = v[i].name;
        t[i].dtype = NMC_ST_F32;
        t[i].ndim = v[i].ndim;
        t[i].shape[0] = v[i].shape[0];
        t[i].shape[1] = v[i].shape[1];
        t[i].data = zeros;
    }
    if (mutate == 1) t[1].shape[0] = 5; /* input_layernorm [4] -> [5] */
    if (mutate == 2) t[2].name = "model.layers.0.self_attn.qq_proj.weight";
    if (mutate == 3) t[0].dtype = NMC_ST_I64, t[0].data = izeros;
    snprintf(tmpdir, sizeof tmpdir, "/tmp/nmc-test-cfg-XXXXXX");
    ck_assert_ptr_nonnull(mkdtemp(tmpdir));
    char path[256];
    snprintf(path, sizeof path, "%s/model.safetensors", tmpdir);
    ck_assert_int_eq(nmc_st_write(path, t, n, NULL, 0, &D), 0);
    free(t);
    nmc_st_t *st;
    ck_assert_int_eq(nmc_st_open(path, &st, &D), 0);
    return st;
}

static void cleanup_tmp(nmc_st_t *st)
{
    nmc_st_close(st);
    char cmd[200];
    snprintf(cmd, sizeof cmd, "rm -rf '%s'", tmpdir);
    ck_assert_int_eq(system(cmd), 0);
}

START_TEST(checkpoint_matches)
{
    nmc_model_config_t c;
    nmc_st_t *st = tiny_checkpoint(&c, 0);
    ck_assert_int_eq(nmc_model_config_check_checkpoint(&c, st, "ckpt", &D), 0);
    ck_assert_uint_eq(D.n, 0);
    cleanup_tmp(st);
}
END_TEST

START_TEST(checkpoint_shape_mismatch)
{
    nmc_model_config_t c;
    nmc_st_t *st = tiny_checkpoint(&c, 1);
    ck_assert_int_eq(nmc_model_config_check_checkpoint(&c, st, "ckpt", &D), -1);
    ck_assert_uint_eq(D.n, 1);
    ck_assert_str_eq(D.items[0].code, "config-tensor-shape");
    ck_assert_str_eq(D.items[0].message, "tensor 'model.layers.0.input_layernorm.weight' has "
                                         "shape [5] but config.json implies [4]");
    cleanup_tmp(st);
}
END_TEST

START_TEST(checkpoint_missing_unexpected)
{
    nmc_model_config_t c;
    nmc_st_t *st = tiny_checkpoint(&c, 2);
    ck_assert_int_eq(nmc_model_config_check_checkpoint(&c, st, "ckpt", &D), -1);
    ck_assert_uint_eq(D.n, 2);
    ck_assert_str_eq(D.items[0].code, "config-tensor-missing");
    ck_assert_str_eq(D.items[0].message, "tensor 'model.layers.0.self_attn.q_proj.weight' is "
                                         "required by config.json but not in the checkpoint");
    ck_assert_str_eq(D.items[1].code, "config-tensor-unexpected");
    ck_assert_str_eq(D.items[1].message, "tensor 'model.layers.0.self_attn.qq_proj.weight' is in "
                                         "the checkpoint but not implied by config.json "
                                         "(LlamaForCausalLM)");
    cleanup_tmp(st);
}
END_TEST

START_TEST(checkpoint_bad_dtype)
{
    nmc_model_config_t c;
    nmc_st_t *st = tiny_checkpoint(&c, 3);
    ck_assert_int_eq(nmc_model_config_check_checkpoint(&c, st, "ckpt", &D), -1);
    ck_assert_uint_eq(D.n, 1);
    ck_assert_str_eq(D.items[0].code, "st-dtype-unsupported");
    ck_assert_str_eq(D.items[0].message, "tensor 'model.embed_tokens.weight' has dtype I64, "
                                         "which nmc cannot train with");
    cleanup_tmp(st);
}
END_TEST

START_TEST(checkpoint_wrong_config)
{
    /* tiny-llama's weights checked against a config with 3 layers: 9 missing tensors */
    nmc_model_config_t c;
    ck_assert_int_eq(nmc_model_config_load(A, FIXTURES "/tiny-llama", &c, &D), 0);
    c.num_layers = 3;
    nmc_st_t *st;
    ck_assert_int_eq(nmc_st_open(FIXTURES "/tiny-llama", &st, &D), 0);
    ck_assert_int_eq(nmc_model_config_check_checkpoint(&c, st, "tiny-llama", &D), -1);
    ck_assert_uint_eq(D.n_errors, 9);
    for (size_t i = 0; i < D.n; i++) {
        ck_assert_str_eq(D.items[i].code, "config-tensor-missing");
        ck_assert(strstr(D.items[i].message, "model.layers.2.") != NULL);
    }
    nmc_st_close(st);
}
END_TEST

static Suite *suite(void)
{
    Suite *s = suite_create("model_config");
    TCase *tc = tcase_create("core");
    tcase_add_checked_fixture(tc, setup, teardown);
    tcase_add_test(tc, fixture_llama);
    tcase_add_test(tc, fixture_qwen3);
    tcase_add_test(tc, llama2_linear_legacy);
    tcase_add_test(tc, llama3_rope_type);
    tcase_add_test(tc, mistral);
    tcase_add_test(tc, qwen2_bias);
    tcase_add_test(tc, qwen3_explicit_head_dim);
    tcase_add_test(tc, model_type_fallback);
    tcase_add_test(tc, qwen3_moe);
    tcase_add_test(tc, mixtral);
    tcase_add_test(tc, unsupported_architecture);
    tcase_add_test(tc, missing_and_typed_keys);
    tcase_add_test(tc, sanity_checks);
    tcase_add_test(tc, load_missing_file);
    tcase_add_test(tc, checkpoint_matches);
    tcase_add_test(tc, checkpoint_shape_mismatch);
    tcase_add_test(tc, checkpoint_missing_unexpected);
    tcase_add_test(tc, checkpoint_bad_dtype);
    tcase_add_test(tc, checkpoint_wrong_config);
    suite_add_tcase(s, tc);
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
