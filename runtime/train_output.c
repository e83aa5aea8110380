/* train_output.c — publishing a trained model into the local store, and evaluation with
 * the model's logits (merge check, held-out accuracy).
 *
 *   adapter  PEFT directory <base entity>/adapters/<name>/ (nmc_peft_save), built in a temp
 *            directory beside it and renamed into place
 *   merged   LoRA folded into the base weights, saved in the base checkpoint's dtype, as a
 *            new Model Entity `name` (imported by copy, so the store validates it)
 *   full     every weight, likewise
 * A new model entity gets the base's tokenizer files and generation_config.json (the
 * base's own file when present, else bos/eos/pad ids from its config.json).
 * Merge check: before publishing, the merged weights (saved fp32 in a scratch directory
 * and loaded as a plain model) must give the same eval logits as adapter-on-base on three
 * fixed prompts: max |diff| <= 1e-3 (fp32; real differences are ~1e-6, a wrong merge is
 * O(scale * |BA|)), else train-merge-mismatch and nothing is published.
 * Test aid: NMC_TEST_CORRUPT_MERGE=1 in the environment perturbs the reloaded merged
 * weights, so that the check must fail (tests/run_train_val.sh); read only by the check.
 */
#include "train.h"
#include "json.h"
#include "peft.h"
#include "store.h"
#include <errno.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#define MERGE_TOL 1e-3

static void rm_rf(const char *dir)
{
    /* directories written here are one level deep (model dirs, PEFT dirs) */
    char cmd[8192];
    if (!dir || !*dir || strchr(dir, '\'')) return;
    snprintf(cmd, sizeof cmd, "rm -rf '%s'", dir);
    if (system(cmd) != 0) { /* leftovers in a temp dir are harmless */ }
}

static bool exists(const char *p)
{
    struct stat sb;
    return stat(p, &sb) == 0;
}

static int copy_file(const char *src, const char *dst, nmc_diags_t *d)
{
    FILE *in = fopen(src, "rb");
    if (!in) return 0; /* optional file */
    nmc_atomic_file_t af;
    if (nmc_atomic_begin(&af, dst, d)) {
        fclose(in);
        return -1;
    }
    char buf[65536];
    size_t n;
    while ((n = fread(buf, 1, sizeof buf, in)) > 0) fwrite(buf, 1, n, af.f);
    fclose(in);
    return nmc_atomic_commit(&af, d);
}

/* ---- logits comparison ------------------------------------------------------------- */
#define PROBE_T 8
#define PROBE_N 3

int nmc_train_logits_diff(nmc_model_t *a, nmc_model_t *b, double *max_diff, nmc_diags_t *d)
{
    int V = (int)nmc_model_config(a)->vocab_size;
    int32_t ids[PROBE_T], lab[PROBE_T], pos[PROBE_T], doc[PROBE_T];
    float *la = malloc((size_t)PROBE_T * V * sizeof(float)), *lb = malloc((size_t)PROBE_T * V * sizeof(float));
    if (!la || !lb) abort();
    double worst = 0;
    int rc = 0;
    for (int p = 0; p < PROBE_N && rc == 0; p++) {
        for (int t = 0; t < PROBE_T; t++)
            ids[t] = (int32_t)((p * 977 + t * 131 + 7) % V), lab[t] = NMC_IGNORE_INDEX, pos[t] = t, doc[t] = 0;
        nmc_batch_t bt = {.B = 1, .T = PROBE_T, .input_ids = ids, .labels = lab, .positions = pos,
                          .doc_start = doc, .n_real_tokens = PROBE_T, .first_sample = -1};
        rc = nmc_model_logits(a, &bt, 0, PROBE_T, la, d);
        if (rc == 0) rc = nmc_model_logits(b, &bt, 0, PROBE_T, lb, d);
        for (size_t i = 0; rc == 0 && i < (size_t)PROBE_T * V; i++) {
            double df = fabs((double)la[i] - (double)lb[i]);
            if (!(df <= worst)) worst = df; /* NaN wins */
        }
    }
    free(la), free(lb);
    *max_diff = worst;
    return rc;
}

/* NMC_TEST_CORRUPT_MERGE=1: add 0.5 to every element of the reloaded merged model's first
 * parameter (the embedding), a divergence far above the tolerance. A testing aid only. */
static int corrupt_for_test(nmc_model_t *merged, nmc_diags_t *d)
{
    const char *e = getenv("NMC_TEST_CORRUPT_MERGE");
    if (!e || strcmp(e, "1") != 0) return 0;
    size_t np;
    nmc_param_t *p = nmc_model_params(merged, &np);
    if (np == 0) return 0;
    float *h = malloc((size_t)p->numel * sizeof *h);
    if (!h) abort();
    int rc = nmc_model_param_read(merged, p, h, d);
    for (int64_t i = 0; rc == 0 && i < p->numel; i++) h[i] += 0.5f;
    if (rc == 0) rc = nmc_model_param_write(merged, p, h, d);
    free(h);
    return rc;
}

