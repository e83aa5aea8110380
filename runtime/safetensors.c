/* safetensors.c — safetensors reader (mmap, full header validation, shards) and atomic
 * writer. What belongs here: the file format only; which tensors a model needs is
 * model_config.c's business. See safetensors.h for the acceptance rules. */
#include "safetensors.h"
#include "arena.h"
#include "json.h"
#include "store.h"
#include <errno.h>
#include <fcntl.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <unistd.h>

typedef struct {
    const char *path;
    void *map;
    size_t size;
    nmc_st_tensor_t *tensors; /* sorted by name */
    size_t n;
    nmc_st_kv_t *meta;
    size_t nmeta;
} st_file_t;

struct nmc_st {
    nmc_arena_t *arena;
    st_file_t *files;
    size_t nfiles;
    nmc_st_tensor_t *tensors; /* all tensors, sorted by name */
    size_t n;
};

#define INDEX_NAME "model.safetensors.index.json"
#define SINGLE_NAME "model.safetensors"

/* ---- dtypes -------------------------------------------------------------------------- */
static const struct {
    const char *name;
    size_t size;
} DTYPES[NMC_ST_DTYPE_COUNT] = {
    [NMC_ST_F32] = {"F32", 4},         [NMC_ST_F16] = {"F16", 2},
    [NMC_ST_BF16] = {"BF16", 2},       [NMC_ST_F64] = {"F64", 8},
    [NMC_ST_I64] = {"I64", 8},         [NMC_ST_I32] = {"I32", 4},
    [NMC_ST_I16] = {"I16", 2},         [NMC_ST_I8] = {"I8", 1},
    [NMC_ST_U64] = {"U64", 8},         [NMC_ST_U32] = {"U32", 4},
    [NMC_ST_U16] = {"U16", 2},         [NMC_ST_U8] = {"U8", 1},
    [NMC_ST_BOOL] = {"BOOL", 1},       [NMC_ST_F8_E4M3] = {"F8_E4M3", 1},
    [NMC_ST_F8_E5M2] = {"F8_E5M2", 1},
};

const char *nmc_st_dtype_name(nmc_st_dtype_t dt)
{
    return (unsigned)dt < NMC_ST_DTYPE_COUNT ? DTYPES[dt].name : "?";
}

size_t nmc_st_dtype_size(nmc_st_dtype_t dt)
{
    return (unsigned)dt < NMC_ST_DTYPE_COUNT ? DTYPES[dt].size : 0;
}

int nmc_st_dtype_parse(const char *s, nmc_st_dtype_t *out)
{
    for (int i = 0; i < NMC_ST_DTYPE_COUNT; i++)
        if (strcmp(s, DTYPES[i].name) == 0) {
            *out = (nmc_st_dtype_t)i;
            return 0;
        }
    return -1;
}

bool nmc_st_dtype_trainable(nmc_st_dtype_t dt)
{
    return dt == NMC_ST_F32 || dt == NMC_ST_F16 || dt == NMC_ST_BF16;
}

/* ---- scalar conversions -------------------------------------------------------------- */
static float bits_to_f32(uint32_t u)
{
    float f;
    memcpy(&f, &u, 4);
    return f;
}

static uint32_t f32_to_bits(float f)
{
    uint32_t u;
    memcpy(&u, &f, 4);
    return u;
}

float nmc_st_bf16_to_f32(uint16_t b) { return bits_to_f32((uint32_t)b << 16); }

float nmc_st_f16_to_f32(uint16_t h)
{
    uint32_t sign = (uint32_t)(h & 0x8000) << 16, exp = (h >> 10) & 0x1f, man = h & 0x3ff;
    if (exp == 0x1f) return bits_to_f32(sign | 0x7f800000u | (man << 13)); /* inf / nan */
    if (exp == 0) { /* zero or subnormal: man * 2^-24 */
        float v = (float)man * (1.0f / 16777216.0f);
        return sign ? -v : v;
    }
    return bits_to_f32(sign | ((exp + 112) << 23) | (man << 13));
}

uint16_t nmc_st_f32_to_bf16(float f)
{
    uint32_t u = f32_to_bits(f);
    if ((u & 0x7fffffffu) > 0x7f800000u) return (uint16_t)((u >> 16) | 0x40); /* quiet nan */
    u += 0x7fffu + ((u >> 16) & 1);
    return (uint16_t)(u >> 16);
}

