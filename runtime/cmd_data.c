/* cmd_data.c — `nmc data inspect`: load a job, resolve its model and filesets through the
 * store, run the dataset pipeline, and print the first samples exactly as the model will see
 * them (trained tokens marked) followed by the dataset report. What belongs here:
 * presentation only; the work is dataset.c's. Exit codes: 0 ok, 1 invalid job or data,
 * 2 usage or I/O error.
 */
#include "dataset.h"
#include "job.h"
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

static const char USAGE[] =
    "usage: nmc data inspect JOB [--n N] [--backend automodel|unsloth] [--color auto|always|never]\n"
    "Print the first N samples of the job's training data (default 3) exactly as the model sees\n"
    "them: the trained tokens (the loss targets) «marked» (green on a terminal), then the dataset\n"
    "report. The model and filesets are resolved in the store ($NMC_HOME). The backend is\n"
    "--backend, else the file's \"$schema\", else automodel. See docs/dataset.md.\n"
    "Exit status: 0 ok, 1 invalid job, unknown model or fileset, or malformed rows, 2 usage\n"
    "or I/O error.\n";

typedef struct {
    const char *job;
    long n;
    int backend;   /* -1 automatic */
    int color;     /* -1 auto */
    bool help;
} args_t;

static int usage_error(const char *fmt, const char *arg)
{
    fprintf(stderr, "nmc data: error: ");
    fprintf(stderr, fmt, arg);
    fprintf(stderr, "\n%s", USAGE);
    return 2;
}

static const char *opt_value(int argc, char **argv, int *i, const char *name)
{
    const char *s = argv[*i];
    size_t n = strlen(name);
    if (s[n] == '=') return s + n + 1;
    if (*i + 1 < argc) return argv[++*i];
    return NULL;
}

static bool is_opt(const char *s, const char *name)
{
    size_t n = strlen(name);
    return strncmp(s, name, n) == 0 && (s[n] == '\0' || s[n] == '=');
}

static int parse(int argc, char **argv, args_t *a)
{
    memset(a, 0, sizeof *a);
    a->n = 3, a->backend = -1, a->color = -1;
    for (int i = 1; i < argc; i++) {
        const char *s = argv[i], *v;
        if (strcmp(s, "--help") == 0 || strcmp(s, "-h") == 0) a->help = true;
        else if (is_opt(s, "--n")) {
            if (!(v = opt_value(argc, argv, &i, "--n"))) return usage_error("option '%s' needs a value", "--n");
            char *end;
            a->n = strtol(v, &end, 10);
            if (*v == '\0' || *end || a->n < 0) return usage_error("--n takes a count >= 0, got '%s'", v);
        } else if (is_opt(s, "--backend")) {
            if (!(v = opt_value(argc, argv, &i, "--backend"))) return usage_error("option '%s' needs a value", "--backend");
            if ((a->backend = nmc_backend_by_name(v)) < 0) return usage_error("unknown backend '%s' (use automodel or unsloth)", v);
        } else if (is_opt(s, "--color")) {
            if (!(v = opt_value(argc, argv, &i, "--color"))) return usage_error("option '%s' needs a value", "--color");
            if (strcmp(v, "always") == 0) a->color = 1;
            else if (strcmp(v, "never") == 0) a->color = 0;
            else if (strcmp(v, "auto") == 0) a->color = -1;
            else return usage_error("unknown --color value '%s' (use auto, always or never)", v);
        } else if (s[0] == '-' && s[1]) return usage_error("unknown option '%s'", s);
        else if (a->job) return usage_error("unexpected argument '%s'", s);
        else a->job = s;
    }
    return 0;
}

static int want_color(int setting)
{
    if (setting >= 0) return setting;
    const char *term = getenv("TERM");
    return isatty(STDOUT_FILENO) && !getenv("NO_COLOR") && !(term && strcmp(term, "dumb") == 0);
}

static void render(nmc_diags_t *d, const char *src, size_t len, int color)
{
    if (!d->n && !d->n_dropped) return;
    nmc_diags_sort(d);
    nmc_diags_render_text(d, src, len, stderr, color);
    nmc_diags_free(d);
    nmc_diags_init(d);
}

/* ---- sample display ------------------------------------------------------------------------ */
#define GREEN "\x1b[32m"
#define DIM "\x1b[2m"
#define RESET "\x1b[0m"

