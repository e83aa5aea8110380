/* dataset_cache.c — the tokenization cache: its key (a 128-bit hash of the data files' bytes,
 * the tokenizer and chat template files, and the job fields that change tokens), and the
 * sample file format shared by cached and uncached runs.
 *
 * Sample file: a DS_CACHE_HEADER_BYTES header, then one record per kept sample (int32 ids[n],
 * uint8 mask[n]), then the index (24 bytes per sample). The header holds the magic, a byte
 * order mark, the format version, the key, the sample count, the index offset and the report.
 * A cache entry is written to a temp file and renamed into place (store.h nmc_atomic_*), so a
 * reader sees a whole file or none. Any mismatch (magic, version, key, sizes) makes the entry
 * unusable: a data-cache warning, then the data is tokenized again.
 */
#include "dataset_int.h"
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>

#define MAGIC "NMCDS001"
#define BOM 0x01020304u
#define VERSION 1u
#define ENTRY_BYTES 24

/* ---- hashing: FNV-1a 64 in one lane, a multiply-rotate mix in the other ----------------- */
void ds_hash_init(ds_hash_t *h)
{
    h->a = 0xcbf29ce484222325ull;
    h->b = 0x9e3779b97f4a7c15ull;
}

void ds_hash_bytes(ds_hash_t *h, const void *p, size_t n)
{
    const unsigned char *s = p;
    uint64_t a = h->a, b = h->b;
    for (size_t i = 0; i < n; i++) {
        a = (a ^ s[i]) * 0x100000001b3ull;
        b = ((b ^ s[i]) * 0xff51afd7ed558ccdull);
        b ^= b >> 29;
    }
    h->a = a, h->b = b;
}

void ds_hash_u64(ds_hash_t *h, uint64_t v) { ds_hash_bytes(h, &v, sizeof v); }

void ds_hash_str(ds_hash_t *h, const char *s)
{
    ds_hash_u64(h, s ? strlen(s) + 1 : 0);
    if (s) ds_hash_bytes(h, s, strlen(s));
}

uint64_t ds_splitmix64(uint64_t *state)
{
    uint64_t z = (*state += 0x9e3779b97f4a7c15ull);
    z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ull;
    z = (z ^ (z >> 27)) * 0x94d049bb133111ebull;
    return z ^ (z >> 31);
}

int ds_cache_key(const nmc_dataset_opts_t *o, const nmc_dataset_model_t *m, const char *const *files,
                 size_t n_files, uint64_t key[2], nmc_diags_t *d)
{
    ds_hash_t h;
    ds_hash_init(&h);
    ds_hash_str(&h, "nmc-dataset-cache-v1");
    ds_hash_u64(&h, (uint64_t)o->format);
    ds_hash_str(&h, o->format == NMC_DS_FMT_TEMPLATE ? o->prompt_template : NULL);
    ds_hash_str(&h, o->text_field);
    ds_hash_u64(&h, (uint64_t)o->max_seq_length);
    ds_hash_u64(&h, o->packing ? (uint64_t)o->pack_size : 0);
    ds_hash_u64(&h, m->fingerprint[0]);
    ds_hash_u64(&h, m->fingerprint[1]);
    if (m->template_uses_time) { /* strftime_now renders today's date into the text */
        char day[16];
        time_t now = time(NULL);
        struct tm tm;
        localtime_r(&now, &tm);
        strftime(day, sizeof day, "%Y-%m-%d", &tm);
        ds_hash_str(&h, day);
    }
    ds_hash_u64(&h, n_files);
    char *buf = malloc(1 << 20);
    if (!buf) abort();
    for (size_t i = 0; i < n_files; i++) {
        FILE *f = fopen(files[i], "rb");
        if (!f) {
            nmc_diag_t *e = nmc_diag_add(d, NMC_SEV_ERROR, "io-error", files[i], 0, 0, 0, "cannot open data file");
            nmc_diag_set_help(e, "check that the fileset's files still exist and are readable");
            free(buf);
            return -1;
        }
        uint64_t total = 0;
        size_t k;
        while ((k = fread(buf, 1, 1 << 20, f)) > 0) ds_hash_bytes(&h, buf, k), total += k;
        ds_hash_u64(&h, total);
        fclose(f);
    }
    free(buf);
    key[0] = h.a, key[1] = h.b;
    return 0;
}