uint16_t nmc_st_f32_to_f16(float f)
{
    uint32_t u = f32_to_bits(f), sign = (u >> 16) & 0x8000;
    uint32_t a = u & 0x7fffffffu;
    if (a > 0x7f800000u) return (uint16_t)(sign | 0x7e00);     /* nan */
    if (a >= 0x477ff000u) return (uint16_t)(sign | 0x7c00);    /* rounds to >= 65520: inf */
    if (a < 0x38800000u) {                                      /* below 2^-14: subnormal */
        float v = bits_to_f32(a) * 16777216.0f;                 /* in units of 2^-24 */
        uint32_t m = (uint32_t)v;
        float rem = v - (float)m;
        if (rem > 0.5f || (rem == 0.5f && (m & 1))) m++;
        return (uint16_t)(sign | m);
    }
    uint32_t r = a + 0xfffu + ((a >> 13) & 1); /* round mantissa to 10 bits, nearest even */
    return (uint16_t)(sign | (((r >> 23) - 112) << 10) | ((r >> 13) & 0x3ff));
}

int nmc_st_to_f32(const nmc_st_tensor_t *t, float *dst, nmc_diags_t *d)
{
    const unsigned char *p = t->data;
    switch (t->dtype) {
    case NMC_ST_F32:
        if (t->nbytes) memcpy(dst, p, t->nbytes);
        return 0;
    case NMC_ST_F16:
    case NMC_ST_BF16:
        for (int64_t i = 0; i < t->numel; i++) {
            uint16_t h = (uint16_t)(p[2 * i] | (p[2 * i + 1] << 8));
            dst[i] = t->dtype == NMC_ST_F16 ? nmc_st_f16_to_f32(h) : nmc_st_bf16_to_f32(h);
        }
        return 0;
    default: {
        nmc_diag_t *r = nmc_diag_add(d, NMC_SEV_ERROR, "st-dtype-unsupported", t->file, 0, 0,
                                     0, "tensor '%s' has dtype %s, which nmc cannot train with",
                                     t->name, nmc_st_dtype_name(t->dtype));
        nmc_diag_set_expected(r, "F32, F16 or BF16");
        nmc_diag_set_got(r, "%s", nmc_st_dtype_name(t->dtype));
        nmc_diag_set_help(r, "convert the checkpoint to bfloat16 or float32 (quantized and "
                             "integer checkpoints are not supported for training)");
        return -1;
    }
    }
}

/* ---- diagnostics helpers --------------------------------------------------------------- */
static nmc_diag_t *err_tensor(nmc_diags_t *d, const char *code, const char *file,
                              const char *tensor, const char *field, const char *fmt, ...)
    __attribute__((format(printf, 6, 7)));

/* An error about tensor `tensor` (may be NULL) of `file`: message prefixed with the
 * tensor's name, path set to "<tensor>.<field>". */
static nmc_diag_t *err_tensor(nmc_diags_t *d, const char *code, const char *file,
                              const char *tensor, const char *field, const char *fmt, ...)
{
    char msg[1024];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(msg, sizeof msg, fmt, ap);
    va_end(ap);
    nmc_diag_t *r;
    if (tensor)
        r = nmc_diag_add(d, NMC_SEV_ERROR, code, file, 0, 0, 0, "tensor '%s': %s", tensor, msg);
    else
        r = nmc_diag_add(d, NMC_SEV_ERROR, code, file, 0, 0, 0, "%s", msg);
    if (r && tensor) {
        nmc_path_t p = {.depth = 0};
        nmc_path_push_key(&p, tensor, strlen(tensor));
        if (field) nmc_path_push_key(&p, field, strlen(field));
        nmc_diag_set_path(r, &p);
    }
    return r;
}

static void io_error(nmc_diags_t *d, const char *file, const char *what)
{
    nmc_diag_t *r = nmc_diag_add(d, NMC_SEV_ERROR, "io-error", file, 0, 0, 0, "cannot %s: %s",
                                 what, strerror(errno));
    nmc_diag_set_help(r, "check that the path exists and is readable");
}

/* ---- header entries -------------------------------------------------------------------- */
typedef struct {
    nmc_st_tensor_t *t;
    uint64_t begin, end;
} span_t;

static int parse_u64(const nmc_json_t *v, uint64_t *out)
{
    if (!v || v->kind != NMC_JSON_NUMBER || !v->u.num.is_int || !v->u.num.int_ok ||
        v->u.num.i < 0)
        return -1;
    *out = (uint64_t)v->u.num.i;
    return 0;
}

static int parse_dtype(const nmc_json_t *v, const char *file, const char *name,
                       nmc_st_tensor_t *t, nmc_diags_t *d)
{
    if (!v || v->kind != NMC_JSON_STRING) {
        nmc_diag_t *r = err_tensor(d, "st-entry-invalid", file, name, "dtype",
                                   v ? "dtype must be a string" : "missing \"dtype\"");
        nmc_diag_set_expected(r, "\"dtype\": one of F32, F16, BF16, ...");
        return -1;
    }
    if (nmc_st_dtype_parse(v->u.str.s, &t->dtype) == 0) return 0;
    nmc_diag_t *r = err_tensor(d, "st-dtype-unknown", file, name, "dtype",
                               "unknown dtype \"%s\"", v->u.str.s);
    nmc_diag_set_expected(r, "F32, F16, BF16, F64, I64, I32, I16, I8, U64, U32, U16, U8, BOOL, "
                             "F8_E4M3 or F8_E5M2");
    return -1;
}

