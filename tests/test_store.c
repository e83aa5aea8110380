/* test_store.c — the local store: names (including every escape attempt), home location,
 * model and fileset import by reference and by copy, resolve, list, missing-entity and
 * missing-source errors with their help text, damaged entity files, atomic writes. */
#include "store.h"
#include "model_config.h"
#include <check.h>
#include <limits.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#define FIXTURES "tests/data/models"

static char tmp[128];    /* per-test scratch: tmp/home is the store, tmp/src sources */
static char home[256];
static nmc_store_t *S;
static nmc_diags_t D;

static void sh(const char *fmt, ...) __attribute__((format(printf, 1, 2)));
static void sh(const char *fmt, ...)
{
    char cmd[2048];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(cmd, sizeof cmd, fmt, ap);
    va_end(ap);
    ck_assert_msg(system(cmd) == 0, "command failed: %s", cmd);
}

static void setup(void)
{
    snprintf(tmp, sizeof tmp, "/tmp/nmc-test-store-XXXXXX");
    ck_assert_ptr_nonnull(mkdtemp(tmp));
    snprintf(home, sizeof home, "%s/home", tmp);
    nmc_diags_init(&D);
    ck_assert_int_eq(nmc_store_open(home, &S, &D), 0);
}

static void teardown(void)
{
    nmc_store_close(S);
    nmc_diags_free(&D);
    sh("chmod -R u+w '%s' && rm -rf '%s'", tmp, tmp);
}

static void reset_diags(void)
{
    nmc_diags_free(&D);
    nmc_diags_init(&D);
}

/* A model source dir: a copy of fixture `name` (plus tokenizer.json when tok). */
static const char *model_src(const char *name, bool tok)
{
    static char p[256];
    snprintf(p, sizeof p, "%s/src-%s", tmp, name);
    sh("mkdir -p '%s' && cp %s/%s/* '%s/'", p, FIXTURES, name, p);
    if (tok) sh("echo '{}' > '%s/tokenizer.json'", p);
    return p;
}

static const nmc_diag_t *only_error(const char *code)
{
    ck_assert_uint_eq(D.n_errors, 1);
    for (size_t i = 0; i < D.n; i++)
        if (D.items[i].sev == NMC_SEV_ERROR) {
            ck_assert_str_eq(D.items[i].code, code);
            return &D.items[i];
        }
    return NULL;
}

/* ---- names ------------------------------------------------------------------------------- */
START_TEST(ref_valid)
{
    nmc_store_ref_t r;
    ck_assert_int_eq(nmc_store_parse_ref("llama-3.2_1B", "model", "model", &r, &D), 0);
    ck_assert_str_eq(r.workspace, "default");
    ck_assert_str_eq(r.name, "llama-3.2_1B");
    ck_assert_int_eq(nmc_store_parse_ref("team-a/m", "model", "model", &r, &D), 0);
    ck_assert_str_eq(r.workspace, "team-a");
    ck_assert_str_eq(r.name, "m");
    ck_assert_uint_eq(D.n, 0);
}
END_TEST

START_TEST(ref_rejected)
{
    static const struct {
        const char *ref, *why;
    } cases[] = {
        {"", "it is empty"},
        {"/etc/passwd", "absolute paths are not names"},
        {"a/b/c", "it has more than one '/' (only workspace/name)"},
        {"../x", "'.' and '..' would point outside the entity's place in the store"},
        {"ws/..", "'.' and '..' would point outside the entity's place in the store"},
        {"..", "'.' and '..' would point outside the entity's place in the store"},
        {"ws/", "it has an empty part (a leading, trailing or doubled '/')"},
        {"/", "absolute paths are not names"},
        {".hidden", "a part starts with '.' (reserved for the store's temporary files)"},
        {"a b", "character ' ' is not allowed"},
        {"ws/a\\b", "character '\\' is not allowed"},
        {"caf\xc3\xa9", "byte 0xc3 is not allowed"},
        {"a:b", "character ':' is not allowed"},
    };
    nmc_store_ref_t r;
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
        reset_diags();
        ck_assert_int_eq(nmc_store_parse_ref(cases[i].ref, "model", "--name", &r, &D), -1);
        const nmc_diag_t *e = only_error("store-invalid-name");
        char want[256];
        snprintf(want, sizeof want, "--name: invalid model name \"%s\": %s", cases[i].ref,
                 cases[i].why);
        ck_assert_str_eq(e->message, want);
        ck_assert_ptr_nonnull(e->help);
    }
    char longname[200];
    memset(longname, 'a', 129);
    longname[129] = '\0';
    reset_diags();
    ck_assert_int_eq(nmc_store_parse_ref(longname, "model", "--name", &r, &D), -1);
    longname[128] = '\0';
    ck_assert_int_eq(nmc_store_parse_ref(longname, "model", "--name", &r, &D), 0);
}
END_TEST

