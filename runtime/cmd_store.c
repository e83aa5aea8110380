/* cmd_store.c — the `nmc models ...` and `nmc filesets ...` commands: argument parsing,
 * printing, exit codes. What belongs here: presentation only; everything they do is in
 * store.c (the library never prints). Exit codes: 0 ok, 1 error, 2 usage error. */
#include "store.h"
#include "json.h"
#include "safetensors.h"
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

typedef struct {
    const char *positional; /* DIR / PATH / NAME */
    const char *name;       /* --name */
    const char *format;     /* --format text|json */
    bool copy, tensors, help;
} args_t;

static const char *MODELS_USAGE =
    "usage: nmc models import DIR --name [WORKSPACE/]NAME [--copy] [--format text|json]\n"
    "       nmc models list [--format text|json]\n"
    "       nmc models show [WORKSPACE/]NAME [--format text|json] [--tensors]\n"
    "The store lives in $NMC_HOME (default $XDG_DATA_HOME/nmc or ~/.local/share/nmc).\n"
    "Import records DIR by reference unless --copy copies it into the store. `show` also lists\n"
    "the LoRA adapters trained on the model; --tensors lists the checkpoint's tensors (also in\n"
    "the JSON form).\n"
    "See docs/store.md. Exit status: 0 ok, 1 error, 2 usage error.\n";

static const char *FILESETS_USAGE =
    "usage: nmc filesets import PATH --name [WORKSPACE/]NAME [--copy] [--format text|json]\n"
    "       nmc filesets list [--format text|json]\n"
    "       nmc filesets show [WORKSPACE/]NAME [--format text|json]\n"
    "The store lives in $NMC_HOME (default $XDG_DATA_HOME/nmc or ~/.local/share/nmc).\n"
    "Import records PATH (a JSONL file or a directory of them) by reference unless --copy\n"
    "copies it into the store. See docs/store.md. Exit status: 0 ok, 1 error, 2 usage error.\n";

static int usage_error(const char *cmd, const char *usage, const char *fmt, const char *arg)
{
    fprintf(stderr, "nmc %s: error: ", cmd);
    fprintf(stderr, fmt, arg);
    fprintf(stderr, "\n%s", usage);
    return 2;
}

/* Parse argv[1..] (argv[0] is the subcommand). Returns 0, or 2 after printing usage. */
static int parse_args(int argc, char **argv, const char *cmd, const char *usage, args_t *a)
{
    memset(a, 0, sizeof *a);
    for (int i = 1; i < argc; i++) {
        const char *s = argv[i];
        const char **slot = NULL;
        if (strcmp(s, "--copy") == 0) a->copy = true;
        else if (strcmp(s, "--tensors") == 0) a->tensors = true;
        else if (strcmp(s, "--help") == 0 || strcmp(s, "-h") == 0) a->help = true;
        else if (strncmp(s, "--name", 6) == 0 && (s[6] == '\0' || s[6] == '=')) slot = &a->name;
        else if (strncmp(s, "--format", 8) == 0 && (s[8] == '\0' || s[8] == '=')) slot = &a->format;
        else if (s[0] == '-' && s[1] != '\0') return usage_error(cmd, usage, "unknown option '%s'", s);
        else if (a->positional) return usage_error(cmd, usage, "unexpected argument '%s'", s);
        else a->positional = s;
        if (!slot) continue;
        const char *eq = strchr(s, '=');
        if (eq) *slot = eq + 1;
        else if (i + 1 < argc) *slot = argv[++i];
        else return usage_error(cmd, usage, "option '%s' needs a value", s);
    }
    if (a->format && strcmp(a->format, "text") != 0 && strcmp(a->format, "json") != 0)
        return usage_error(cmd, usage, "--format must be text or json, not '%s'", a->format);
    return 0;
}

static bool want_json(const args_t *a) { return a->format && strcmp(a->format, "json") == 0; }

static void render(nmc_diags_t *d)
{
    if (d->n == 0 && d->n_dropped == 0) return;
    nmc_diags_sort(d);
    nmc_diags_render_text(d, NULL, 0, stderr, isatty(2) && !getenv("NO_COLOR"));
}

/* ---- printing entities ------------------------------------------------------------------ */
static void json_tensors(nmc_json_writer_t *w, const nmc_store_entity_t *e, nmc_diags_t *d);

/* adapters: names from nmc_store_list_adapters (models only; NULL/0 for filesets and list);
 * tensors_d: non-NULL adds the checkpoint's tensors (--tensors), errors appended there */