static int parse_shape(const nmc_json_t *v, const char *file, const char *name,
                       nmc_st_tensor_t *t, nmc_diags_t *d)
{
    if (!v || v->kind != NMC_JSON_ARRAY || v->u.arr.n > NMC_ST_MAX_DIMS) {
        nmc_diag_t *r = err_tensor(d, "st-shape-invalid", file, name, "shape",
                                   !v ? "missing \"shape\""
                                   : v->kind != NMC_JSON_ARRAY ? "shape must be an array"
                                                               : "shape has more than %d dims",
                                   NMC_ST_MAX_DIMS);
        nmc_diag_set_expected(r, "an array of at most %d non-negative integers", NMC_ST_MAX_DIMS);
        return -1;
    }
    t->ndim = (int)v->u.arr.n;
    uint64_t numel = 1;
    bool overflow = false;
    for (int i = 0; i < t->ndim; i++) {
        uint64_t dim;
        if (parse_u64(v->u.arr.items[i], &dim) != 0) {
            nmc_diag_t *r = err_tensor(d, "st-shape-invalid", file, name, "shape",
                                       "shape[%d] is not a non-negative integer", i);
            nmc_diag_set_got(r, "%s", v->u.arr.items[i]->kind == NMC_JSON_NUMBER
                                          ? v->u.arr.items[i]->u.num.text
                                          : nmc_json_kind_name(v->u.arr.items[i]->kind));
            return -1;
        }
        t->shape[i] = (int64_t)dim;
        if (dim && numel > (uint64_t)INT64_MAX / dim) overflow = true;
        numel *= dim;
    }
    if (overflow || numel > (uint64_t)INT64_MAX / 8) {
        err_tensor(d, "st-shape-overflow", file, name, "shape",
                   "the element count of the shape overflows 64 bits");
        return -1;
    }
    t->numel = (int64_t)numel;
    t->nbytes = (size_t)(numel * nmc_st_dtype_size(t->dtype));
    return 0;
}

static int parse_offsets(const nmc_json_t *v, const char *file, const char *name, span_t *s,
                         nmc_diags_t *d)
{
    if (!v || v->kind != NMC_JSON_ARRAY || v->u.arr.n != 2 ||
        parse_u64(v->u.arr.items[0], &s->begin) || parse_u64(v->u.arr.items[1], &s->end)) {
        nmc_diag_t *r = err_tensor(d, "st-offsets-invalid", file, name, "data_offsets",
                                   v ? "data_offsets is not a pair of non-negative integers"
                                     : "missing \"data_offsets\"");
        nmc_diag_set_expected(r, "[begin, end] byte offsets into the data buffer");
        return -1;
    }
    if (s->end < s->begin) {
        err_tensor(d, "st-offsets-invalid", file, name, "data_offsets",
                   "data_offsets end %llu is before begin %llu",
                   (unsigned long long)s->end, (unsigned long long)s->begin);
        return -1;
    }
    return 0;
}

static int parse_entry(nmc_arena_t *a, const nmc_json_member_t *m, const char *file,
                       span_t *s, nmc_diags_t *d)
{
    const char *name = m->key;
    if (m->value->kind != NMC_JSON_OBJECT) {
        nmc_diag_t *r = err_tensor(d, "st-entry-invalid", file, name, NULL,
                                   "header entry is a %s, not an object",
                                   nmc_json_kind_name(m->value->kind));
        nmc_diag_set_expected(r, "{\"dtype\": ..., \"shape\": [...], \"data_offsets\": [b, e]}");
        return -1;
    }
    nmc_st_tensor_t *t = nmc_arena_alloc(a, sizeof *t);
    t->name = nmc_arena_strndup(a, m->key, m->key_len);
    t->file = file;
    s->t = t;
    if (parse_dtype(nmc_json_get(m->value, "dtype"), file, name, t, d)) return -1;
    if (parse_shape(nmc_json_get(m->value, "shape"), file, name, t, d)) return -1;
    return parse_offsets(nmc_json_get(m->value, "data_offsets"), file, name, s, d);
}

static int parse_metadata(nmc_arena_t *a, const nmc_json_t *v, st_file_t *f, nmc_diags_t *d)
{
    if (v->kind == NMC_JSON_NULL) return 0; /* serde's Option: null means absent */
    bool ok = v->kind == NMC_JSON_OBJECT;
    for (size_t i = 0; ok && i < v->u.obj.n; i++)
        ok = v->u.obj.members[i].value->kind == NMC_JSON_STRING;
    if (!ok) {
        nmc_diag_t *r = nmc_diag_add(d, NMC_SEV_ERROR, "st-metadata-invalid", f->path, 0, 0, 0,
                                     "__metadata__ must map strings to strings");
        nmc_diag_set_help(r, "safetensors metadata values are strings; encode numbers or "
                             "objects as strings");
        return -1;
    }
    f->nmeta = v->u.obj.n;
    f->meta = nmc_arena_alloc(a, (f->nmeta + 1) * sizeof *f->meta);
    for (size_t i = 0; i < f->nmeta; i++) {
        f->meta[i].key = nmc_arena_strdup(a, v->u.obj.members[i].key);
        f->meta[i].value = nmc_arena_strdup(a, v->u.obj.members[i].value->u.str.s);
    }
    return 0;
}

