/* dataset.c — opening a dataset: the model files, the job's fields, the fileset's files,
 * streaming every row through dataset_rows.c into a sample file (or loading it from the
 * cache), truncation and zero-trainable accounting, the validation hold-out and the
 * packing plan. Iteration is dataset_iter.c; the cache format dataset_cache.c.
 */
#include "dataset_int.h"
#include "store.h"
#include <dirent.h>
#include <errno.h>
#include <math.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

/* One split: the samples of a source it uses, and its units (packed rows or samples). */
typedef struct {
    ds_source_t *src;
    int64_t *samples;     /* indices into src->idx, file order */
    int64_t n;
    int64_t n_units;
    int64_t *unit_off;    /* unit u holds samples[unit_mem[unit_off[u] .. unit_off[u+1])] */
    int64_t *unit_mem;    /* positions in samples[] */
    nmc_dataset_plan_t plan;
    nmc_dataset_report_t rep;
} ds_view_t;

struct nmc_dataset {
    nmc_dataset_opts_t o;
    const nmc_dataset_model_t *m;
    ds_source_t train, valid;
    bool has_valid_src;
    ds_view_t view[2];
    char cache_path[4096];
};

/* ---- model files ------------------------------------------------------------------------ */
static void hash_file(ds_hash_t *h, const char *path)
{
    FILE *f = fopen(path, "rb");
    ds_hash_u64(h, f ? 1 : 0);
    if (!f) return;
    char buf[65536];
    size_t k;
    while ((k = fread(buf, 1, sizeof buf, f)) > 0) ds_hash_bytes(h, buf, k);
    fclose(f);
}

static const char *token_text(const nmc_json_t *config, const char *key)
{
    const nmc_json_t *v = nmc_json_get(config, key);
    if (v && v->kind == NMC_JSON_OBJECT) v = nmc_json_get(v, "content");
    return v && v->kind == NMC_JSON_STRING ? v->u.str.s : NULL;
}

/* Special tokens: tokenizer_config.json names them; the tokenizer's own guesses otherwise. */
static void set_specials(nmc_dataset_model_t *m, const nmc_json_t *config)
{
    static const struct { const char *key; nmc_tok_role_t role; } K[] = {
        {"bos_token", NMC_TOK_BOS}, {"eos_token", NMC_TOK_EOS}, {"pad_token", NMC_TOK_PAD}};
    for (size_t i = 0; config && i < 3; i++) {
        const char *t = token_text(config, K[i].key);
        if (t) nmc_tokenizer_set_special(m->tok, K[i].role, t);
    }
    m->bos_id = nmc_tokenizer_bos_id(m->tok);
    m->eos_id = nmc_tokenizer_eos_id(m->tok);
    m->pad_id = nmc_tokenizer_pad_id(m->tok);
    if (m->pad_id < 0) m->pad_id = m->eos_id; /* HF collators pad with eos when there is no pad */
    size_t n;
    const char *s;
    /* Texts of BOS/EOS as in the config (what TRL appends), else the token strings. */
    s = config ? token_text(config, "bos_token") : NULL;
    if (!s && m->bos_id >= 0 && (s = nmc_tokenizer_id_to_token(m->tok, m->bos_id, &n)))
        s = nmc_arena_strndup(m->arena, s, n);
    m->bos_text = s ? nmc_arena_strdup(m->arena, s) : NULL;
    s = config ? token_text(config, "eos_token") : NULL;
    if (!s && m->eos_id >= 0 && (s = nmc_tokenizer_id_to_token(m->tok, m->eos_id, &n)))
        s = nmc_arena_strndup(m->arena, s, n);
    m->eos_text = s ? nmc_arena_strdup(m->arena, s) : NULL;
}