static int merge_check(nmc_model_t *m, const char *scratch, nmc_diags_t *d)
{
    nmc_model_save_opts_t so = {.merge_lora = true, .fp32 = true};
    if (nmc_model_save(m, scratch, &so, d)) return -1;
    nmc_model_opts_t mo;
    nmc_model_opts_default(&mo);
    mo.model_dir = scratch;
    mo.dev = nmc_model_dev(m);
    nmc_model_t *merged = NULL;
    if (nmc_model_load(&mo, &merged, d)) return -1;
    double diff = 0;
    int rc = corrupt_for_test(merged, d);
    if (rc == 0) rc = nmc_train_logits_diff(m, merged, &diff, d);
    nmc_model_free(merged);
    if (rc == 0 && !(diff <= MERGE_TOL)) {
        nmc_diag_t *r = nmc_diag_add(d, NMC_SEV_ERROR, "train-merge-mismatch", NULL, 0, 0, 0,
                                     "the merged model's logits differ from adapter-on-base by %.3g "
                                     "(tolerance %.0e)", diff, MERGE_TOL);
        nmc_diag_set_help(r, "nothing was published; this is a bug in nmc's merge: please report it "
                             "(the adapter can still be published with finetuning_type lora)");
        rc = -1;
    }
    return rc;
}

/* ---- generation_config.json ----------------------------------------------------------- */
static void write_id(nmc_json_writer_t *w, const nmc_json_t *cfg, const char *key)
{
    const nmc_json_t *v = nmc_json_get(cfg, key);
    if (!v || (v->kind != NMC_JSON_NUMBER && v->kind != NMC_JSON_ARRAY)) return;
    nmc_jw_key(w, key);
    nmc_jw_value(w, v);
}

static int generation_config(const char *base_dir, const char *out_dir, nmc_diags_t *d)
{
    char src[4200], dst[4200];
    snprintf(src, sizeof src, "%s/generation_config.json", base_dir);
    snprintf(dst, sizeof dst, "%s/generation_config.json", out_dir);
    if (exists(src)) return copy_file(src, dst, d);
    snprintf(src, sizeof src, "%s/config.json", base_dir);
    nmc_arena_t *a = nmc_arena_new();
    nmc_json_t *cfg = NULL;
    int rc = nmc_json_parse_file(a, src, NULL, &cfg, NULL, NULL, d);
    nmc_atomic_file_t af;
    if (rc == 0) rc = nmc_atomic_begin(&af, dst, d);
    if (rc == 0) {
        nmc_json_writer_t w;
        nmc_jw_init(&w, af.f, 2);
        nmc_jw_begin_object(&w);
        write_id(&w, cfg, "bos_token_id");
        write_id(&w, cfg, "eos_token_id");
        write_id(&w, cfg, "pad_token_id");
        nmc_jw_end_object(&w);
        fputc('\n', af.f);
        rc = nmc_atomic_commit(&af, d);
    }
    nmc_arena_free(a);
    return rc;
}

static int copy_tokenizer(const char *base_dir, const char *out_dir, nmc_diags_t *d)
{
    static const char *const files[] = {"tokenizer.json", "tokenizer_config.json", "special_tokens_map.json",
                                        "tokenizer.model", "chat_template.jinja", "vocab.json",
                                        "merges.txt", "added_tokens.json"};
    char s[4300], t[4300];
    for (size_t i = 0; i < sizeof files / sizeof files[0]; i++) {
        snprintf(s, sizeof s, "%s/%s", base_dir, files[i]);
        snprintf(t, sizeof t, "%s/%s", out_dir, files[i]);
        if (copy_file(s, t, d)) return -1;
    }
    return 0;
}

/* ---- publishing ------------------------------------------------------------------------ */
static int exists_error(nmc_diags_t *d, const char *what, const char *name, const char *where)
{
    nmc_diag_t *r = nmc_diag_add(d, NMC_SEV_ERROR, "train-output-exists", NULL, 0, 0, 0,
                                 "%s '%s' already exists (%s)", what, name, where);
    nmc_diag_set_help(r, "choose another output.name, or remove the existing one first");
    return -1;
}