/* ---- header (de)serialization ----------------------------------------------------------- */
typedef struct {
    unsigned char *p;
    size_t n, cap;
} wbuf_t;

static void put(wbuf_t *w, const void *v, size_t n)
{
    if (w->n + n <= w->cap) memcpy(w->p + w->n, v, n);
    w->n += n;
}
static void put64(wbuf_t *w, int64_t v) { put(w, &v, 8); }
static void put32(wbuf_t *w, uint32_t v) { put(w, &v, 4); }

static uint32_t file_index(const ds_source_t *s, const char *f)
{
    for (size_t i = 0; i < s->n_files; i++)
        if (s->files[i] == f) return (uint32_t)i;
    return 0;
}

static void put_locs(wbuf_t *w, const ds_source_t *s, const nmc_dataset_loc_t *l, int64_t n)
{
    for (int64_t i = 0; i < NMC_DATASET_REPORT_LOCS; i++) {
        put32(w, i < n ? file_index(s, l[i].file) : 0);
        put32(w, i < n ? l[i].line : 0);
        put64(w, i < n ? l[i].detail : 0);
    }
}

#define REPORT_INTS(X, r)                                                                            \
    X(r->rows) X(r->blank_lines) X(r->invalid) X(r->samples) X(r->truncated) X(r->truncated_tokens)  \
    X(r->zero_trainable) X(r->mask_approx) X(r->tokens) X(r->label_tokens) X(r->min_len) X(r->max_len) \
    X(r->n_truncated_locs) X(r->n_zero_locs)

int ds_cache_finish(FILE *f, const uint64_t key[2], const ds_source_t *src, nmc_diags_t *d)
{
    uint64_t index_off = (uint64_t)ftello(f);
    for (int64_t i = 0; i < src->n; i++) {
        const ds_entry_t *e = &src->idx[i];
        unsigned char rec[ENTRY_BYTES];
        uint32_t ft = e->file | ((uint32_t)e->truncated << 31);
        memcpy(rec, &e->off, 8);
        memcpy(rec + 8, &e->n, 4);
        memcpy(rec + 12, &ft, 4);
        memcpy(rec + 16, &e->line, 4);
        memcpy(rec + 20, &e->labels, 4);
        if (fwrite(rec, 1, sizeof rec, f) != sizeof rec) goto io;
    }
    unsigned char hdr[DS_CACHE_HEADER_BYTES] = {0};
    wbuf_t w = {hdr, 0, sizeof hdr};
    const nmc_dataset_report_t *r = &src->rep;
    put(&w, MAGIC, 8);
    put32(&w, BOM);
    put32(&w, VERSION);
    put(&w, key, 16);
    put64(&w, src->n);
    put64(&w, (int64_t)index_off);
#define PUT_INT(x) put64(&w, x);
    REPORT_INTS(PUT_INT, r)
    put_locs(&w, src, r->truncated_at, r->n_truncated_locs);
    put_locs(&w, src, r->zero_at, r->n_zero_locs);
    if (fseeko(f, 0, SEEK_SET) != 0 || fwrite(hdr, 1, sizeof hdr, f) != sizeof hdr) goto io;
    return 0;
io:
    nmc_diag_add(d, NMC_SEV_ERROR, "io-error", NULL, 0, 0, 0, "cannot write the dataset sample file");
    return -1;
}

typedef struct {
    const unsigned char *p;
    size_t n, pos;
} rbuf_t;
static void get(rbuf_t *r, void *v, size_t n)
{
    if (r->pos + n <= r->n) memcpy(v, r->p + r->pos, n);
    else memset(v, 0, n);
    r->pos += n;
}
static int64_t get64(rbuf_t *r) { int64_t v; get(r, &v, 8); return v; }
static uint32_t get32(rbuf_t *r) { uint32_t v; get(r, &v, 4); return v; }