int nmc_dataset_model_from(nmc_tokenizer_t *tok, const nmc_json_t *config, const char *config_file,
                           const char *fingerprint_src, nmc_dataset_model_t **out, nmc_diags_t *d)
{
    nmc_dataset_model_t *m = calloc(1, sizeof *m);
    if (!m) abort();
    m->tok = tok;
    m->arena = nmc_arena_new();
    *out = NULL;
    const nmc_json_t *ct = config ? nmc_json_get(config, "chat_template") : NULL;
    if (ct && ct->kind != NMC_JSON_NULL) {
        if (nmc_chat_template_from_config(m->arena, config, config_file, &m->tmpl, d) != 0) {
            nmc_dataset_model_free(m);
            return -1;
        }
        /* the template text, to know whether it renders the date */
        if (ct->kind == NMC_JSON_STRING) m->template_uses_time = strstr(ct->u.str.s, "strftime_now") != NULL;
        else m->template_uses_time = true; /* a list: be safe */
    }
    set_specials(m, config);
    ds_hash_t h;
    ds_hash_init(&h);
    ds_hash_str(&h, fingerprint_src);
    m->fingerprint[0] = h.a, m->fingerprint[1] = h.b;
    *out = m;
    return 0;
}

int nmc_dataset_model_load(const char *dir, nmc_dataset_model_t **out, nmc_diags_t *d)
{
    *out = NULL;
    char tp[4096], cp[4096];
    snprintf(tp, sizeof tp, "%s/tokenizer.json", dir);
    snprintf(cp, sizeof cp, "%s/tokenizer_config.json", dir);
    if (access(tp, R_OK) != 0) {
        nmc_diag_t *e = nmc_diag_add(d, NMC_SEV_ERROR, "data-no-files", tp, 0, 0, 0,
                                     "the model has no tokenizer.json");
        nmc_diag_set_help(e, "copy the tokenizer.json of the checkpoint into the model directory and "
                             "import it again");
        return -1;
    }
    nmc_tokenizer_t *tok = nmc_tokenizer_load(tp, d);
    if (!tok) return -1;
    nmc_arena_t *a = nmc_arena_new();
    nmc_json_t *config = NULL;
    nmc_json_limits_t lim = {.max_bytes = NMC_JSON_DATA_MAX_BYTES};
    if (access(cp, R_OK) == 0 && nmc_json_parse_file(a, cp, &lim, &config, NULL, NULL, d) != 0) {
        nmc_tokenizer_free(tok);
        nmc_arena_free(a);
        return -1;
    }
    ds_hash_t h;
    ds_hash_init(&h);
    hash_file(&h, tp);
    hash_file(&h, cp);
    char fp[40];
    snprintf(fp, sizeof fp, "%016llx%016llx", (unsigned long long)h.a, (unsigned long long)h.b);
    int rc = nmc_dataset_model_from(tok, config, cp, fp, out, d);
    if (rc != 0) nmc_tokenizer_free(tok);
    nmc_arena_free(a); /* the template copied what it needs into the model's arena */
    return rc;
}

void nmc_dataset_model_free(nmc_dataset_model_t *m)
{
    if (!m) return;
    nmc_tokenizer_free(m->tok);
    nmc_arena_free(m->arena);
    free(m);
}

/* ---- fileset files ------------------------------------------------------------------------ */
typedef struct {
    char **v;
    size_t n, cap;
} strv_t;

static void strv_push(strv_t *s, const char *x)
{
    if (s->n == s->cap) {
        s->cap = s->cap ? s->cap * 2 : 16;
        s->v = realloc(s->v, s->cap * sizeof *s->v);
        if (!s->v) abort();
    }
    s->v[s->n++] = strdup(x);
}

static int by_str(const void *a, const void *b) { return strcmp(*(char *const *)a, *(char *const *)b); }

static bool is_jsonl(const char *name)
{
    size_t n = strlen(name);
    return n > 6 && strcmp(name + n - 6, ".jsonl") == 0;
}

/* Depth 16: filesets are shallow; it stops a symlink loop. */
static int walk(const char *dir, int depth, strv_t *out, nmc_diags_t *d)
{
    DIR *dp = opendir(dir);
    if (!dp) {
        nmc_diag_add(d, NMC_SEV_ERROR, "io-error", dir, 0, 0, 0, "cannot read directory: %s", strerror(errno));
        return -1;
    }
    struct dirent *e;
    int rc = 0;
    while (rc == 0 && (e = readdir(dp))) {
        if (e->d_name[0] == '.') continue;
        char p[4096];
        snprintf(p, sizeof p, "%s/%s", dir, e->d_name);
        struct stat st;
        if (stat(p, &st) != 0) continue;
        if (S_ISDIR(st.st_mode) && depth < 16) rc = walk(p, depth + 1, out, d);
        else if (S_ISREG(st.st_mode) && is_jsonl(e->d_name)) strv_push(out, p);
    }
    closedir(dp);
    return rc;
}