/* ---- home ---------------------------------------------------------------------------------- */
START_TEST(home_location)
{
    nmc_store_t *s;
    setenv("NMC_HOME", "/x/nmc-home/", 1);
    ck_assert_int_eq(nmc_store_open(NULL, &s, &D), 0);
    ck_assert_str_eq(nmc_store_home(s), "/x/nmc-home");
    nmc_store_close(s);
    unsetenv("NMC_HOME");
    setenv("XDG_DATA_HOME", "/x/data", 1);
    ck_assert_int_eq(nmc_store_open(NULL, &s, &D), 0);
    ck_assert_str_eq(nmc_store_home(s), "/x/data/nmc");
    nmc_store_close(s);
    setenv("XDG_DATA_HOME", "relative", 1); /* XDG: relative values are ignored */
    setenv("HOME", "/x/user", 1);
    ck_assert_int_eq(nmc_store_open(NULL, &s, &D), 0);
    ck_assert_str_eq(nmc_store_home(s), "/x/user/.local/share/nmc");
    nmc_store_close(s);
    unsetenv("XDG_DATA_HOME");
    unsetenv("HOME");
    ck_assert_int_eq(nmc_store_open(NULL, &s, &D), -1);
    only_error("store-home");
}
END_TEST

/* ---- models -------------------------------------------------------------------------------- */
START_TEST(model_by_reference)
{
    const char *src = model_src("tiny-llama", false);
    nmc_store_entity_t e;
    ck_assert_int_eq(nmc_store_import_model(S, src, "tiny-llama", false, &e, &D), 0);
    ck_assert_uint_eq(D.n_errors, 0);
    ck_assert_uint_eq(D.n_warnings, 1); /* no tokenizer.json */
    ck_assert_str_eq(D.items[0].code, "store-no-tokenizer");
    ck_assert(e.by_reference);
    ck_assert_str_eq(e.ref, "default/tiny-llama");
    ck_assert_str_eq(e.path, src);
    ck_assert_str_eq(e.model.architecture, "LlamaForCausalLM");
    ck_assert_str_eq(e.model.model_type, "llama");
    ck_assert_str_eq(e.model.dtype, "bfloat16");
    ck_assert_str_eq(e.model.checkpoint, "model.safetensors");
    ck_assert_int_eq(e.model.num_layers, 2);
    ck_assert_int_eq(e.model.hidden_size, 64);
    ck_assert_int_eq(e.model.vocab_size, 2048);
    ck_assert_int_eq(e.model.num_kv_heads, 2);
    ck_assert_int_eq(e.model.tensors, 21);
    ck_assert(!e.model.has_tokenizer);
    /* 2 x [2048 x 64] + 2 x (4096 + 2048 + 2048 + 4096 + 3 x 8192 + 64 + 64) + 64 */
    ck_assert_int_eq(e.model.parameters, 2 * 2048 * 64 + 2 * (12288 + 24576 + 128) + 64);
    ck_assert_int_eq(e.files, 3);
    char want[1024];
    snprintf(want, sizeof want, "%s/models/default/tiny-llama", home);
    ck_assert_str_eq(e.entity_dir, want);
    /* both spellings resolve to the same entity */
    nmc_store_entity_t r1, r2;
    reset_diags();
    ck_assert_int_eq(nmc_store_resolve_model(S, "tiny-llama", &r1, &D), 0);
    ck_assert_int_eq(nmc_store_resolve_model(S, "default/tiny-llama", &r2, &D), 0);
    ck_assert_str_eq(r1.path, src);
    ck_assert_str_eq(r2.entity_dir, want);
    ck_assert_int_eq(r1.model.parameters, e.model.parameters);
    /* the source is gone: resolve says so and how to fix it */
    sh("rm -rf '%s'", src);
    ck_assert_int_eq(nmc_store_resolve_model(S, "tiny-llama", &r1, &D), -1);
    const nmc_diag_t *x = only_error("store-source-missing");
    snprintf(want, sizeof want, "model 'default/tiny-llama' was imported by reference; its files "
                                "at %s no longer exist", src);
    ck_assert_str_eq(x->message, want);
    snprintf(want, sizeof want, "restore the files, or re-import: rm -r %s/models/default/"
                                "tiny-llama && nmc models import %s --name tiny-llama", home, src);
    ck_assert_str_eq(x->help, want);
}
END_TEST