static void print_group(const nmc_dataset_model_t *m, const int32_t *ids, size_t n, bool trained, int color)
{
    size_t len = 0;
    char *s = nmc_tokenizer_decode(m->tok, ids, n, false, &len, NULL);
    if (color) fputs(trained ? GREEN : DIM, stdout);
    else if (trained) fputs("«", stdout);
    if (s) fwrite(s, 1, len, stdout);
    if (color) fputs(RESET, stdout);
    else if (trained) fputs("»", stdout);
    free(s);
}

static void print_sample(const nmc_dataset_model_t *m, const nmc_dataset_sample_t *s, long k, int color)
{
    int64_t trained = 0;
    for (int64_t i = 1; i < s->n; i++) trained += s->mask[i];
    printf("── sample %ld  %s:%u  %lld tokens, %lld trained%s\n", k + 1, s->file, s->line, (long long)s->n,
           (long long)trained, s->truncated ? " (truncated)" : "");
    /* token 0 is never a target: it has no predecessor */
    int64_t i = 0;
    while (i < s->n) {
        bool t = i > 0 && s->mask[i];
        int64_t j = i + 1;
        while (j < s->n && (j > 0 && s->mask[j]) == t) j++;
        print_group(m, s->ids + i, (size_t)(j - i), t, color);
        i = j;
    }
    fputs("\n\n", stdout);
}

static void print_locs(const char *what, int64_t count, const nmc_dataset_loc_t *l, int64_t n, bool trunc,
                       int64_t limit)
{
    printf("  %-22s %lld\n", what, (long long)count);
    for (int64_t i = 0; i < n; i++) {
        if (trunc)
            printf("      %s:%u  %lld -> %lld tokens\n", l[i].file, l[i].line, (long long)l[i].detail, (long long)limit);
        else printf("      %s:%u  %lld tokens, none trained\n", l[i].file, l[i].line, (long long)l[i].detail);
    }
    if (count > n) printf("      ... and %lld more\n", (long long)(count - n));
}

static void print_report(const nmc_dataset_t *ds, const nmc_dataset_opts_t *o, const char *valid_ref)
{
    const nmc_dataset_report_t *r = nmc_dataset_report(ds, NMC_DS_TRAIN);
    const nmc_dataset_plan_t *p = nmc_dataset_plan(ds, NMC_DS_TRAIN);
    int64_t limit = o->max_seq_length;
    if (o->packing && o->pack_size < limit) limit = o->pack_size;
    printf("training data report\n");
    printf("  %-22s %lld\n", "rows", (long long)r->rows);
    printf("  %-22s %lld\n", "samples kept", (long long)r->samples);
    print_locs("truncated", r->truncated, r->truncated_at, r->n_truncated_locs, true, limit);
    print_locs("zero trainable (skip)", r->zero_trainable, r->zero_at, r->n_zero_locs, false, 0);
    printf("  %-22s %lld\n", "tokens", (long long)r->tokens);
    printf("  %-22s %lld (%.1f%%)\n", "trainable tokens", (long long)r->label_tokens,
           r->tokens ? 100.0 * (double)r->label_tokens / (double)r->tokens : 0.0);
    printf("  %-22s min %lld, max %lld\n", "sample length", (long long)r->min_len, (long long)r->max_len);
    if (r->mask_approx) printf("  %-22s %lld\n", "approximate masks", (long long)r->mask_approx);
    if (o->packing)
        printf("  %-22s %lld rows of %lld tokens, efficiency %.1f%%\n", "packing", (long long)p->units,
               (long long)o->pack_size, 100.0 * p->packing_efficiency);
    else printf("  %-22s off (one sample per row, padded to the longest in the micro-batch)\n", "packing");
    int64_t nv = nmc_dataset_num_samples(ds, NMC_DS_VALID);
    if (valid_ref) printf("  %-22s %lld samples from %s\n", "validation", (long long)nv, valid_ref);
    else if (nv) printf("  %-22s %lld samples held out (validation_split %g)\n", "validation", (long long)nv,
                        o->validation_split);
    else printf("  %-22s none\n", "validation");
    printf("  %-22s %lld\n", "training samples", (long long)nmc_dataset_num_samples(ds, NMC_DS_TRAIN));
}

static const char *format_name(nmc_dataset_format_t f)
{
    switch (f) {
    case NMC_DS_FMT_AUTO: return "messages or prompt+completion rows; loss on assistant turns / completions";
    case NMC_DS_FMT_TEMPLATE: return "prompt_template columns; loss on the second column";
    case NMC_DS_FMT_TEXT: return "text rows; loss on every token";
    case NMC_DS_FMT_CHAT_AS_TEXT: return "messages rendered with the chat template, trained as text; loss on every token";
    }
    return "";
}