int nmc_dataset_list_files(nmc_arena_t *a, const char *path, const char ***files, size_t *n, nmc_diags_t *d)
{
    struct stat st;
    *files = NULL, *n = 0;
    if (stat(path, &st) != 0) {
        nmc_diag_add(d, NMC_SEV_ERROR, "io-error", path, 0, 0, 0, "cannot open: %s", strerror(errno));
        return -1;
    }
    strv_t v = {0};
    int rc = 0;
    if (S_ISDIR(st.st_mode)) rc = walk(path, 0, &v, d);
    else strv_push(&v, path);
    if (rc == 0 && v.n == 0) {
        nmc_diag_t *e = nmc_diag_add(d, NMC_SEV_ERROR, "data-no-files", path, 0, 0, 0, "the fileset has no .jsonl files");
        nmc_diag_set_help(e, "training data is JSONL: one JSON object per line, in files named *.jsonl");
        rc = -1;
    }
    if (rc == 0) {
        qsort(v.v, v.n, sizeof *v.v, by_str);
        const char **out = nmc_arena_alloc(a, v.n * sizeof *out);
        for (size_t i = 0; i < v.n; i++) out[i] = nmc_arena_strdup(a, v.v[i]);
        *files = out, *n = v.n;
    }
    for (size_t i = 0; i < v.n; i++) free(v.v[i]);
    free(v.v);
    return rc;
}

/* ---- line reader: bounded memory ------------------------------------------------------------ */
typedef struct {
    FILE *f;
    char blk[1 << 16];
    size_t bpos, blen;
    char *line;
    size_t len, cap;
    bool too_long;
} lr_t;

static void lr_append(lr_t *r, const char *p, size_t n)
{
    if (r->too_long) return;
    if (r->len + n > NMC_DATASET_MAX_LINE) {
        r->too_long = true;
        return;
    }
    if (r->len + n + 1 > r->cap) {
        size_t c = r->cap ? r->cap : 4096;
        while (c < r->len + n + 1) c *= 2;
        char *x = realloc(r->line, c);
        if (!x) abort();
        r->line = x, r->cap = c;
    }
    memcpy(r->line + r->len, p, n);
    r->len += n;
}

/* Next line (without '\n' or "\r\n"). Returns 1, 0 at end of file, -1 on a read error. */
static int lr_next(lr_t *r)
{
    r->len = 0, r->too_long = false;
    bool any = false;
    for (;;) {
        if (r->bpos == r->blen) {
            r->blen = fread(r->blk, 1, sizeof r->blk, r->f);
            r->bpos = 0;
            if (r->blen == 0) {
                if (ferror(r->f)) return -1;
                return any ? 1 : 0;
            }
        }
        any = true;
        char *s = r->blk + r->bpos, *nl = memchr(s, '\n', r->blen - r->bpos);
        size_t n = nl ? (size_t)(nl - s) : r->blen - r->bpos;
        lr_append(r, s, n);
        r->bpos += n + (nl ? 1 : 0);
        if (nl) break;
    }
    if (!r->too_long && r->len && r->line[r->len - 1] == '\r') r->len--;
    return 1;
}

static bool blank(const char *s, size_t n)
{
    for (size_t i = 0; i < n; i++)
        if (s[i] != ' ' && s[i] != '\t' && s[i] != '\r') return false;
    return true;
}

/* ---- building a source --------------------------------------------------------------------- */
static void add_loc(nmc_dataset_loc_t *locs, int64_t *n, const char *file, uint32_t line, int64_t detail)
{
    if (*n >= NMC_DATASET_REPORT_LOCS) return;
    locs[*n].file = file, locs[*n].line = line, locs[*n].detail = detail;
    (*n)++;
}

static int64_t trunc_limit(const nmc_dataset_opts_t *o)
{
    int64_t lim = o->max_seq_length > 0 ? o->max_seq_length : INT32_MAX;
    if (o->packing && o->pack_size > 0 && o->pack_size < lim) lim = o->pack_size;
    return lim;
}

static void push_entry(ds_source_t *s, ds_entry_t e)
{
    if (s->n == s->cap) {
        s->cap = s->cap ? s->cap * 2 : 1024;
        s->idx = realloc(s->idx, (size_t)s->cap * sizeof *s->idx);
        if (!s->idx) abort();
    }
    s->idx[s->n++] = e;
}