START_TEST(model_by_copy)
{
    const char *src = model_src("tiny-qwen3-sharded", true);
    sh("mkdir '%s/extra' && echo hi > '%s/extra/notes.txt' && ln -s extra/notes.txt '%s/link.txt'",
       src, src, src);
    sh("cd '%s' && ls -lR > '%s/before.txt'", src, tmp);
    nmc_store_entity_t e;
    ck_assert_int_eq(nmc_store_import_model(S, src, "ws1/qwen", true, &e, &D), 0);
    ck_assert_uint_eq(D.n, 0);
    ck_assert(!e.by_reference);
    ck_assert(e.model.has_tokenizer);
    ck_assert_int_eq(e.model.shards, 2);
    ck_assert_str_eq(e.model.checkpoint, "model.safetensors.index.json");
    ck_assert(e.model.tie_word_embeddings);
    ck_assert_int_eq(e.files, 8); /* config, generation_config, 2 shards, index, tokenizer, 2 notes */
    char want[1024];
    snprintf(want, sizeof want, "%s/models/ws1/qwen/files", home);
    ck_assert_str_eq(e.path, want);
    ck_assert_str_eq(e.source, src);
    sh("cmp '%s/model-00001-of-00002.safetensors' '%s/model-00001-of-00002.safetensors'", src, e.path);
    sh("test -f '%s/link.txt' && ! test -L '%s/link.txt'", e.path, e.path);
    /* the source is untouched, and the store no longer needs it */
    sh("cd '%s' && ls -lR | cmp - '%s/before.txt'", src, tmp);
    sh("rm -rf '%s'", src);
    nmc_store_entity_t r;
    ck_assert_int_eq(nmc_store_resolve_model(S, "ws1/qwen", &r, &D), 0);
    ck_assert_str_eq(r.path, want);
    /* no temp directories left behind */
    sh("test -z \"$(ls -A '%s/models/ws1' | grep -v '^qwen$')\"", home);
    /* the copy validates like the original */
    nmc_model_config_t c;
    nmc_arena_t *a = nmc_arena_new();
    ck_assert_int_eq(nmc_model_config_load(a, r.path, &c, &D), 0);
    nmc_arena_free(a);
}
END_TEST

START_TEST(copy_rejects_escaping_symlink)
{
    const char *src = model_src("tiny-qwen3", true);
    sh("echo secret > '%s/outside.txt' && ln -s ../outside.txt '%s/leak.txt'", tmp, src);
    nmc_store_entity_t e;
    ck_assert_int_eq(nmc_store_import_model(S, src, "leaky", true, &e, &D), -1);
    const nmc_diag_t *x = only_error("store-symlink-escape");
    char want[1024];
    snprintf(want, sizeof want, "symbolic link points outside the imported directory to %s/outside.txt", tmp);
    ck_assert_str_eq(x->message, want);
    /* nothing left behind: no entity, no temp directory */
    sh("test ! -e '%s/models/default/leaky' && test -z \"$(ls -A '%s/models/default')\"", home, home);
    /* by reference the same directory is fine (nothing is copied) */
    reset_diags();
    ck_assert_int_eq(nmc_store_import_model(S, src, "leaky", false, &e, &D), 0);
}
END_TEST