static int publish_adapter(nmc_model_t *m, nmc_store_t *s, const nmc_store_entity_t *base,
                           const char *name, char **where, nmc_diags_t *d)
{
    const char *dir = nmc_store_adapter_dir(s, base, name);
    if (exists(dir)) return exists_error(d, "adapter", name, dir);
    char parent[4096], tmp[4200];
    snprintf(parent, sizeof parent, "%s/adapters", base->entity_dir);
    if (nmc_run_mkdirs(parent, d)) return -1;
    snprintf(tmp, sizeof tmp, "%s/.tmp-%s-%ld", parent, name, (long)getpid());
    rm_rf(tmp);
    nmc_peft_save_opts_t po = {.base_model_name_or_path = base->ref};
    if (nmc_peft_save(m, tmp, &po, d)) {
        rm_rf(tmp);
        return -1;
    }
    if (rename(tmp, dir) != 0) {
        nmc_diag_add(d, NMC_SEV_ERROR, "io-error", dir, 0, 0, 0, "cannot move the adapter into place: %s",
                     strerror(errno));
        rm_rf(tmp);
        return -1;
    }
    *where = strdup(dir);
    return 0;
}

static int publish_model(nmc_model_t *m, const nmc_train_plan_t *p, nmc_store_t *s,
                         const nmc_store_entity_t *base, const char *name, char **where, nmc_diags_t *d)
{
    nmc_diags_t probe;
    nmc_diags_init(&probe);
    nmc_store_entity_t e;
    int found = nmc_store_resolve_model(s, name, &e, &probe) == 0;
    nmc_diags_free(&probe);
    if (found) return exists_error(d, "model", name, e.entity_dir);
    char tmp[4096], check[4200];
    snprintf(tmp, sizeof tmp, "%s/.tmp-train-%ld", nmc_store_home(s), (long)getpid());
    snprintf(check, sizeof check, "%s-check", tmp);
    rm_rf(tmp), rm_rf(check);
    int rc = 0;
    bool merge = p->output == NMC_OUTPUT_MERGED;
    if (merge) rc = merge_check(m, check, d);
    rm_rf(check);
    nmc_model_save_opts_t so = {.merge_lora = merge, .fp32 = false};
    if (rc == 0) rc = nmc_model_save(m, tmp, &so, d);
    if (rc == 0) rc = copy_tokenizer(base->path, tmp, d);
    if (rc == 0) rc = generation_config(base->path, tmp, d);
    nmc_store_entity_t out;
    if (rc == 0) rc = nmc_store_import_model(s, tmp, name, true, &out, d);
    if (rc == 0) *where = strdup(out.entity_dir);
    rm_rf(tmp);
    return rc;
}

int nmc_train_publish(nmc_model_t *m, const nmc_train_plan_t *p, struct nmc_store *store,
                      const char *base_ref, const char *name, char **where_out, nmc_diags_t *d)
{
    nmc_store_entity_t base;
    *where_out = NULL;
    if (nmc_store_resolve_model(store, base_ref, &base, d)) return -1;
    if (p->output == NMC_OUTPUT_ADAPTER) return publish_adapter(m, store, &base, name, where_out, d);
    return publish_model(m, p, store, &base, name, where_out, d);
}

/* ---- held-out accuracy ---------------------------------------------------------------- */
int nmc_train_evaluate(nmc_model_t *m, nmc_train_data_t *data, nmc_train_eval_t *out, nmc_diags_t *d)
{
    memset(out, 0, sizeof *out);
    int V = (int)nmc_model_config(m)->vocab_size;
    if (data->begin_epoch(data->ctx, 0, 0, d)) return -1;
    float *logits = NULL;
    size_t cap = 0;
    double loss = 0;
    for (;;) {
        const nmc_batch_t *b = NULL;
        int r = data->next(data->ctx, &b, d);
        if (r < 0) goto fail;
        if (r == 0) break;
        double s = 0;
        int64_t n = 0;
        if (nmc_model_eval(m, b, &s, &n, d)) goto fail;
        loss += s;
        size_t need = (size_t)b->T * V;
        if (need > cap) {
            free(logits);
            logits = malloc(need * sizeof *logits);
            if (!logits) abort();
            cap = need;
        }
        for (int row = 0; row < b->B; row++) {
            if (nmc_model_logits(m, b, row * b->T, b->T, logits, d)) goto fail;
            int cur_doc = -1;
            bool doc_ok = true, doc_has = false;
            for (int t = 0; t <= b->T; t++) {
                int k = row * b->T + t;
                if (t == b->T || b->doc_start[k] != cur_doc) { /* a document ends */
                    if (doc_has) out->docs++, out->docs_exact += doc_ok;
                    if (t == b->T) break;
                    cur_doc = b->doc_start[k], doc_ok = true, doc_has = false;
                }
                int32_t y = b->labels[k];
                if (y == NMC_IGNORE_INDEX) continue;
                const float *l = logits + (size_t)t * V;
                int best = 0;
                for (int v = 1; v < V; v++)
                    if (l[v] > l[best]) best = v;
                out->tokens++;
                out->tokens_correct += best == y;
                doc_ok = doc_ok && best == y;
                doc_has = true;
            }
        }
    }
    free(logits);
    out->loss = out->tokens ? loss / (double)out->tokens : NAN;
    return 0;
fail:
    free(logits);
    return -1;
}