static void json_entity(nmc_json_writer_t *w, const nmc_store_entity_t *e, const nmc_store_t *s,
                        const char **adapters, size_t n_adapters, nmc_diags_t *tensors_d)
{
    nmc_jw_begin_object(w);
    nmc_jw_key(w, "ref"), nmc_jw_string(w, e->ref);
    nmc_jw_key(w, "kind"), nmc_jw_string(w, e->kind == NMC_ENTITY_MODEL ? "model" : "fileset");
    nmc_jw_key(w, "workspace"), nmc_jw_string(w, e->workspace);
    nmc_jw_key(w, "name"), nmc_jw_string(w, e->name);
    nmc_jw_key(w, "storage"), nmc_jw_string(w, e->by_reference ? "reference" : "copy");
    nmc_jw_key(w, "path"), nmc_jw_string(w, e->path);
    nmc_jw_key(w, "source"), nmc_jw_string(w, e->source);
    nmc_jw_key(w, "entity_dir"), nmc_jw_string(w, e->entity_dir);
    nmc_jw_key(w, "files"), nmc_jw_int(w, e->files);
    nmc_jw_key(w, "bytes"), nmc_jw_int(w, e->bytes);
    if (e->kind == NMC_ENTITY_MODEL) {
        nmc_store_write_model_meta(w, &e->model);
        if (s) {
            nmc_jw_key(w, "adapters");
            nmc_jw_begin_array(w);
            for (size_t i = 0; i < n_adapters; i++) {
                nmc_jw_begin_object(w);
                nmc_jw_key(w, "name"), nmc_jw_string(w, adapters[i]);
                nmc_jw_key(w, "path"), nmc_jw_string(w, nmc_store_adapter_dir(s, e, adapters[i]));
                nmc_jw_end_object(w);
            }
            nmc_jw_end_array(w);
        }
        if (tensors_d) json_tensors(w, e, tensors_d);
    }
    nmc_jw_end_object(w);
}

static const char *storage_note(const nmc_store_entity_t *e)
{
    return e->by_reference ? "by reference (not copied: nmc reads the files in place and "
                             "checks they still exist on every use)"
                           : "by copy (the files live in the store)";
}

static void text_model_summary(const nmc_store_entity_t *e)
{
    const nmc_store_model_meta_t *m = &e->model;
    printf("  model:   %s, %lld layers, hidden %lld, heads %lld/%lld kv, vocab %lld\n",
           m->architecture, (long long)m->num_layers, (long long)m->hidden_size,
           (long long)m->num_heads, (long long)m->num_kv_heads, (long long)m->vocab_size);
    printf("  weights: %lld parameters, %s, %lld tensors in %s (%lld file%s)\n",
           (long long)m->parameters, m->dtype, (long long)m->tensors, m->checkpoint,
           (long long)m->shards, m->shards == 1 ? "" : "s");
    printf("  tokenizer.json: %s\n", m->has_tokenizer ? "yes" : "missing");
}

static void text_show(const nmc_store_entity_t *e)
{
    printf("%s %s\n", e->kind == NMC_ENTITY_MODEL ? "model" : "fileset", e->ref);
    printf("  storage: %s\n", storage_note(e));
    printf("  path:    %s\n", e->path);
    if (!e->by_reference) printf("  source:  %s\n", e->source);
    printf("  files:   %lld (%lld bytes)\n", (long long)e->files, (long long)e->bytes);
    if (e->kind == NMC_ENTITY_MODEL) text_model_summary(e);
    printf("  entity:  %s/entity.json\n", e->entity_dir);
}

/* The PEFT adapters trained on this base (`nmc train` with a LoRA job publishes them here). */
static void text_adapters(const nmc_store_t *s, const nmc_store_entity_t *e, const char **names,
                          size_t n)
{
    printf("  adapters: %zu%s\n", n, n ? " (PEFT layout; evaluate one with `nmc train JOB --eval-only --adapter PATH`)" : "");
    for (size_t i = 0; i < n; i++)
        printf("    %-28s %s\n", names[i], nmc_store_adapter_dir(s, e, names[i]));
}