static void get_locs(rbuf_t *r, const ds_source_t *s, nmc_dataset_loc_t *l)
{
    for (int i = 0; i < NMC_DATASET_REPORT_LOCS; i++) {
        uint32_t fi = get32(r);
        l[i].file = fi < s->n_files ? s->files[fi] : NULL;
        l[i].line = get32(r);
        l[i].detail = get64(r);
    }
}

static int unusable(nmc_diags_t *d, const char *path, const char *why)
{
    nmc_diag_t *e = nmc_diag_add(d, NMC_SEV_WARNING, "data-cache", path, 0, 0, 0,
                                 "tokenization cache entry not used: %s", why);
    nmc_diag_set_help(e, "the data is tokenized again and the entry rewritten");
    return 0;
}

int ds_cache_load(const char *path, const uint64_t key[2], ds_source_t *src, nmc_diags_t *d)
{
    FILE *f = fopen(path, "rb");
    if (!f) return 0;
    struct stat st;
    unsigned char hdr[DS_CACHE_HEADER_BYTES];
    if (fstat(fileno(f), &st) != 0 || fread(hdr, 1, sizeof hdr, f) != sizeof hdr) {
        fclose(f);
        return unusable(d, path, "the file is shorter than its header");
    }
    rbuf_t r = {hdr, sizeof hdr, 0};
    char magic[8];
    uint64_t k[2];
    get(&r, magic, 8);
    uint32_t bom = get32(&r), ver = get32(&r);
    get(&r, k, 16);
    int64_t n = get64(&r), index_off = get64(&r);
    const char *why = NULL;
    if (memcmp(magic, MAGIC, 8) != 0) why = "not an nmc sample file";
    else if (bom != BOM || ver != VERSION) why = "written by another version or machine";
    else if (k[0] != key[0] || k[1] != key[1]) why = "its key does not match its name";
    else if (n < 0 || index_off < DS_CACHE_HEADER_BYTES || (uint64_t)index_off + (uint64_t)n * ENTRY_BYTES != (uint64_t)st.st_size)
        why = "its size does not match its header";
    if (why) {
        fclose(f);
        return unusable(d, path, why);
    }
    nmc_dataset_report_t *rep = &src->rep;
    memset(rep, 0, sizeof *rep);
#define GET_INT(x) x = get64(&r);
    REPORT_INTS(GET_INT, rep)
    get_locs(&r, src, rep->truncated_at);
    get_locs(&r, src, rep->zero_at);
    ds_entry_t *idx = malloc((size_t)(n ? n : 1) * sizeof *idx);
    if (!idx) abort();
    if (fseeko(f, index_off, SEEK_SET) != 0) why = "cannot seek to its index";
    for (int64_t i = 0; !why && i < n; i++) {
        unsigned char rec[ENTRY_BYTES];
        if (fread(rec, 1, sizeof rec, f) != sizeof rec) { why = "its index is short"; break; }
        uint32_t ft;
        memcpy(&idx[i].off, rec, 8);
        memcpy(&ft, rec + 12, 4);
        uint32_t nn;
        memcpy(&nn, rec + 8, 4);
        idx[i].n = nn;
        idx[i].file = ft & 0x7fffffffu;
        idx[i].truncated = ft >> 31;
        memcpy(&idx[i].line, rec + 16, 4);
        memcpy(&idx[i].labels, rec + 20, 4);
        if (idx[i].file >= src->n_files || idx[i].off < DS_CACHE_HEADER_BYTES ||
            idx[i].off + (uint64_t)idx[i].n * 5 > (uint64_t)index_off || idx[i].n == 0)
            why = "an index entry points outside the file";
    }
    if (why || rep->samples != n) {
        free(idx);
        fclose(f);
        return unusable(d, path, why ? why : "its report does not match its index");
    }
    src->idx = idx;
    src->n = src->cap = n;
    src->store = f;
    rep->from_cache = true;
    return 1;
}