/* Keep one tokenized row: truncate, account, write. Returns 0 or -1 (write error). */
static int keep(ds_source_t *s, const nmc_dataset_opts_t *o, FILE *f, ds_toks_t *t, uint32_t fi, uint32_t line,
                bool approx)
{
    nmc_dataset_report_t *r = &s->rep;
    int64_t lim = trunc_limit(o), n = (int64_t)t->n;
    bool cut = n > lim;
    if (cut) {
        r->truncated++;
        r->truncated_tokens += n - lim;
        add_loc(r->truncated_at, &r->n_truncated_locs, s->files[fi], line, n);
        n = lim;
    }
    uint32_t labels = 0;
    for (int64_t i = 1; i < n; i++) labels += t->mask[i];
    if (labels == 0) {
        r->zero_trainable++;
        add_loc(r->zero_at, &r->n_zero_locs, s->files[fi], line, n);
        return 0;
    }
    r->mask_approx += approx;
    ds_entry_t e = {.off = (uint64_t)ftello(f), .n = (uint32_t)n, .file = fi, .truncated = cut, .line = line,
                    .labels = labels};
    if (fwrite(t->ids, sizeof(int32_t), (size_t)n, f) != (size_t)n || fwrite(t->mask, 1, (size_t)n, f) != (size_t)n)
        return -1;
    push_entry(s, e);
    r->samples++;
    r->tokens += n;
    r->label_tokens += labels;
    if (r->samples == 1 || n < r->min_len) r->min_len = n;
    if (n > r->max_len) r->max_len = n;
    return 0;
}

static nmc_dataset_status_t read_file(ds_source_t *s, const nmc_dataset_opts_t *o, ds_rows_t *rows, FILE *out,
                                      uint32_t fi, ds_toks_t *t, bool *warned, nmc_diags_t *d)
{
    const char *path = s->files[fi];
    lr_t *r = calloc(1, sizeof *r);
    if (!r) abort();
    r->f = fopen(path, "rb");
    if (!r->f) {
        nmc_diag_t *e = nmc_diag_add(d, NMC_SEV_ERROR, "io-error", path, 0, 0, 0, "cannot open data file: %s",
                                     strerror(errno));
        nmc_diag_set_help(e, "check that the fileset's files still exist and are readable");
        free(r);
        return NMC_DATASET_IO_ERROR;
    }
    nmc_dataset_status_t st = NMC_DATASET_OK;
    uint32_t line = 0;
    int k;
    while ((k = lr_next(r)) == 1) {
        line++;
        if (r->too_long) {
            s->rep.rows++, s->rep.invalid++;
            nmc_diag_t *e = nmc_diag_add(d, NMC_SEV_ERROR, "data-line-too-long", path, line, 1, 0,
                                         "line is longer than %zu MiB", NMC_DATASET_MAX_LINE >> 20);
            nmc_diag_set_help(e, "JSONL holds one row per line; a file that is one JSON array must be "
                                 "rewritten with one object per line");
            continue;
        }
        if (blank(r->line, r->len)) {
            s->rep.blank_lines++;
            continue;
        }
        s->rep.rows++;
        bool approx = false;
        if (ds_rows_process(rows, r->line, r->len, path, line, t, &approx, d) != 0) {
            s->rep.invalid++;
            continue;
        }
        if (approx && !*warned) {
            *warned = true;
            nmc_diag_t *e = nmc_diag_add(d, NMC_SEV_WARNING, "data-mask-approx", path, line, 1, 0,
                                         "token offsets could not be derived from this tokenizer's vocabulary; "
                                         "assistant-mask boundaries come from encoding the text before each boundary");
            nmc_diag_set_help(e, "the report counts the samples concerned (mask_approx)");
        }
        if (st == NMC_DATASET_OK && keep(s, o, out, t, fi, line, approx) != 0) {
            nmc_diag_add(d, NMC_SEV_ERROR, "io-error", NULL, 0, 0, 0, "cannot write the dataset sample file: %s",
                         strerror(errno));
            st = NMC_DATASET_IO_ERROR;
        }
    }
    if (k < 0) {
        nmc_diag_add(d, NMC_SEV_ERROR, "io-error", path, line, 0, 0, "read error: %s", strerror(errno));
        st = NMC_DATASET_IO_ERROR;
    }
    fclose(r->f);
    free(r->line);
    free(r);
    return st;
}