START_TEST(model_import_validates)
{
    nmc_store_entity_t e;
    /* no config.json */
    char p[512];
    snprintf(p, sizeof p, "%s/empty", tmp);
    sh("mkdir '%s'", p);
    ck_assert_int_eq(nmc_store_import_model(S, p, "m", false, &e, &D), -1);
    only_error("io-error");
    /* a truncated checkpoint */
    reset_diags();
    const char *src = model_src("tiny-llama", true);
    sh("truncate -s 5000 '%s/model.safetensors'", src);
    ck_assert_int_eq(nmc_store_import_model(S, src, "m", false, &e, &D), -1);
    ck_assert_str_eq(D.items[0].code, "st-offsets-out-of-range");
    /* an unsupported architecture */
    reset_diags();
    sh("cp %s/tiny-llama/model.safetensors '%s/' && sed -i 's/LlamaForCausalLM/GPT2LMHeadModel/' "
       "'%s/config.json'", FIXTURES, src, src);
    ck_assert_int_eq(nmc_store_import_model(S, src, "m", false, &e, &D), -1);
    only_error("config-unsupported-architecture");
    /* a file is not a model directory */
    reset_diags();
    snprintf(p, sizeof p, "%s/config.json", src);
    ck_assert_int_eq(nmc_store_import_model(S, p, "m", false, &e, &D), -1);
    only_error("store-import-source");
    /* a bad name is rejected before anything is read */
    reset_diags();
    ck_assert_int_eq(nmc_store_import_model(S, src, "../m", false, &e, &D), -1);
    only_error("store-invalid-name");
    sh("test ! -e '%s/models/default/m'", home);
}
END_TEST

START_TEST(model_exists)
{
    const char *src = model_src("tiny-qwen3", true);
    nmc_store_entity_t e;
    ck_assert_int_eq(nmc_store_import_model(S, src, "q", false, &e, &D), 0);
    ck_assert_int_eq(nmc_store_import_model(S, src, "default/q", true, &e, &D), -1);
    const nmc_diag_t *x = only_error("store-entity-exists");
    ck_assert_str_eq(x->message, "model 'default/q' already exists");
}
END_TEST

START_TEST(model_not_found)
{
    nmc_store_entity_t e;
    ck_assert_int_eq(nmc_store_resolve_model(S, "nope", &e, &D), -1);
    const nmc_diag_t *x = only_error("store-model-not-found");
    char want[1024];
    snprintf(want, sizeof want, "model 'default/nope' is not in the store (%s)", home);
    ck_assert_str_eq(x->message, want);
    ck_assert_str_eq(x->help, "import it first: nmc models import /path/to/model-dir --name nope");
    /* with a near miss in the store: did you mean */
    reset_diags();
    ck_assert_int_eq(nmc_store_import_model(S, model_src("tiny-qwen3", true), "tiny-qwen3", false,
                                            &e, &D), 0);
    ck_assert_int_eq(nmc_store_resolve_model(S, "tiny-qwen", &e, &D), -1);
    x = only_error("store-model-not-found");
    ck_assert_str_eq(x->help, "did you mean 'default/tiny-qwen3'?\n"
                              "import it first: nmc models import /path/to/model-dir --name tiny-qwen");
    reset_diags(); /* the same name in another workspace */
    ck_assert_int_eq(nmc_store_resolve_model(S, "team/tiny-qwen3", &e, &D), -1);
    x = only_error("store-model-not-found");
    ck_assert_str_eq(x->help, "did you mean 'default/tiny-qwen3'?\n"
                              "import it first: nmc models import /path/to/model-dir --name team/tiny-qwen3");
    /* a fileset of that name is not a model */
    reset_diags();
    ck_assert_int_eq(nmc_store_resolve_fileset(S, "ws/tiny-qwen3", &e, &D), -1);
    x = only_error("store-fileset-not-found");
    ck_assert_str_eq(x->help, "import it first: nmc filesets import /path/to/data --name ws/tiny-qwen3");
}
END_TEST

