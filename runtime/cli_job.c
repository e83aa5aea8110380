/* cli_job.c — `nmc validate`, `nmc schema`, `nmc explain`: argument parsing, rendering and
 * exit codes around the job loader (runtime/job.h). Presentation only.
 * Exit codes: 0 ok, 1 invalid job, 2 usage or I/O error.
 */
#include "cli.h"
#include "job.h"
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

const char NMC_USAGE_VALIDATE[] =
    "usage: nmc validate [--backend automodel|unsloth] [--format text|json] [--color auto|always|never] FILE...\n"
    "Check job files (a bare spec or a request envelope {name, spec, ...}) against a backend's schema\n"
    "and its cross-field rules. The backend is --backend, else the file's \"$schema\"\n"
    "(.../automodel.schema.json or .../unsloth.schema.json), else automodel.\n"
    "Exit status: 0 all valid (warnings allowed), 1 some file invalid, 2 usage or I/O error.\n";
const char NMC_USAGE_SCHEMA[] =
    "usage: nmc schema automodel|unsloth\n"
    "Print the backend's JSON Schema (draft 2020-12), for editors and other validators.\n";
const char NMC_USAGE_EXPLAIN[] =
    "usage: nmc explain [--backend automodel|unsloth] FILE\n"
    "Print the resolved job as JSON: {\"spec\": every default filled in, \"derived\": backend,\n"
    "total_gpus, data_parallel_size, gradient accumulation, effective batch, output type, ...}.\n"
    "Exit status: 0 ok, 1 invalid job (diagnostics on stderr), 2 usage or I/O error.\n";

typedef struct {
    int backend;        /* -1: automatic */
    int json;           /* --format json */
    int color;          /* -1 auto, 0 never, 1 always */
    char **files;
    int n_files;
    int help;
} opts_t;

static int usage_error(const char *cmd, const char *usage, const char *fmt, const char *arg)
{
    fprintf(stderr, "nmc %s: error: ", cmd);
    fprintf(stderr, fmt, arg);
    fprintf(stderr, "\n%s", usage);
    return 2;
}

/* value of --opt VALUE or --opt=VALUE; advances *i; NULL when missing */
static const char *opt_value(int argc, char **argv, int *i, const char *name)
{
    size_t n = strlen(name);
    if (strncmp(argv[*i], name, n) == 0 && argv[*i][n] == '=') return argv[*i] + n + 1;
    if (strcmp(argv[*i], name) != 0) return NULL;
    if (*i + 1 >= argc) return "";
    return argv[++*i];
}

static int is_opt(const char *a, const char *name)
{
    size_t n = strlen(name);
    return strncmp(a, name, n) == 0 && (a[n] == 0 || a[n] == '=');
}

static int parse(int argc, char **argv, const char *cmd, const char *usage, int allow_format, opts_t *o)
{
    memset(o, 0, sizeof *o);
    o->backend = -1;
    o->color = -1;
    o->files = calloc((size_t)argc + 1, sizeof *o->files);
    if (!o->files) abort();
    int only_files = 0;
    for (int i = 0; i < argc; i++) {
        const char *a = argv[i], *v;
        if (only_files || a[0] != '-' || strcmp(a, "-") == 0) {
            o->files[o->n_files++] = argv[i];
        } else if (strcmp(a, "--") == 0) {
            only_files = 1;
        } else if (strcmp(a, "--help") == 0 || strcmp(a, "-h") == 0) {
            o->help = 1;
        } else if (is_opt(a, "--backend")) {
            v = opt_value(argc, argv, &i, "--backend");
            o->backend = nmc_backend_by_name(v);
            if (o->backend < 0) return usage_error(cmd, usage, "unknown backend '%s' (use automodel or unsloth)", v);
        } else if (allow_format && is_opt(a, "--format")) {
            v = opt_value(argc, argv, &i, "--format");
            if (strcmp(v, "json") == 0) o->json = 1;
            else if (strcmp(v, "text") != 0) return usage_error(cmd, usage, "unknown format '%s' (use text or json)", v);
        } else if (allow_format && is_opt(a, "--color")) {
            v = opt_value(argc, argv, &i, "--color");
            if (strcmp(v, "always") == 0) o->color = 1;
            else if (strcmp(v, "never") == 0) o->color = 0;
            else if (strcmp(v, "auto") == 0) o->color = -1;
            else return usage_error(cmd, usage, "unknown --color value '%s' (use auto, always or never)", v);
        } else {
            return usage_error(cmd, usage, "unknown option '%s'", a);
        }
    }
    return 0;
}