/* `"checkpoint_tensors": [{name, dtype, shape}]`, the JSON form of --tensors */
static void json_tensors(nmc_json_writer_t *w, const nmc_store_entity_t *e, nmc_diags_t *d)
{
    nmc_st_t *st;
    if (nmc_st_open(e->path, &st, d) != 0) return;
    nmc_jw_key(w, "checkpoint_tensors");
    nmc_jw_begin_array(w);
    for (size_t i = 0; i < nmc_st_count(st); i++) {
        const nmc_st_tensor_t *t = nmc_st_at(st, i);
        nmc_jw_begin_object(w);
        nmc_jw_key(w, "name"), nmc_jw_string(w, t->name);
        nmc_jw_key(w, "dtype"), nmc_jw_string(w, nmc_st_dtype_name(t->dtype));
        nmc_jw_key(w, "shape");
        nmc_jw_begin_array(w);
        for (int k = 0; k < t->ndim; k++) nmc_jw_int(w, t->shape[k]);
        nmc_jw_end_array(w);
        nmc_jw_end_object(w);
    }
    nmc_jw_end_array(w);
    nmc_st_close(st);
}

static void print_tensors(const nmc_store_entity_t *e, nmc_diags_t *d)
{
    nmc_st_t *st;
    if (nmc_st_open(e->path, &st, d) != 0) return;
    for (size_t i = 0; i < nmc_st_count(st); i++) {
        const nmc_st_tensor_t *t = nmc_st_at(st, i);
        printf("  %-60s %-5s [", t->name, nmc_st_dtype_name(t->dtype));
        for (int k = 0; k < t->ndim; k++) printf("%s%lld", k ? ", " : "", (long long)t->shape[k]);
        printf("]\n");
    }
    nmc_st_close(st);
}

/* ---- subcommands ------------------------------------------------------------------------- */
static int open_store(nmc_store_t **s, nmc_diags_t *d)
{
    if (nmc_store_open(NULL, s, d) == 0) return 0;
    render(d);
    return 1;
}

static int do_import(nmc_entity_kind_t kind, const args_t *a, const char *cmd, const char *usage)
{
    if (!a->positional)
        return usage_error(cmd, usage, "import needs the %s to import", kind == NMC_ENTITY_MODEL
                                                                           ? "model directory"
                                                                           : "file or directory");
    if (!a->name) return usage_error(cmd, usage, "import needs --name %s", "[WORKSPACE/]NAME");
    nmc_diags_t d;
    nmc_diags_init(&d);
    nmc_store_t *s;
    if (open_store(&s, &d)) return nmc_diags_free(&d), 1;
    nmc_store_entity_t e;
    int rc = kind == NMC_ENTITY_MODEL ? nmc_store_import_model(s, a->positional, a->name, a->copy, &e, &d)
                                      : nmc_store_import_fileset(s, a->positional, a->name, a->copy, &e, &d);
    render(&d);
    if (rc == 0 && want_json(a)) {
        nmc_json_writer_t w;
        nmc_jw_init(&w, stdout, 2);
        json_entity(&w, &e, NULL, NULL, 0, NULL);
        putchar('\n');
    } else if (rc == 0) {
        printf("imported %s %s %s\n", kind == NMC_ENTITY_MODEL ? "model" : "fileset", e.ref,
               storage_note(&e));
        printf("  path:    %s\n", e.path);
        printf("  files:   %lld (%lld bytes)\n", (long long)e.files, (long long)e.bytes);
        if (kind == NMC_ENTITY_MODEL) text_model_summary(&e);
        printf("  use it:  \"%s\": \"%s\"\n", kind == NMC_ENTITY_MODEL ? "model" : "training", e.ref);
    }
    nmc_store_close(s);
    nmc_diags_free(&d);
    return rc == 0 ? 0 : 1;
}

static void text_list(nmc_entity_kind_t kind, const nmc_store_entity_t *v, size_t n, const char *home)
{
    const char *word = kind == NMC_ENTITY_MODEL ? "models" : "filesets";
    if (n == 0) {
        printf("no %s in the store (%s)\n", word, home);
        printf("import one: nmc %s import %s --name NAME\n", word,
               kind == NMC_ENTITY_MODEL ? "DIR" : "PATH");
        return;
    }
    if (kind == NMC_ENTITY_MODEL)
        printf("%-32s %-20s %12s %-9s %-9s %s\n", "NAME", "ARCHITECTURE", "PARAMETERS", "DTYPE",
               "STORAGE", "PATH");
    else
        printf("%-32s %8s %14s %-9s %s\n", "NAME", "FILES", "BYTES", "STORAGE", "PATH");
    for (size_t i = 0; i < n; i++) {
        const nmc_store_entity_t *e = &v[i];
        const char *st = e->by_reference ? "reference" : "copy";
        if (kind == NMC_ENTITY_MODEL)
            printf("%-32s %-20s %12lld %-9s %-9s %s\n", e->ref, e->model.architecture,
                   (long long)e->model.parameters, e->model.dtype, st, e->path);
        else
            printf("%-32s %8lld %14lld %-9s %s\n", e->ref, (long long)e->files,
                   (long long)e->bytes, st, e->path);
    }
}