static int mkdirs(const char *dir)
{
    char p[4096];
    snprintf(p, sizeof p, "%s", dir);
    for (char *s = p + 1; *s; s++) {
        if (*s != '/') continue;
        *s = '\0';
        if (mkdir(p, 0777) != 0 && errno != EEXIST) return -1;
        *s = '/';
    }
    return mkdir(p, 0777) != 0 && errno != EEXIST ? -1 : 0;
}

/* Tokenize the files of s into a sample file: the cache entry when o->cache_dir is set. */
static nmc_dataset_status_t build_source(nmc_dataset_t *ds, ds_source_t *s, char *cache_path, size_t cap,
                                         nmc_diags_t *d)
{
    const nmc_dataset_opts_t *o = &ds->o;
    uint64_t key[2] = {0, 0};
    nmc_atomic_file_t af = {0};
    bool cached = false;
    FILE *f = NULL;
    cache_path[0] = '\0';
    if (o->cache_dir) {
        if (ds_cache_key(o, ds->m, s->files, s->n_files, key, d) != 0) return NMC_DATASET_IO_ERROR;
        snprintf(cache_path, cap, "%s/%016llx%016llx.nmcds", o->cache_dir, (unsigned long long)key[0],
                 (unsigned long long)key[1]);
        if (ds_cache_load(cache_path, key, s, d) == 1) return NMC_DATASET_OK;
        nmc_diags_t quiet;
        nmc_diags_init(&quiet);
        if (mkdirs(o->cache_dir) == 0 && nmc_atomic_begin(&af, cache_path, &quiet) == 0) f = af.f, cached = true;
        else {
            nmc_diag_t *e = nmc_diag_add(d, NMC_SEV_WARNING, "data-cache", o->cache_dir, 0, 0, 0,
                                         "cannot write the tokenization cache here; continuing without it");
            nmc_diag_set_help(e, "check the directory's permissions and free space");
            cache_path[0] = '\0';
        }
        nmc_diags_free(&quiet);
    }
    if (!f && !(f = tmpfile())) {
        nmc_diag_add(d, NMC_SEV_ERROR, "io-error", NULL, 0, 0, 0, "cannot create a temporary sample file: %s",
                     strerror(errno));
        return NMC_DATASET_IO_ERROR;
    }
    static const char zeros[DS_CACHE_HEADER_BYTES];
    nmc_dataset_status_t st = fwrite(zeros, 1, sizeof zeros, f) == sizeof zeros ? NMC_DATASET_OK : NMC_DATASET_IO_ERROR;
    ds_rows_t *rows = ds_rows_new(o, ds->m);
    ds_toks_t t = {0};
    bool warned = false;
    for (size_t i = 0; st != NMC_DATASET_IO_ERROR && i < s->n_files; i++) {
        nmc_dataset_status_t fs = read_file(s, o, rows, f, (uint32_t)i, &t, &warned, d);
        if (fs != NMC_DATASET_OK) st = fs;
    }
    ds_toks_free(&t);
    ds_rows_free(rows);
    if (st == NMC_DATASET_OK && s->rep.invalid) st = NMC_DATASET_INVALID;
    if (st != NMC_DATASET_OK) {
        if (cached) nmc_atomic_abort(&af);
        else fclose(f);
        cache_path[0] = '\0';
        return st;
    }
    if (!cached) {
        s->store = f;
        return fflush(f) == 0 ? NMC_DATASET_OK : NMC_DATASET_IO_ERROR;
    }
    if (ds_cache_finish(f, key, s, d) != 0 || nmc_atomic_commit(&af, d) != 0) {
        nmc_atomic_abort(&af);
        return NMC_DATASET_IO_ERROR;
    }
    s->store = fopen(cache_path, "rb");
    if (!s->store) {
        nmc_diag_add(d, NMC_SEV_ERROR, "io-error", cache_path, 0, 0, 0, "cannot reopen the cache entry: %s",
                     strerror(errno));
        return NMC_DATASET_IO_ERROR;
    }
    return NMC_DATASET_OK;
}