static int cmp_span(const void *x, const void *y)
{
    const span_t *a = x, *b = y;
    if (a->begin != b->begin) return a->begin < b->begin ? -1 : 1;
    if (a->end != b->end) return a->end < b->end ? -1 : 1;
    return strcmp(a->t->name, b->t->name);
}

static int cmp_tensor(const void *x, const void *y)
{
    return strcmp(((const nmc_st_tensor_t *)x)->name, ((const nmc_st_tensor_t *)y)->name);
}

/* The tensors sorted by offset must tile [0, data_len) exactly (reference crate rule). */
static int check_tiling(span_t *sp, size_t n, uint64_t data_len, const char *file,
                        nmc_diags_t *d)
{
    qsort(sp, n, sizeof *sp, cmp_span);
    int rc = 0;
    uint64_t pos = 0;
    const char *prev = NULL;
    for (size_t i = 0; i < n; i++) {
        const char *name = sp[i].t->name;
        if (sp[i].end > data_len) {
            nmc_diag_t *r = err_tensor(
                d, "st-offsets-out-of-range", file, name, "data_offsets",
                "data_offsets [%llu, %llu] run past the end of the %llu-byte data buffer",
                (unsigned long long)sp[i].begin, (unsigned long long)sp[i].end,
                (unsigned long long)data_len);
            nmc_diag_set_help(r, "the file is truncated or its header is wrong");
            rc = -1;
        } else if (sp[i].begin < pos) {
            err_tensor(d, "st-offsets-overlap", file, name, "data_offsets",
                       "data_offsets [%llu, %llu] overlap tensor '%s', which ends at %llu",
                       (unsigned long long)sp[i].begin, (unsigned long long)sp[i].end,
                       prev ? prev : "?", (unsigned long long)pos);
            rc = -1;
        } else if (sp[i].begin > pos) {
            nmc_diag_t *r = err_tensor(
                d, "st-offsets-gap", file, name, "data_offsets",
                "data_offsets begin at %llu, leaving bytes [%llu, %llu) outside every tensor",
                (unsigned long long)sp[i].begin, (unsigned long long)pos,
                (unsigned long long)sp[i].begin);
            nmc_diag_set_help(r, "safetensors requires the tensors to cover the data buffer "
                                 "without gaps (as the reference reader does)");
            rc = -1;
        } else if (sp[i].end - sp[i].begin != sp[i].t->nbytes) {
            nmc_diag_t *r = err_tensor(
                d, "st-size-mismatch", file, name, "data_offsets",
                "data_offsets span %llu bytes but dtype %s and its shape need %zu",
                (unsigned long long)(sp[i].end - sp[i].begin),
                nmc_st_dtype_name(sp[i].t->dtype), sp[i].t->nbytes);
            nmc_diag_set_expected(r, "%zu bytes", sp[i].t->nbytes);
            nmc_diag_set_got(r, "%llu bytes", (unsigned long long)(sp[i].end - sp[i].begin));
            rc = -1;
        }
        if (sp[i].end > pos) pos = sp[i].end, prev = name;
    }
    if (rc == 0 && pos != data_len) {
        nmc_diag_t *r = nmc_diag_add(
            d, NMC_SEV_ERROR, "st-incomplete-buffer", file, 0, 0, 0,
            "the tensors cover %llu of the %llu bytes after the header; the last %llu bytes "
            "belong to no tensor",
            (unsigned long long)pos, (unsigned long long)data_len,
            (unsigned long long)(data_len - pos));
        nmc_diag_set_help(r, "the file has trailing bytes or its header lists too few tensors");
        rc = -1;
    }
    return rc;
}