START_TEST(list_sorted)
{
    nmc_store_entity_t e, *v;
    size_t n;
    ck_assert_int_eq(nmc_store_list(S, NMC_ENTITY_MODEL, &v, &n, &D), 0); /* empty store */
    ck_assert_uint_eq(n, 0);
    ck_assert_int_eq(nmc_store_import_model(S, model_src("tiny-qwen3", true), "zeta", false, &e, &D), 0);
    ck_assert_int_eq(nmc_store_import_model(S, model_src("tiny-llama", true), "b/alpha", true, &e, &D), 0);
    ck_assert_int_eq(nmc_store_import_model(S, model_src("tiny-llama", true), "alpha", false, &e, &D), 0);
    ck_assert_int_eq(nmc_store_list(S, NMC_ENTITY_MODEL, &v, &n, &D), 0);
    ck_assert_uint_eq(n, 3);
    ck_assert_str_eq(v[0].ref, "b/alpha");
    ck_assert_str_eq(v[1].ref, "default/alpha");
    ck_assert_str_eq(v[2].ref, "default/zeta");
    ck_assert_str_eq(v[2].model.architecture, "Qwen3ForCausalLM");
    ck_assert(!v[0].by_reference && v[1].by_reference);
    ck_assert_int_eq(nmc_store_list(S, NMC_ENTITY_FILESET, &v, &n, &D), 0);
    ck_assert_uint_eq(n, 0);
    ck_assert_uint_eq(D.n_errors, 0);
}
END_TEST

START_TEST(damaged_entity)
{
    nmc_store_entity_t e, *v;
    size_t n;
    ck_assert_int_eq(nmc_store_import_model(S, model_src("tiny-qwen3", true), "ok", false, &e, &D), 0);
    ck_assert_int_eq(nmc_store_import_model(S, model_src("tiny-llama", true), "bad", false, &e, &D), 0);
    sh("echo '{\"kind\": \"model\"}' > '%s/models/default/bad/entity.json'", home);
    reset_diags();
    ck_assert_int_eq(nmc_store_resolve_model(S, "bad", &e, &D), -1);
    const nmc_diag_t *x = only_error("store-entity-invalid");
    ck_assert_str_eq(x->message, "the model entity file is damaged or from another nmc version");
    reset_diags();
    ck_assert_int_eq(nmc_store_list(S, NMC_ENTITY_MODEL, &v, &n, &D), 0);
    ck_assert_uint_eq(n, 1); /* the damaged one is reported and skipped */
    ck_assert_str_eq(v[0].ref, "default/ok");
    only_error("store-entity-invalid");
}
END_TEST

START_TEST(adapter_dir)
{
    nmc_store_entity_t e;
    ck_assert_int_eq(nmc_store_import_model(S, model_src("tiny-qwen3", true), "base", false, &e, &D), 0);
    char want[1024];
    snprintf(want, sizeof want, "%s/models/default/base/adapters/my-lora", home);
    ck_assert_str_eq(nmc_store_adapter_dir(S, &e, "my-lora"), want);
}
END_TEST