/* ---- splits and plans ------------------------------------------------------------------------ */
static void shuffle_idx(int64_t *v, int64_t n, uint64_t seed)
{
    uint64_t st = seed;
    for (int64_t i = n - 1; i > 0; i--) {
        int64_t j = (int64_t)(ds_splitmix64(&st) % (uint64_t)(i + 1));
        int64_t x = v[i];
        v[i] = v[j], v[j] = x;
    }
}

static int cmp_i64(const void *a, const void *b)
{
    int64_t x = *(const int64_t *)a, y = *(const int64_t *)b;
    return (x > y) - (x < y);
}

static void view_report(ds_view_t *v)
{
    nmc_dataset_report_t *r = &v->rep;
    memset(r, 0, sizeof *r);
    r->rows = r->samples = v->n;
    for (int64_t i = 0; i < v->n; i++) {
        const ds_entry_t *e = &v->src->idx[v->samples[i]];
        r->tokens += e->n, r->label_tokens += e->labels, r->truncated += e->truncated;
        if (i == 0 || e->n < r->min_len) r->min_len = e->n;
        if (e->n > r->max_len) r->max_len = e->n;
    }
    r->from_cache = v->src->rep.from_cache;
}

static void plan_view(ds_view_t *v, const nmc_dataset_opts_t *o)
{
    int64_t n = v->n;
    v->unit_off = malloc((size_t)(n + 1) * sizeof(int64_t));
    v->unit_mem = malloc((size_t)(n ? n : 1) * sizeof(int64_t));
    if (!v->unit_off || !v->unit_mem) abort();
    memset(&v->plan, 0, sizeof v->plan);
    if (!o->packing) {
        for (int64_t i = 0; i <= n; i++) v->unit_off[i] = i;
        for (int64_t i = 0; i < n; i++) v->unit_mem[i] = i;
        v->n_units = v->plan.units = n;
        return;
    }
    uint32_t *len = malloc((size_t)(n ? n : 1) * sizeof *len);
    int64_t *bin = malloc((size_t)(n ? n : 1) * sizeof *bin);
    if (!len || !bin) abort();
    int64_t tokens = 0;
    for (int64_t i = 0; i < n; i++) len[i] = v->src->idx[v->samples[i]].n, tokens += len[i];
    int64_t bins = ds_pack_bfd(len, n, o->pack_size, bin);
    /* counting sort into CSR: bins in creation order, members in insertion (= sorted) order */
    memset(v->unit_off, 0, (size_t)(n + 1) * sizeof(int64_t));
    for (int64_t i = 0; i < n; i++) v->unit_off[bin[i] + 1]++;
    for (int64_t b = 0; b < bins; b++) v->unit_off[b + 1] += v->unit_off[b];
    int64_t *fill = calloc((size_t)(bins ? bins : 1), sizeof *fill);
    /* members in the order BFD placed them: decreasing length, then file order */
    int64_t *order = malloc((size_t)(n ? n : 1) * sizeof *order);
    if (!fill || !order) abort();
    /* a stable counting sort by decreasing length: the order ds_pack_bfd placed them in */
    int64_t maxl = 0;
    for (int64_t i = 0; i < n; i++) maxl = len[i] > maxl ? len[i] : maxl;
    int64_t *cnt = calloc((size_t)(maxl + 2), sizeof *cnt);
    if (!cnt) abort();
    for (int64_t i = 0; i < n; i++) cnt[maxl - len[i] + 1]++;
    for (int64_t l = 0; l <= maxl; l++) cnt[l + 1] += cnt[l];
    for (int64_t i = 0; i < n; i++) order[cnt[maxl - len[i]]++] = i;
    for (int64_t k = 0; k < n; k++) {
        int64_t i = order[k];
        v->unit_mem[v->unit_off[bin[i]] + fill[bin[i]]++] = i;
    }
    free(cnt), free(order), free(fill), free(len), free(bin);
    v->n_units = v->plan.units = bins;
    v->plan.row_capacity = bins * o->pack_size;
    v->plan.packing_efficiency = bins ? (double)tokens / (double)v->plan.row_capacity : 0.0;
}

static void set_view(ds_view_t *v, ds_source_t *src, int64_t *samples, int64_t n)
{
    v->src = src, v->samples = samples, v->n = n;
}

static void identity_view(ds_view_t *v, ds_source_t *src)
{
    int64_t *s = malloc((size_t)(src->n ? src->n : 1) * sizeof *s);
    if (!s) abort();
    for (int64_t i = 0; i < src->n; i++) s[i] = i;
    set_view(v, src, s, src->n);
}

