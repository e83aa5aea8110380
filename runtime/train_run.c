/* train_run.c — the run directory of a training job:
 *   spec.json        the resolved job (nmc_job_explain), written by the CLI
 *   status.json      {"name","status","updated_at","step","total_steps","error","output"},
 *                    status from the platform's job status enum (created, active,
 *                    completed, error, cancelled); rewritten atomically on each change
 *   train.log        human log, one timestamped line per event
 *   metrics.jsonl    one JSON object per logged step / validation pass
 *   checkpoints/     see train_ckpt.c
 * Plus small helpers shared by the trainer files (mkdir -p, FNV-1a hash).
 */
#include "train.h"
#include "json.h"
#include "store.h"
#include <errno.h>
#include <math.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>

const char *nmc_job_state_name(nmc_job_state_t s)
{
    static const char *const names[] = {"created", "active", "completed", "error", "cancelled"};
    return (unsigned)s < 5 ? names[s] : "error";
}

void nmc_hash_hex(const void *buf, size_t n, char out[17])
{
    uint64_t h = 1469598103934665603ULL;
    const unsigned char *p = buf;
    for (size_t i = 0; i < n; i++) h = (h ^ p[i]) * 1099511628211ULL;
    snprintf(out, 17, "%016llx", (unsigned long long)h);
}

int nmc_run_mkdirs(const char *path, nmc_diags_t *d)
{
    char buf[4096];
    size_t n = strlen(path);
    if (n == 0 || n >= sizeof buf) {
        nmc_diag_add(d, NMC_SEV_ERROR, "io-error", path, 0, 0, 0, "path too long or empty");
        return -1;
    }
    memcpy(buf, path, n + 1);
    for (size_t i = 1; i <= n; i++) {
        if (buf[i] != '/' && buf[i] != '\0') continue;
        char c = buf[i];
        buf[i] = '\0';
        if (mkdir(buf, 0755) != 0 && errno != EEXIST) {
            nmc_diag_add(d, NMC_SEV_ERROR, "io-error", buf, 0, 0, 0, "cannot create directory: %s",
                         strerror(errno));
            return -1;
        }
        buf[i] = c;
    }
    return 0;
}

static void iso_now(char *buf, size_t cap)
{
    time_t t = time(NULL);
    struct tm tm;
    gmtime_r(&t, &tm);
    strftime(buf, cap, "%Y-%m-%dT%H:%M:%SZ", &tm);
}

int nmc_run_write_status(const char *run_dir, const char *name, nmc_job_state_t s, int64_t step,
                         int64_t total, const char *error, const char *output, nmc_diags_t *d)
{
    char path[4096], now[32];
    snprintf(path, sizeof path, "%s/status.json", run_dir);
    iso_now(now, sizeof now);
    nmc_atomic_file_t af;
    if (nmc_atomic_begin(&af, path, d)) return -1;
    nmc_json_writer_t w;
    nmc_jw_init(&w, af.f, 2);
    nmc_jw_begin_object(&w);
    nmc_jw_key(&w, "name"), name ? nmc_jw_string(&w, name) : nmc_jw_null(&w);
    nmc_jw_key(&w, "status"), nmc_jw_string(&w, nmc_job_state_name(s));
    nmc_jw_key(&w, "updated_at"), nmc_jw_string(&w, now);
    nmc_jw_key(&w, "step"), nmc_jw_int(&w, step);
    nmc_jw_key(&w, "total_steps"), nmc_jw_int(&w, total);
    nmc_jw_key(&w, "error"), error ? nmc_jw_string(&w, error) : nmc_jw_null(&w);
    nmc_jw_key(&w, "output"), output ? nmc_jw_string(&w, output) : nmc_jw_null(&w);
    nmc_jw_end_object(&w);
    fputc('\n', af.f);
    return nmc_atomic_commit(&af, d);
}

void nmc_run_log(const char *run_dir, const char *fmt, ...)
{
    if (!run_dir) return;
    char path[4096], now[32];
    snprintf(path, sizeof path, "%s/train.log", run_dir);
    FILE *f = fopen(path, "a");
    if (!f) return; /* the log is best effort; status.json carries the outcome */
    iso_now(now, sizeof now);
    fprintf(f, "%s ", now);
    va_list ap;
    va_start(ap, fmt);
    vfprintf(f, fmt, ap);
    va_end(ap);
    fputc('\n', f);
    fclose(f);
}

static void num(nmc_json_writer_t *w, const char *key, double v)
{
    nmc_jw_key(w, key);
    if (isfinite(v)) nmc_jw_double(w, v);
    else nmc_jw_null(w);
}

void nmc_run_metrics(const char *run_dir, const nmc_train_ev_t *ev)
{
    if (!run_dir) return;
    char path[4096];
    snprintf(path, sizeof path, "%s/metrics.jsonl", run_dir);
    FILE *f = fopen(path, "a");
    if (!f) return;
    nmc_json_writer_t w;
    nmc_jw_init(&w, f, 0);
    nmc_jw_begin_object(&w);
    nmc_jw_key(&w, "step"), nmc_jw_int(&w, ev->step);
    num(&w, "epoch", ev->epoch);
    if (ev->kind == NMC_TRAIN_EV_VAL) {
        num(&w, "val_loss", ev->val_loss);
    } else {
        num(&w, "loss", ev->loss);
        num(&w, "lr", ev->lr);
        num(&w, "grad_norm", ev->grad_norm);
        num(&w, "tokens_per_s", ev->tokens_per_s);
        num(&w, "elapsed_s", ev->elapsed_s);
        num(&w, "eta_s", ev->eta_s);
    }
    nmc_jw_end_object(&w);
    fputc('\n', f);
    fclose(f);
}