/* ---- filesets -------------------------------------------------------------------------------- */
START_TEST(fileset_file_and_dir)
{
    sh("mkdir -p '%s/data/sub' && printf '{\"a\":1}\\n' > '%s/data/train.jsonl' && "
       "printf 'xy' > '%s/data/sub/val.jsonl'", tmp, tmp, tmp);
    char file[256], dir[256];
    snprintf(file, sizeof file, "%s/data/train.jsonl", tmp);
    snprintf(dir, sizeof dir, "%s/data", tmp);
    nmc_store_entity_t e;
    ck_assert_int_eq(nmc_store_import_fileset(S, file, "train-ref", false, &e, &D), 0);
    ck_assert(e.by_reference);
    ck_assert_str_eq(e.path, file);
    ck_assert_int_eq(e.files, 1);
    ck_assert_int_eq(e.bytes, 8);
    ck_assert_int_eq(nmc_store_import_fileset(S, file, "train-copy", true, &e, &D), 0);
    char want[1024];
    snprintf(want, sizeof want, "%s/filesets/default/train-copy/files/train.jsonl", home);
    ck_assert_str_eq(e.path, want);
    sh("cmp '%s' '%s'", file, want);
    ck_assert_int_eq(nmc_store_import_fileset(S, dir, "ws/all", true, &e, &D), 0);
    ck_assert_int_eq(e.files, 2);
    ck_assert_int_eq(e.bytes, 10);
    snprintf(want, sizeof want, "%s/filesets/ws/all/files/sub/val.jsonl", home);
    sh("cmp '%s/sub/val.jsonl' '%s'", dir, want);
    ck_assert_uint_eq(D.n, 0);
    nmc_store_entity_t *v;
    size_t n;
    ck_assert_int_eq(nmc_store_list(S, NMC_ENTITY_FILESET, &v, &n, &D), 0);
    ck_assert_uint_eq(n, 3);
    ck_assert_str_eq(v[0].ref, "default/train-copy");
    ck_assert_str_eq(v[2].ref, "ws/all");
    /* remove the source: the reference breaks, the copies do not */
    sh("rm -rf '%s'", dir);
    ck_assert_int_eq(nmc_store_resolve_fileset(S, "train-copy", &e, &D), 0);
    ck_assert_int_eq(nmc_store_resolve_fileset(S, "ws/all", &e, &D), 0);
    ck_assert_int_eq(nmc_store_resolve_fileset(S, "train-ref", &e, &D), -1);
    const nmc_diag_t *x = only_error("store-source-missing");
    snprintf(want, sizeof want, "restore the files, or re-import: rm -r %s/filesets/default/"
                                "train-ref && nmc filesets import %s --name train-ref", home, file);
    ck_assert_str_eq(x->help, want);
}
END_TEST

START_TEST(fileset_missing_source)
{
    nmc_store_entity_t e;
    ck_assert_int_eq(nmc_store_import_fileset(S, "/nonexistent/data.jsonl", "d", false, &e, &D), -1);
    only_error("io-error");
}
END_TEST

/* ---- atomic files ---------------------------------------------------------------------------- */
START_TEST(atomic_write)
{
    char p[256];
    snprintf(p, sizeof p, "%s/out.txt", tmp);
    nmc_atomic_file_t af;
    ck_assert_int_eq(nmc_atomic_begin(&af, p, &D), 0);
    fputs("one", af.f);
    ck_assert_int_ne(access(p, F_OK), 0); /* not visible before commit */
    ck_assert_int_eq(nmc_atomic_commit(&af, &D), 0);
    sh("test \"$(cat '%s')\" = one", p);
    ck_assert_int_eq(nmc_atomic_begin(&af, p, &D), 0);
    fputs("two", af.f);
    nmc_atomic_abort(&af);
    sh("test \"$(cat '%s')\" = one && test \"$(ls -A '%s' | wc -l)\" = 1", p, tmp); /* only out.txt */
    snprintf(p, sizeof p, "%s/no/such/dir/x", tmp);
    ck_assert_int_eq(nmc_atomic_begin(&af, p, &D), -1);
    only_error("io-error");
}
END_TEST

static Suite *suite(void)
{
    Suite *s = suite_create("store");
    TCase *tc = tcase_create("core");
    tcase_add_checked_fixture(tc, setup, teardown);
    tcase_set_timeout(tc, 60);
    tcase_add_test(tc, ref_valid);
    tcase_add_test(tc, ref_rejected);
    tcase_add_test(tc, home_location);
    tcase_add_test(tc, model_by_reference);
    tcase_add_test(tc, model_by_copy);
    tcase_add_test(tc, copy_rejects_escaping_symlink);
    tcase_add_test(tc, model_import_validates);
    tcase_add_test(tc, model_exists);
    tcase_add_test(tc, model_not_found);
    tcase_add_test(tc, list_sorted);
    tcase_add_test(tc, damaged_entity);
    tcase_add_test(tc, adapter_dir);
    tcase_add_test(tc, fileset_file_and_dir);
    tcase_add_test(tc, fileset_missing_source);
    tcase_add_test(tc, atomic_write);
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