/* Automodel with no validation fileset: ceil(split × n) samples chosen by a seeded shuffle
 * (as datasets' train_test_split), both parts kept in file order; at least one training sample. */
static void hold_out(nmc_dataset_t *ds)
{
    ds_source_t *s = &ds->train;
    int64_t n = s->n, nv = (int64_t)ceil(ds->o.validation_split * (double)n);
    if (nv >= n) nv = n - 1;
    if (nv <= 0) {
        identity_view(&ds->view[NMC_DS_TRAIN], s);
        set_view(&ds->view[NMC_DS_VALID], s, malloc(sizeof(int64_t)), 0);
        return;
    }
    int64_t *perm = malloc((size_t)n * sizeof *perm), *tr = malloc((size_t)(n - nv) * sizeof *tr);
    if (!perm || !tr) abort();
    for (int64_t i = 0; i < n; i++) perm[i] = i;
    shuffle_idx(perm, n, ds->o.seed ^ 0x76616c6964617465ull); /* "validate" */
    memcpy(tr, perm + nv, (size_t)(n - nv) * sizeof *tr);
    qsort(perm, (size_t)nv, sizeof *perm, cmp_i64);
    qsort(tr, (size_t)(n - nv), sizeof *tr, cmp_i64);
    set_view(&ds->view[NMC_DS_VALID], s, perm, nv);
    set_view(&ds->view[NMC_DS_TRAIN], s, tr, n - nv);
}

nmc_dataset_status_t nmc_dataset_open(const nmc_dataset_opts_t *o, const nmc_dataset_model_t *m, nmc_dataset_t **out,
                                      nmc_diags_t *d)
{
    *out = NULL;
    if (o->n_train_files == 0) {
        nmc_diag_add(d, NMC_SEV_ERROR, "data-no-files", NULL, 0, 0, 0, "no training files given");
        return NMC_DATASET_IO_ERROR;
    }
    if (o->format == NMC_DS_FMT_TEMPLATE && nmc_dataset_check_template(o->prompt_template, o, d) != 0)
        return NMC_DATASET_INVALID;
    nmc_dataset_t *ds = calloc(1, sizeof *ds);
    if (!ds) abort();
    ds->o = *o, ds->m = m;
    if (ds->o.packing && ds->o.pack_size <= 0) ds->o.pack_size = ds->o.max_seq_length;
    ds->train.files = o->train_files, ds->train.n_files = o->n_train_files;
    ds->valid.files = o->val_files, ds->valid.n_files = o->n_val_files;
    ds->has_valid_src = o->n_val_files > 0;
    char vpath[4096];
    nmc_dataset_status_t st = build_source(ds, &ds->train, ds->cache_path, sizeof ds->cache_path, d);
    if (ds->has_valid_src) {
        nmc_dataset_status_t vs = build_source(ds, &ds->valid, vpath, sizeof vpath, d);
        if (vs > st) st = vs;
    }
    if (st == NMC_DATASET_OK && ds->train.n == 0) {
        nmc_diag_t *e = nmc_diag_add(d, NMC_SEV_ERROR, "data-no-samples", o->train_files[0], 0, 0, 0,
                                     "the training data has no sample with a token to learn (%lld rows, %lld skipped "
                                     "with zero trainable tokens)",
                                     (long long)ds->train.rep.rows, (long long)ds->train.rep.zero_trainable);
        nmc_diag_set_help(e, "chat rows need an assistant message; completion rows a non-empty completion");
        st = NMC_DATASET_INVALID;
    }
    if (st != NMC_DATASET_OK) {
        nmc_dataset_free(ds);
        return st;
    }
    if (ds->has_valid_src) {
        identity_view(&ds->view[NMC_DS_TRAIN], &ds->train);
        identity_view(&ds->view[NMC_DS_VALID], &ds->valid);
    } else if (o->validation_split > 0) {
        hold_out(ds);
    } else {
        identity_view(&ds->view[NMC_DS_TRAIN], &ds->train);
        set_view(&ds->view[NMC_DS_VALID], &ds->train, malloc(sizeof(int64_t)), 0);
    }
    for (int s = 0; s < 2; s++) {
        plan_view(&ds->view[s], &ds->o);
        view_report(&ds->view[s]);
    }
    if (ds->has_valid_src) ds->view[NMC_DS_VALID].rep = ds->valid.rep;
    *out = ds;
    return NMC_DATASET_OK;
}