/* Header JSON -> f->tensors. data_len: bytes after the header. */
static int parse_header(nmc_arena_t *a, st_file_t *f, const char *hdr, size_t hlen,
                        uint64_t data_len, nmc_diags_t *d)
{
    nmc_json_limits_t lim = {.max_bytes = hlen + 1, .max_depth = 8};
    nmc_json_t *root = NULL;
    if (nmc_json_parse(a, hdr, hlen, f->path, &lim, &root, d) != 0) {
        nmc_diag_t *r = nmc_diag_add(d, NMC_SEV_ERROR, "st-header-json", f->path, 0, 0, 0,
                                     "the safetensors header is not valid JSON");
        nmc_diag_set_help(r, "positions above count from the start of the JSON header (byte 8)");
        return -1;
    }
    if (root->kind != NMC_JSON_OBJECT) {
        nmc_diag_t *r = nmc_diag_add(d, NMC_SEV_ERROR, "st-header-json", f->path, 0, 0, 0,
                                     "the safetensors header is a JSON %s, not an object",
                                     nmc_json_kind_name(root->kind));
        nmc_diag_set_expected(r, "{\"tensor name\": {\"dtype\", \"shape\", \"data_offsets\"}, ...}");
        return -1;
    }
    span_t *sp = nmc_arena_alloc(a, (root->u.obj.n + 1) * sizeof *sp);
    size_t n = 0;
    int rc = 0;
    for (size_t i = 0; i < root->u.obj.n; i++) {
        const nmc_json_member_t *m = &root->u.obj.members[i];
        if (strcmp(m->key, "__metadata__") == 0) {
            if (parse_metadata(a, m->value, f, d)) rc = -1;
        } else if (parse_entry(a, m, f->path, &sp[n], d) == 0) {
            n++;
        } else {
            rc = -1;
        }
    }
    if (rc) return rc;
    if (check_tiling(sp, n, data_len, f->path, d)) return -1;
    const unsigned char *base = (const unsigned char *)f->map + (f->size - data_len);
    f->tensors = nmc_arena_alloc(a, (n + 1) * sizeof *f->tensors);
    for (size_t i = 0; i < n; i++) {
        f->tensors[i] = *sp[i].t;
        f->tensors[i].data = base + sp[i].begin;
    }
    f->n = n;
    qsort(f->tensors, n, sizeof *f->tensors, cmp_tensor);
    return 0;
}

/* Map and validate one .safetensors file. */
static int open_file(nmc_arena_t *a, const char *path, st_file_t *f, nmc_diags_t *d)
{
    memset(f, 0, sizeof *f);
    f->path = nmc_arena_strdup(a, path);
    int fd = open(path, O_RDONLY | O_CLOEXEC);
    struct stat sb;
    if (fd < 0 || fstat(fd, &sb) != 0) {
        io_error(d, f->path, "open the safetensors file");
        if (fd >= 0) close(fd);
        return -1;
    }
    if (!S_ISREG(sb.st_mode) || sb.st_size < 8) {
        nmc_diag_t *r = nmc_diag_add(d, NMC_SEV_ERROR, "st-header-too-small", f->path, 0, 0, 0,
                                     S_ISREG(sb.st_mode) ? "file is %lld bytes, shorter than the "
                                                           "8-byte header length"
                                                         : "not a regular file (%lld)",
                                     (long long)sb.st_size);
        nmc_diag_set_help(r, "this is not a safetensors file");
        close(fd);
        return -1;
    }
    f->size = (size_t)sb.st_size;
    f->map = mmap(NULL, f->size, PROT_READ, MAP_PRIVATE, fd, 0);
    close(fd);
    if (f->map == MAP_FAILED) {
        f->map = NULL;
        io_error(d, f->path, "mmap the safetensors file");
        return -1;
    }
    const unsigned char *p = f->map;
    uint64_t n = 0;
    for (int i = 7; i >= 0; i--) n = (n << 8) | p[i];
    if (n > NMC_ST_MAX_HEADER) {
        nmc_diag_t *r = nmc_diag_add(d, NMC_SEV_ERROR, "st-header-too-large", f->path, 0, 0, 0,
                                     "header length %llu exceeds the limit of 100000000 bytes",
                                     (unsigned long long)n);
        nmc_diag_set_help(r, "safetensors readers (like the reference one) refuse headers over "
                             "100 MB; the file is corrupt or not safetensors");
        return -1;
    }
    if (8 + n > f->size) {
        nmc_diag_t *r = nmc_diag_add(d, NMC_SEV_ERROR, "st-header-length", f->path, 0, 0, 0,
                                     "header length %llu runs past the end of the %zu-byte file",
                                     (unsigned long long)n, f->size);
        nmc_diag_set_help(r, "the file is truncated or is not safetensors");
        return -1;
    }
    return parse_header(a, f, (const char *)p + 8, (size_t)n, f->size - 8 - n, d);
}

/* ---- sharded checkpoints --------------------------------------------------------------- */
static char *dir_of(nmc_arena_t *a, const char *path)
{
    const char *slash = strrchr(path, '/');
    return slash ? nmc_arena_strndup(a, path, (size_t)(slash - path)) : nmc_arena_strdup(a, ".");
}

static bool valid_shard_name(const char *s)
{
    return *s && *s != '.' && !strchr(s, '/');
}

/* Index of shard `name` in names[0..*n), appending it if new. */
static size_t shard_slot(const char **names, size_t *n, const char *name)
{
    for (size_t i = 0; i < *n; i++)
        if (strcmp(names[i], name) == 0) return i;
    names[*n] = name;
    return (*n)++;
}

