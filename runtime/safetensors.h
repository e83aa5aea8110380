/* safetensors.h — read and write Hugging Face safetensors checkpoints.
 *
 * Reading: a single file (`model.safetensors`), a directory holding one, or a sharded
 * checkpoint (`model.safetensors.index.json` whose weight_map names the shard of each
 * tensor). Files are mmapped read-only; tensor data is never copied until asked
 * (nmc_st_to_f32). Every header is validated in full before any tensor is handed out,
 * with the same acceptance rules as the reference Rust crate (huggingface/safetensors):
 *   - 8-byte little-endian header length N; N <= 100,000,000; 8 + N <= file size
 *   - the header is a JSON object (strict JSON layer: duplicate names are rejected there);
 *     `__metadata__`, if present, maps strings to strings
 *   - every other member is {"dtype": D, "shape": [..], "data_offsets": [b, e]} with no
 *     other keys, b <= e, and (e - b) == product(shape) * sizeof(D)
 *   - sorted by offset, the tensors tile the data buffer exactly: each begins where the
 *     previous ended (gaps and overlaps are both rejected), the first at 0, the last ends
 *     at the end of the file.
 * Every diagnostic names the file (diag.file) and, where there is one, the tensor
 * (message and diag.path). Codes are listed in docs/store.md and below.
 *
 * Writing: nmc_st_write() writes one file atomically (temp + fsync + rename) in the
 * layout the reference writer uses: tensors ordered by descending dtype size then name
 * (so each tensor is aligned to its element size), `__metadata__` first with sorted
 * keys, header padded with spaces to a multiple of 8 bytes.
 */
#ifndef NMC_SAFETENSORS_H
#define NMC_SAFETENSORS_H
#include "diag.h"
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

/* Every dtype the format defines. Training reads F32, F16 and BF16 only; the others are
 * parsed (so a checkpoint holding them opens) and refused where a tensor is used. */
typedef enum {
    NMC_ST_F32, NMC_ST_F16, NMC_ST_BF16, NMC_ST_F64,
    NMC_ST_I64, NMC_ST_I32, NMC_ST_I16, NMC_ST_I8,
    NMC_ST_U64, NMC_ST_U32, NMC_ST_U16, NMC_ST_U8,
    NMC_ST_BOOL, NMC_ST_F8_E4M3, NMC_ST_F8_E5M2,
    NMC_ST_DTYPE_COUNT
} nmc_st_dtype_t;

/* Reference crate limit: larger headers are refused (a header bomb would allocate it). */
#define NMC_ST_MAX_HEADER ((uint64_t)100000000)
/* Tensors of LLM checkpoints have at most 3 dims (MoE expert stacks); 8 leaves room. */
#define NMC_ST_MAX_DIMS 8

typedef struct {
    const char *name;          /* tensor name as in the header */
    nmc_st_dtype_t dtype;
    int ndim;                  /* 0 = scalar */
    int64_t shape[NMC_ST_MAX_DIMS];
    int64_t numel;             /* product of shape (1 for a scalar) */
    size_t nbytes;             /* numel * element size */
    const void *data;          /* into the mmapped file; valid until nmc_st_close() */
    const char *file;          /* path of the file (shard) holding it */
} nmc_st_tensor_t;

typedef struct nmc_st nmc_st_t;

/* Open `path`: a .safetensors file, a model.safetensors.index.json, or a directory
 * holding model.safetensors.index.json (preferred) or model.safetensors.
 * On success returns 0 and *out (close with nmc_st_close). On failure returns -1,
 * appends errors (codes st-*) to d, and sets *out NULL. Validation is complete:
 * afterwards every tensor's data lies inside its file. */
int nmc_st_open(const char *path, nmc_st_t **out, nmc_diags_t *d);
void nmc_st_close(nmc_st_t *st);

/* Tensors sorted by name; i < nmc_st_count(). */
size_t nmc_st_count(const nmc_st_t *st);
const nmc_st_tensor_t *nmc_st_at(const nmc_st_t *st, size_t i);
/* NULL when absent. */
const nmc_st_tensor_t *nmc_st_find(const nmc_st_t *st, const char *name);
/* Like nmc_st_find, but appends st-tensor-not-found when absent. */
const nmc_st_tensor_t *nmc_st_get(const nmc_st_t *st, const char *name, nmc_diags_t *d);
/* Number of files (1, or the shard count). */
size_t nmc_st_file_count(const nmc_st_t *st);
/* A `__metadata__` value of the first file (the only one, or the first shard); NULL if none. */
const char *nmc_st_metadata(const nmc_st_t *st, const char *key);

/* Convert t's elements to float32 into dst[t->numel]. F32 is copied, F16 and BF16 are
 * widened exactly. Any other dtype: returns -1 with st-dtype-unsupported naming the
 * tensor and its file. */
int nmc_st_to_f32(const nmc_st_tensor_t *t, float *dst, nmc_diags_t *d);
/* True for F32, F16, BF16 (the dtypes training can load). */
bool nmc_st_dtype_trainable(nmc_st_dtype_t dt);

const char *nmc_st_dtype_name(nmc_st_dtype_t dt); /* "F32", "BF16", ... */
size_t nmc_st_dtype_size(nmc_st_dtype_t dt);      /* bytes per element */
/* Parse a dtype name as written in headers; returns -1 when unknown. */
int nmc_st_dtype_parse(const char *s, nmc_st_dtype_t *out);

/* Scalar conversions (exact). */
float nmc_st_f16_to_f32(uint16_t h);
float nmc_st_bf16_to_f32(uint16_t b);
uint16_t nmc_st_f32_to_bf16(float f); /* round to nearest even; NaN stays NaN */
uint16_t nmc_st_f32_to_f16(float f);  /* round to nearest even; overflow to inf */

/* ---- writing ------------------------------------------------------------------------- */
typedef struct {
    const char *name;
    nmc_st_dtype_t dtype;
    int ndim;
    int64_t shape[NMC_ST_MAX_DIMS];
    const void *data; /* numel * element size bytes, little-endian */
} nmc_st_write_tensor_t;

typedef struct {
    const char *key, *value;
} nmc_st_kv_t;

/* Write tensors[0..n) and metadata[0..nmeta) (may be NULL/0) to `path` atomically.
 * Names must be unique and non-empty and not "__metadata__"; metadata keys unique.
 * Returns 0, or -1 with st-write-* / io-error diagnostics (the target is untouched). */
int nmc_st_write(const char *path, const nmc_st_write_tensor_t *tensors, size_t n,
                 const nmc_st_kv_t *metadata, size_t nmeta, nmc_diags_t *d);

#endif