static void free_source(ds_source_t *s)
{
    if (s->store) fclose(s->store);
    free(s->idx);
}

void nmc_dataset_free(nmc_dataset_t *ds)
{
    if (!ds) return;
    for (int s = 0; s < 2; s++) {
        free(ds->view[s].samples);
        free(ds->view[s].unit_off);
        free(ds->view[s].unit_mem);
    }
    free_source(&ds->train);
    free_source(&ds->valid);
    free(ds);
}

const nmc_dataset_report_t *nmc_dataset_report(const nmc_dataset_t *ds, nmc_dataset_split_t s)
{
    if (s == NMC_DS_TRAIN) return &ds->train.rep;
    return &ds->view[NMC_DS_VALID].rep;
}

const nmc_dataset_plan_t *nmc_dataset_plan(const nmc_dataset_t *ds, nmc_dataset_split_t s) { return &ds->view[s].plan; }
int64_t nmc_dataset_num_samples(const nmc_dataset_t *ds, nmc_dataset_split_t s) { return ds->view[s].n; }
const char *nmc_dataset_cache_path(const nmc_dataset_t *ds) { return ds->cache_path; }

/* ---- sample access (dataset_int.h) ------------------------------------------------------ */

int ds_read_sample(const nmc_dataset_t *ds, nmc_dataset_split_t s, int64_t pos, int32_t *ids, uint8_t *mask,
                   nmc_diags_t *d)
{
    const ds_view_t *v = &ds->view[s];
    const ds_entry_t *e = &v->src->idx[v->samples[pos]];
    int fd = fileno(v->src->store);
    size_t nb = (size_t)e->n * sizeof(int32_t);
    if (pread(fd, ids, nb, (off_t)e->off) != (ssize_t)nb ||
        pread(fd, mask, e->n, (off_t)(e->off + nb)) != (ssize_t)e->n) {
        nmc_diag_add(d, NMC_SEV_ERROR, "io-error", ds->cache_path[0] ? ds->cache_path : NULL, 0, 0, 0,
                     "cannot read a sample back from the sample file");
        return -1;
    }
    return 0;
}

int64_t ds_sample_len(const nmc_dataset_t *ds, nmc_dataset_split_t s, int64_t pos)
{
    const ds_view_t *v = &ds->view[s];
    return v->src->idx[v->samples[pos]].n;
}

int64_t ds_units(const nmc_dataset_t *ds, nmc_dataset_split_t s) { return ds->view[s].n_units; }

void ds_unit(const nmc_dataset_t *ds, nmc_dataset_split_t s, int64_t u, const int64_t **mem, int64_t *n)
{
    const ds_view_t *v = &ds->view[s];
    *mem = v->unit_mem + v->unit_off[u];
    *n = v->unit_off[u + 1] - v->unit_off[u];
}

const nmc_dataset_opts_t *ds_opts(const nmc_dataset_t *ds) { return &ds->o; }
int32_t ds_pad_id(const nmc_dataset_t *ds) { return ds->m->pad_id >= 0 ? ds->m->pad_id : 0; }

int nmc_dataset_get_sample(const nmc_dataset_t *ds, nmc_dataset_split_t s, int64_t index, nmc_dataset_sample_t *out,
                           nmc_diags_t *d)
{
    memset(out, 0, sizeof *out);
    const ds_view_t *v = &ds->view[s];
    if (index < 0 || index >= v->n) return -1;
    const ds_entry_t *e = &v->src->idx[v->samples[index]];
    out->ids = malloc(e->n * sizeof(int32_t));
    out->mask = malloc(e->n);
    if (!out->ids || !out->mask) abort();
    out->n = e->n;
    out->file = v->src->files[e->file];
    out->line = e->line;
    out->truncated = e->truncated;
    if (ds_read_sample(ds, s, index, out->ids, out->mask, d) != 0) {
        nmc_dataset_sample_free(out);
        return -1;
    }
    return 0;
}

void nmc_dataset_sample_free(nmc_dataset_sample_t *s)
{
    free(s->ids);
    free(s->mask);
    memset(s, 0, sizeof *s);
}