static const nmc_json_t *index_weight_map(nmc_arena_t *a, const char *path, nmc_diags_t *d)
{
    nmc_json_limits_t lim = {.max_bytes = NMC_JSON_DATA_MAX_BYTES, .max_depth = 8};
    nmc_json_t *root = NULL;
    if (nmc_json_parse_file(a, path, &lim, &root, NULL, NULL, d) != 0) return NULL;
    const nmc_json_t *wm = nmc_json_get(root, "weight_map");
    bool ok = wm && wm->kind == NMC_JSON_OBJECT && wm->u.obj.n > 0;
    for (size_t i = 0; ok && i < wm->u.obj.n; i++)
        ok = wm->u.obj.members[i].value->kind == NMC_JSON_STRING &&
             valid_shard_name(wm->u.obj.members[i].value->u.str.s);
    if (!ok) {
        nmc_diag_t *r = nmc_diag_add(d, NMC_SEV_ERROR, "st-index-invalid", path, 0, 0, 0,
                                     "the index has no usable \"weight_map\"");
        nmc_diag_set_expected(r, "\"weight_map\": {\"tensor name\": \"shard file name in the "
                                 "same directory\", ...} (non-empty)");
        return NULL;
    }
    return wm;
}

/* Every tensor of the index must be in its shard, and every shard tensor in the index. */
static int check_index(const nmc_json_t *wm, st_file_t *files, const char **names,
                       size_t nfiles, const char *path, nmc_diags_t *d)
{
    int rc = 0;
    for (size_t i = 0; i < wm->u.obj.n; i++) {
        const nmc_json_member_t *m = &wm->u.obj.members[i];
        size_t k = 0;
        while (k < nfiles && strcmp(names[k], m->value->u.str.s) != 0) k++;
        nmc_st_tensor_t key = {.name = m->key};
        if (!bsearch(&key, files[k].tensors, files[k].n, sizeof key, cmp_tensor)) {
            nmc_diag_t *r = err_tensor(d, "st-index-tensor-missing", path, m->key, NULL,
                                       "weight_map puts it in %s, which does not contain it",
                                       names[k]);
            nmc_diag_set_help(r, "the index and the shards are from different saves; "
                                 "re-download or re-save the checkpoint");
            rc = -1;
        }
    }
    for (size_t k = 0; k < nfiles; k++)
        for (size_t j = 0; j < files[k].n; j++) {
            const nmc_json_t *v = nmc_json_get(wm, files[k].tensors[j].name);
            if (v && strcmp(v->u.str.s, names[k]) == 0) continue;
            err_tensor(d, "st-index-tensor-unlisted", files[k].path, files[k].tensors[j].name,
                       NULL, "present in this shard but weight_map %s%s",
                       v ? "assigns it to " : "does not list it", v ? v->u.str.s : "");
            rc = -1;
        }
    return rc;
}

static int open_index(nmc_st_t *st, const char *path, nmc_diags_t *d)
{
    nmc_arena_t *a = st->arena;
    const nmc_json_t *wm = index_weight_map(a, path, d);
    if (!wm) return -1;
    const char **names = nmc_arena_alloc(a, wm->u.obj.n * sizeof *names);
    size_t nfiles = 0;
    for (size_t i = 0; i < wm->u.obj.n; i++) shard_slot(names, &nfiles, wm->u.obj.members[i].value->u.str.s);
    st->files = nmc_arena_alloc(a, nfiles * sizeof *st->files);
    const char *dir = dir_of(a, path);
    int rc = 0;
    for (size_t k = 0; k < nfiles; k++) {
        const char *sp = nmc_arena_printf(a, "%s/%s", dir, names[k]);
        if (access(sp, F_OK) != 0) {
            nmc_diag_t *r = nmc_diag_add(d, NMC_SEV_ERROR, "st-shard-missing", path, 0, 0, 0,
                                         "shard %s named by weight_map does not exist", names[k]);
            nmc_diag_set_help(r, "every shard the index names must be in %s", dir);
            rc = -1;
            continue;
        }
        if (open_file(a, sp, &st->files[st->nfiles], d) != 0) rc = -1;
        st->nfiles++;
    }
    if (rc || check_index(wm, st->files, names, nfiles, path, d)) return -1;
    return 0;
}

/* ---- public reader ----------------------------------------------------------------------- */
static bool ends_with(const char *s, const char *suf)
{
    size_t n = strlen(s), m = strlen(suf);
    return n >= m && strcmp(s + n - m, suf) == 0;
}