static int do_list(nmc_entity_kind_t kind, const args_t *a, const char *cmd, const char *usage)
{
    if (a->positional) return usage_error(cmd, usage, "list takes no argument ('%s')", a->positional);
    nmc_diags_t d;
    nmc_diags_init(&d);
    nmc_store_t *s;
    if (open_store(&s, &d)) return nmc_diags_free(&d), 1;
    nmc_store_entity_t *v;
    size_t n;
    int rc = nmc_store_list(s, kind, &v, &n, &d);
    render(&d);
    if (rc == 0 && want_json(a)) {
        nmc_json_writer_t w;
        nmc_jw_init(&w, stdout, 2);
        nmc_jw_begin_array(&w);
        for (size_t i = 0; i < n; i++) json_entity(&w, &v[i], NULL, NULL, 0, NULL);
        nmc_jw_end_array(&w);
        putchar('\n');
    } else if (rc == 0) {
        text_list(kind, v, n, nmc_store_home(s));
    }
    bool damaged = d.n_errors > 0;
    nmc_store_close(s);
    nmc_diags_free(&d);
    return rc == 0 && !damaged ? 0 : 1;
}

static int do_show(nmc_entity_kind_t kind, const args_t *a, const char *cmd, const char *usage)
{
    if (!a->positional) return usage_error(cmd, usage, "show needs a %s", "[WORKSPACE/]NAME");
    nmc_diags_t d;
    nmc_diags_init(&d);
    nmc_store_t *s;
    if (open_store(&s, &d)) return nmc_diags_free(&d), 1;
    nmc_store_entity_t e;
    int rc = kind == NMC_ENTITY_MODEL ? nmc_store_resolve_model(s, a->positional, &e, &d)
                                      : nmc_store_resolve_fileset(s, a->positional, &e, &d);
    const char **adapters = NULL;
    size_t n_adapters = 0;
    if (rc == 0 && kind == NMC_ENTITY_MODEL)
        rc = nmc_store_list_adapters(s, &e, &adapters, &n_adapters, &d);
    if (rc == 0 && want_json(a)) {
        nmc_json_writer_t w;
        nmc_jw_init(&w, stdout, 2);
        json_entity(&w, &e, s, adapters, n_adapters, a->tensors ? &d : NULL);
        putchar('\n');
    } else if (rc == 0) {
        text_show(&e);
        if (kind == NMC_ENTITY_MODEL) text_adapters(s, &e, adapters, n_adapters);
        if (a->tensors && kind == NMC_ENTITY_MODEL) print_tensors(&e, &d);
    }
    if (d.n_errors) rc = -1;
    render(&d);
    nmc_store_close(s);
    nmc_diags_free(&d);
    return rc == 0 ? 0 : 1;
}

static int dispatch(nmc_entity_kind_t kind, int argc, char **argv)
{
    const char *cmd = kind == NMC_ENTITY_MODEL ? "models" : "filesets";
    const char *usage = kind == NMC_ENTITY_MODEL ? MODELS_USAGE : FILESETS_USAGE;
    if (argc < 1 || strcmp(argv[0], "--help") == 0 || strcmp(argv[0], "-h") == 0 ||
        strcmp(argv[0], "help") == 0) {
        fputs(usage, argc < 1 ? stderr : stdout);
        return argc < 1 ? 2 : 0;
    }
    args_t a;
    int rc = parse_args(argc, argv, cmd, usage, &a);
    if (rc) return rc;
    if (a.help) return fputs(usage, stdout), 0;
    if (a.tensors && (kind != NMC_ENTITY_MODEL || strcmp(argv[0], "show") != 0))
        return usage_error(cmd, usage, "--tensors belongs to `models show`%s", "");
    if (a.copy && strcmp(argv[0], "import") != 0)
        return usage_error(cmd, usage, "--copy belongs to `import`%s", "");
    if (strcmp(argv[0], "import") == 0) return do_import(kind, &a, cmd, usage);
    if (strcmp(argv[0], "list") == 0) return do_list(kind, &a, cmd, usage);
    if (strcmp(argv[0], "show") == 0) return do_show(kind, &a, cmd, usage);
    return usage_error(cmd, usage, "unknown subcommand '%s'", argv[0]);
}

int nmc_cmd_models(int argc, char **argv) { return dispatch(NMC_ENTITY_MODEL, argc, argv); }
int nmc_cmd_filesets(int argc, char **argv) { return dispatch(NMC_ENTITY_FILESET, argc, argv); }