/* ---- the command ------------------------------------------------------------------------------ */
typedef struct {
    nmc_job_t *job;
    nmc_dataset_model_t *model;
    nmc_dataset_t *ds;
    nmc_arena_t *arena;
} state_t;

static void cleanup(state_t *s)
{
    nmc_dataset_free(s->ds);
    nmc_dataset_model_free(s->model);
    nmc_job_free(s->job);
    if (s->arena) nmc_arena_free(s->arena);
}

static int inspect(const args_t *a, int color)
{
    state_t s = {0};
    nmc_diags_t d;
    nmc_diags_init(&d);
    nmc_job_opts_t jo = {.backend = a->backend};
    nmc_job_status_t js = nmc_job_load_file(a->job, &jo, &s.job, &d);
    if (js != NMC_JOB_VALID) {
        render(&d, s.job ? s.job->src : NULL, s.job ? s.job->src_len : 0, color);
        cleanup(&s);
        return js == NMC_JOB_IO_ERROR ? 2 : 1;
    }
    render(&d, s.job->src, s.job->src_len, color); /* warnings */
    int rc = 1;
    nmc_dataset_opts_t o;
    const char *model_ref, *train_ref, *valid_ref;
    nmc_dataset_job_refs(s.job, &model_ref, &train_ref, &valid_ref);
    const char *model_dir;
    s.arena = nmc_arena_new();
    if (nmc_dataset_opts_from_job(s.job, &o, &d) != 0) {
        render(&d, s.job->src, s.job->src_len, color);
        goto out;
    }
    const char **tf, **vf;
    if (nmc_dataset_resolve(s.arena, NULL, model_ref, train_ref, valid_ref, &model_dir, &tf, &o.n_train_files, &vf,
                            &o.n_val_files, &d) != 0 ||
        nmc_dataset_model_load(model_dir, &s.model, &d) != 0)
        goto fail;
    o.train_files = tf, o.val_files = vf;
    nmc_dataset_status_t st = nmc_dataset_open(&o, s.model, &s.ds, &d);
    if (st != NMC_DATASET_OK) {
        rc = st == NMC_DATASET_IO_ERROR ? 2 : 1;
        goto fail;
    }
    render(&d, NULL, 0, color); /* warnings */
    printf("job: %s (%s)\nmodel: %s\ntraining data: %s (%zu file%s)\n", a->job, s.job->backend->name, model_ref,
           train_ref, o.n_train_files, o.n_train_files == 1 ? "" : "s");
    printf("format: %s\nmax_seq_length: %lld, micro-batch: %lld\n", format_name(o.format),
           (long long)o.max_seq_length, (long long)nmc_dataset_job_micro_batch(s.job));
    printf("legend: %s trained tokens (loss targets); other text is context only\n\n",
           color ? GREEN "green" RESET : "«marked»");
    int64_t n = nmc_dataset_num_samples(s.ds, NMC_DS_TRAIN);
    for (long k = 0; k < a->n && k < n; k++) {
        nmc_dataset_sample_t smp;
        if (nmc_dataset_get_sample(s.ds, NMC_DS_TRAIN, k, &smp, &d) != 0) {
            rc = 2;
            goto fail;
        }
        print_sample(s.model, &smp, k, color);
        nmc_dataset_sample_free(&smp);
    }
    print_report(s.ds, &o, valid_ref);
    rc = 0;
    goto out;
fail:
    render(&d, NULL, 0, color);
out:
    nmc_diags_free(&d);
    cleanup(&s);
    return rc;
}

int nmc_cmd_data(int argc, char **argv)
{
    if (argc < 1 || strcmp(argv[0], "--help") == 0 || strcmp(argv[0], "-h") == 0) {
        fputs(USAGE, argc < 1 ? stderr : stdout);
        return argc < 1 ? 2 : 0;
    }
    if (strcmp(argv[0], "inspect") != 0) return usage_error("unknown subcommand '%s' (use inspect)", argv[0]);
    args_t a;
    int rc = parse(argc, argv, &a);
    if (rc) return rc;
    if (a.help) {
        fputs(USAGE, stdout);
        return 0;
    }
    if (!a.job) return usage_error("no job file given%s", "");
    return inspect(&a, want_color(a.color));
}