/* Directory -> the checkpoint file inside it, or NULL with st-no-checkpoint. */
static const char *pick_in_dir(nmc_arena_t *a, const char *dir, nmc_diags_t *d)
{
    const char *idx = nmc_arena_printf(a, "%s/%s", dir, INDEX_NAME);
    if (access(idx, F_OK) == 0) return idx;
    const char *one = nmc_arena_printf(a, "%s/%s", dir, SINGLE_NAME);
    if (access(one, F_OK) == 0) return one;
    nmc_diag_t *r = nmc_diag_add(d, NMC_SEV_ERROR, "st-no-checkpoint", dir, 0, 0, 0,
                                 "no safetensors checkpoint in this directory");
    nmc_diag_set_expected(r, "%s or %s", INDEX_NAME, SINGLE_NAME);
    nmc_diag_set_help(r, "save the model with save_pretrained(..., safe_serialization=True); "
                         "PyTorch .bin checkpoints are not read");
    return NULL;
}

static void merge_tensors(nmc_st_t *st)
{
    for (size_t k = 0; k < st->nfiles; k++) st->n += st->files[k].n;
    st->tensors = nmc_arena_alloc(st->arena, (st->n + 1) * sizeof *st->tensors);
    size_t at = 0;
    for (size_t k = 0; k < st->nfiles; k++)
        for (size_t j = 0; j < st->files[k].n; j++) st->tensors[at++] = st->files[k].tensors[j];
    qsort(st->tensors, st->n, sizeof *st->tensors, cmp_tensor);
}

int nmc_st_open(const char *path, nmc_st_t **out, nmc_diags_t *d)
{
    *out = NULL;
    nmc_st_t *st = calloc(1, sizeof *st);
    if (!st) abort();
    st->arena = nmc_arena_new();
    struct stat sb;
    int rc;
    if (stat(path, &sb) != 0) {
        io_error(d, path, "open the checkpoint");
        rc = -1;
    } else {
        const char *file = S_ISDIR(sb.st_mode) ? pick_in_dir(st->arena, path, d) : path;
        if (!file) {
            rc = -1;
        } else if (ends_with(file, ".index.json")) {
            rc = open_index(st, file, d);
        } else {
            st->files = nmc_arena_alloc(st->arena, sizeof *st->files);
            st->nfiles = 1;
            rc = open_file(st->arena, file, &st->files[0], d);
        }
    }
    if (rc != 0) {
        nmc_st_close(st);
        return -1;
    }
    merge_tensors(st);
    *out = st;
    return 0;
}

void nmc_st_close(nmc_st_t *st)
{
    if (!st) return;
    for (size_t k = 0; k < st->nfiles; k++)
        if (st->files[k].map) munmap(st->files[k].map, st->files[k].size);
    nmc_arena_free(st->arena);
    free(st);
}

size_t nmc_st_count(const nmc_st_t *st) { return st->n; }
size_t nmc_st_file_count(const nmc_st_t *st) { return st->nfiles; }

const nmc_st_tensor_t *nmc_st_at(const nmc_st_t *st, size_t i)
{
    return i < st->n ? &st->tensors[i] : NULL;
}

const nmc_st_tensor_t *nmc_st_find(const nmc_st_t *st, const char *name)
{
    nmc_st_tensor_t key = {.name = name};
    return bsearch(&key, st->tensors, st->n, sizeof key, cmp_tensor);
}

const nmc_st_tensor_t *nmc_st_get(const nmc_st_t *st, const char *name, nmc_diags_t *d)
{
    const nmc_st_tensor_t *t = nmc_st_find(st, name);
    if (!t) {
        nmc_diag_t *r = nmc_diag_add(d, NMC_SEV_ERROR, "st-tensor-not-found",
                                     st->nfiles ? st->files[0].path : NULL, 0, 0, 0,
                                     "tensor '%s' is not in the checkpoint", name);
        nmc_diag_set_help(r, "the checkpoint has %zu tensors; list them with "
                             "`nmc models show NAME --tensors`", st->n);
    }
    return t;
}

const char *nmc_st_metadata(const nmc_st_t *st, const char *key)
{
    if (!st->nfiles) return NULL;
    for (size_t i = 0; i < st->files[0].nmeta; i++)
        if (strcmp(st->files[0].meta[i].key, key) == 0) return st->files[0].meta[i].value;
    return NULL;
}

/* ---- writer ------------------------------------------------------------------------------ */
static int cmp_write_order(const void *x, const void *y)
{
    const nmc_st_write_tensor_t *a = *(nmc_st_write_tensor_t *const *)x;
    const nmc_st_write_tensor_t *b = *(nmc_st_write_tensor_t *const *)y;
    size_t sa = nmc_st_dtype_size(a->dtype), sb = nmc_st_dtype_size(b->dtype);
    if (sa != sb) return sa > sb ? -1 : 1;
    return strcmp(a->name, b->name);
}

static int cmp_kv(const void *x, const void *y)
{
    return strcmp(((const nmc_st_kv_t *)x)->key, ((const nmc_st_kv_t *)y)->key);
}

static size_t write_numel(const nmc_st_write_tensor_t *t)
{
    size_t n = 1;
    for (int i = 0; i < t->ndim; i++) n *= (size_t)t->shape[i];
    return n;
}