static int want_color(int setting)
{
    if (setting >= 0) return setting;
    const char *term = getenv("TERM");
    return isatty(STDOUT_FILENO) && !getenv("NO_COLOR") && !(term && strcmp(term, "dumb") == 0);
}

static void plural(FILE *out, size_t n, const char *word)
{
    fprintf(out, "%zu %s%s", n, word, n == 1 ? "" : "s");
}

/* One file's entry of the --format json document. */
static void json_entry(nmc_json_writer_t *w, const char *file, const nmc_job_t *job, const nmc_diags_t *d)
{
    nmc_jw_begin_object(w);
    nmc_jw_key(w, "file");
    nmc_jw_string(w, file);
    nmc_jw_key(w, "backend");
    nmc_jw_string(w, job ? job->backend->name : "automodel");
    nmc_jw_key(w, "valid");
    nmc_jw_bool(w, d->n_errors == 0);
    nmc_jw_key(w, "errors");
    nmc_jw_int(w, (int64_t)d->n_errors);
    nmc_jw_key(w, "warnings");
    nmc_jw_int(w, (int64_t)d->n_warnings);
    nmc_jw_key(w, "diagnostics");
    nmc_jw_begin_array(w);
    static const char *const SEV[] = { "error", "warning", "note" };
    for (size_t i = 0; i < d->n; i++) {
        const nmc_diag_t *r = &d->items[i];
        nmc_jw_begin_object(w);
        nmc_jw_key(w, "severity");
        nmc_jw_string(w, SEV[r->sev]);
        nmc_jw_key(w, "code");
        nmc_jw_string(w, r->code);
        if (r->line) {
            nmc_jw_key(w, "line");
            nmc_jw_int(w, r->line);
            nmc_jw_key(w, "column");
            nmc_jw_int(w, r->col);
        }
        const char *keys[] = { "path", "pointer", "message", "expected", "got", "help" };
        const char *vals[] = { r->path, r->pointer, r->message, r->expected, r->got, r->help };
        for (int k = 0; k < 6; k++) {
            if (!vals[k]) continue;
            nmc_jw_key(w, keys[k]);
            nmc_jw_string(w, vals[k]);
        }
        nmc_jw_end_object(w);
    }
    nmc_jw_end_array(w);
    if (d->n_dropped) {
        nmc_jw_key(w, "dropped");
        nmc_jw_int(w, (int64_t)d->n_dropped);
    }
    nmc_jw_end_object(w);
}