static int check_write_args(const char *path, nmc_st_write_tensor_t **order, size_t n,
                            const nmc_st_kv_t *meta, size_t nmeta, nmc_diags_t *d)
{
    for (size_t i = 0; i < n; i++) {
        const nmc_st_write_tensor_t *t = order[i];
        bool ok = t->name && *t->name && strcmp(t->name, "__metadata__") != 0 &&
                  (unsigned)t->dtype < NMC_ST_DTYPE_COUNT && t->ndim >= 0 &&
                  t->ndim <= NMC_ST_MAX_DIMS && (t->data || write_numel(t) == 0);
        for (int k = 0; ok && k < t->ndim; k++) ok = t->shape[k] >= 0;
        for (size_t j = 0; ok && j < i; j++) ok = strcmp(order[j]->name, t->name) != 0;
        if (!ok) {
            err_tensor(d, "st-write-invalid", path, t->name ? t->name : "(null)", NULL,
                       "name empty, reserved or duplicated, or dtype/shape/data invalid");
            return -1;
        }
    }
    for (size_t i = 0; i < nmeta; i++)
        for (size_t j = 0; j < i; j++)
            if (strcmp(meta[i].key, meta[j].key) == 0) {
                nmc_diag_add(d, NMC_SEV_ERROR, "st-write-invalid", path, 0, 0, 0,
                             "duplicate __metadata__ key '%s'", meta[i].key);
                return -1;
            }
    return 0;
}

/* Header JSON (unpadded) into a malloc'd buffer. */
static char *build_header(nmc_st_write_tensor_t **order, size_t n, nmc_st_kv_t *meta,
                          size_t nmeta, size_t *len)
{
    char *buf = NULL;
    FILE *m = open_memstream(&buf, len);
    if (!m) abort();
    fputc('{', m);
    if (nmeta) {
        fputs("\"__metadata__\":{", m);
        for (size_t i = 0; i < nmeta; i++) {
            if (i) fputc(',', m);
            nmc_json_write_string(m, meta[i].key, strlen(meta[i].key));
            fputc(':', m);
            nmc_json_write_string(m, meta[i].value, strlen(meta[i].value));
        }
        fputc('}', m);
    }
    uint64_t off = 0;
    for (size_t i = 0; i < n; i++) {
        const nmc_st_write_tensor_t *t = order[i];
        uint64_t nb = write_numel(t) * nmc_st_dtype_size(t->dtype);
        if (i || nmeta) fputc(',', m);
        nmc_json_write_string(m, t->name, strlen(t->name));
        fprintf(m, ":{\"dtype\":\"%s\",\"shape\":[", nmc_st_dtype_name(t->dtype));
        for (int k = 0; k < t->ndim; k++) fprintf(m, "%s%lld", k ? "," : "", (long long)t->shape[k]);
        fprintf(m, "],\"data_offsets\":[%llu,%llu]}", (unsigned long long)off,
                (unsigned long long)(off + nb));
        off += nb;
    }
    fputc('}', m);
    fclose(m);
    return buf;
}

int nmc_st_write(const char *path, const nmc_st_write_tensor_t *tensors, size_t n,
                 const nmc_st_kv_t *metadata, size_t nmeta, nmc_diags_t *d)
{
    nmc_st_write_tensor_t **order = calloc(n + 1, sizeof *order);
    nmc_st_kv_t *meta = calloc(nmeta + 1, sizeof *meta);
    if (!order || !meta) abort();
    for (size_t i = 0; i < n; i++) order[i] = (nmc_st_write_tensor_t *)&tensors[i];
    if (nmeta) memcpy(meta, metadata, nmeta * sizeof *meta);
    int rc = -1;
    if (check_write_args(path, order, n, meta, nmeta, d) != 0) goto done;
    qsort(order, n, sizeof *order, cmp_write_order);
    qsort(meta, nmeta, sizeof *meta, cmp_kv);
    size_t hlen;
    char *hdr = build_header(order, n, meta, nmeta, &hlen);
    size_t padded = (hlen + 7) / 8 * 8;
    nmc_atomic_file_t af;
    if (nmc_atomic_begin(&af, path, d) == 0) {
        unsigned char len8[8];
        for (int i = 0; i < 8; i++) len8[i] = (unsigned char)((uint64_t)padded >> (8 * i));
        fwrite(len8, 1, 8, af.f);
        fwrite(hdr, 1, hlen, af.f);
        for (size_t i = hlen; i < padded; i++) fputc(' ', af.f);
        for (size_t i = 0; i < n; i++) {
            size_t nb = write_numel(order[i]) * nmc_st_dtype_size(order[i]->dtype);
            if (nb) fwrite(order[i]->data, 1, nb, af.f);
        }
        rc = nmc_atomic_commit(&af, d);
    }
    free(hdr);
done:
    free(order);
    free(meta);
    return rc;
}