int nmc_cmd_validate(int argc, char **argv)
{
    opts_t o;
    int rc = parse(argc, argv, "validate", NMC_USAGE_VALIDATE, 1, &o);
    if (rc || o.help) {
        free(o.files);
        if (o.help && !rc) fputs(NMC_USAGE_VALIDATE, stdout);
        return rc;
    }
    if (o.n_files == 0) {
        free(o.files);
        return usage_error("validate", NMC_USAGE_VALIDATE, "no job file given%s", "");
    }
    int color = want_color(o.color);
    int status = 0;
    nmc_json_writer_t w;
    if (o.json) {
        nmc_jw_init(&w, stdout, 2);
        nmc_jw_begin_object(&w);
        nmc_jw_key(&w, "files");
        nmc_jw_begin_array(&w);
    }
    nmc_job_opts_t jo = { .backend = o.backend };
    for (int i = 0; i < o.n_files; i++) {
        const char *file = o.files[i];
        nmc_diags_t d;
        nmc_diags_init(&d);
        nmc_job_t *job = NULL;
        nmc_job_status_t st = nmc_job_load_file(file, &jo, &job, &d);
        if (st == NMC_JOB_IO_ERROR) status = 2;
        else if (st == NMC_JOB_INVALID && status == 0) status = 1;
        if (o.json) {
            json_entry(&w, file, job, &d);
        } else {
            if (i) fputc('\n', stdout);
            if (d.n) {
                nmc_diags_render_text(&d, job ? job->src : NULL, job ? job->src_len : 0, stdout, color);
                fputc('\n', stdout);
            }
            if (d.n_errors == 0) {
                printf("%s: valid", file);
                if (d.n_warnings) fputs(" (", stdout), plural(stdout, d.n_warnings, "warning"), fputc(')', stdout);
            } else {
                printf("%s: invalid (", file);
                plural(stdout, d.n_errors, "error");
                fputs(", ", stdout);
                plural(stdout, d.n_warnings, "warning");
                fputc(')', stdout);
            }
            fputc('\n', stdout);
        }
        nmc_job_free(job);
        nmc_diags_free(&d);
    }
    if (o.json) {
        nmc_jw_end_array(&w);
        nmc_jw_end_object(&w);
        fputc('\n', stdout);
    }
    free(o.files);
    return status;
}

int nmc_cmd_schema(int argc, char **argv)
{
    if (argc == 1 && (strcmp(argv[0], "--help") == 0 || strcmp(argv[0], "-h") == 0)) {
        fputs(NMC_USAGE_SCHEMA, stdout);
        return 0;
    }
    if (argc != 1) return usage_error("schema", NMC_USAGE_SCHEMA, "expected one backend name%s", "");
    int b = nmc_backend_by_name(argv[0]);
    if (b < 0) return usage_error("schema", NMC_USAGE_SCHEMA, "unknown backend '%s' (use automodel or unsloth)", argv[0]);
    const char *text = nmc_schema_backends[b]->json_schema;
    if (!text || !text[0]) {
        fprintf(stderr, "nmc schema: error: this build has no JSON Schema for %s\n"
                        "help: run `make gen` (needs codegen/jsonschema.lua) and rebuild\n", argv[0]);
        return 2;
    }
    fputs(text, stdout);
    return 0;
}

int nmc_cmd_explain(int argc, char **argv)
{
    opts_t o;
    int rc = parse(argc, argv, "explain", NMC_USAGE_EXPLAIN, 0, &o);
    if (rc || o.help) {
        free(o.files);
        if (o.help && !rc) fputs(NMC_USAGE_EXPLAIN, stdout);
        return rc;
    }
    if (o.n_files != 1) {
        free(o.files);
        return usage_error("explain", NMC_USAGE_EXPLAIN, "expected exactly one job file%s", "");
    }
    nmc_diags_t d;
    nmc_diags_init(&d);
    nmc_job_t *job = NULL;
    nmc_job_opts_t jo = { .backend = o.backend };
    nmc_job_status_t st = nmc_job_load_file(o.files[0], &jo, &job, &d);
    if (d.n) nmc_diags_render_text(&d, job ? job->src : NULL, job ? job->src_len : 0, stderr, want_color(-1) && isatty(2));
    if (st == NMC_JOB_VALID) nmc_job_explain(job, stdout);
    else fprintf(stderr, "%s: %s\n", o.files[0], st == NMC_JOB_IO_ERROR ? "cannot be read" : "invalid; nothing to explain");
    nmc_job_free(job);
    nmc_diags_free(&d);
    free(o.files);
    return st == NMC_JOB_VALID ? 0 : st == NMC_JOB_IO_ERROR ? 2 : 1;
}
