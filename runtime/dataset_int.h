/* dataset_int.h — what the dataset_*.c files share and nothing else uses: the sample index,
 * one tokenized source (a list of files), the row processor, the cache and the packer.
 * Public API: dataset.h.
 */
#ifndef NMC_DATASET_INT_H
#define NMC_DATASET_INT_H
#include "dataset.h"
#include <stdio.h>

/* One kept sample: where its record sits in the sample file. 24 bytes, the only per-sample
 * memory. A record is int32 ids[n] followed by uint8 mask[n]. */
typedef struct {
    uint64_t off;         /* byte offset of the record in the sample file */
    uint32_t n;           /* tokens */
    uint32_t file : 31;   /* index into the source's file list */
    uint32_t truncated : 1;
    uint32_t line;        /* 1-based line in that file */
    uint32_t labels;      /* label tokens (mask[1..n-1] set) */
} ds_entry_t;

/* The tokenized rows of one file list (training or validation files). */
typedef struct {
    const char *const *files;
    size_t n_files;
    FILE *store;          /* the sample file, open for reading */
    ds_entry_t *idx;      /* malloc'd */
    int64_t n, cap;
    nmc_dataset_report_t rep;
} ds_source_t;

/* A growable token buffer with a parallel mask. */
typedef struct {
    int32_t *ids;
    uint8_t *mask;
    size_t n, cap;
} ds_toks_t;
void ds_toks_reserve(ds_toks_t *t, size_t n);
void ds_toks_free(ds_toks_t *t);

/* ---- rows (dataset_rows.c) ---- */
typedef struct ds_rows ds_rows_t;
ds_rows_t *ds_rows_new(const nmc_dataset_opts_t *o, const nmc_dataset_model_t *m);
void ds_rows_free(ds_rows_t *r);
/* Process one non-blank line: check it, render/format it and tokenize it into out (ids and
 * mask, untruncated). Returns 0, or -1 after appending the row's diagnostics to d.
 * *approx is set when the mask needed the prefix-encoding fallback. */
int ds_rows_process(ds_rows_t *r, const char *line, size_t len, const char *file, uint32_t lineno,
                    ds_toks_t *out, bool *approx, nmc_diags_t *d);
/* Parse a prompt_template into its pieces: lit[0] {col[0]} lit[1] {col[1]} lit[2] (braces
 * unescaped). Returns 0, or -1 with *why set to a static message. Strings are malloc'd
 * into the caller's arrays (free with free()). */
int ds_template_parse(const char *tmpl, char *lit[3], char *col[2], const char **why);

/* ---- cache and sample files (dataset_cache.c) ---- */
/* 128-bit key of a source: file bytes, model fingerprint, the options that change tokens. */
int ds_cache_key(const nmc_dataset_opts_t *o, const nmc_dataset_model_t *m,
                 const char *const *files, size_t n_files, uint64_t key[2], nmc_diags_t *d);
/* Try to load <dir>/<key>.nmcds into src (store, idx, rep). Returns 1 loaded, 0 absent or
 * unusable (a data-cache warning says why when it existed). */
int ds_cache_load(const char *path, const uint64_t key[2], ds_source_t *src, nmc_diags_t *d);
/* Write the header+index trailer of a finished sample file f (records already written after
 * the header space). Returns 0 or -1 (io-error). */
int ds_cache_finish(FILE *f, const uint64_t key[2], const ds_source_t *src, nmc_diags_t *d);
/* Bytes reserved at the start of a sample file for the header. */
#define DS_CACHE_HEADER_BYTES 4096

/* ---- packing (dataset_pack.c) ---- */
/* Best-fit-decreasing packing of lengths len[0..n) (each <= cap) into bins of capacity cap.
 * Fills bin_of[i] (bin of item i) and returns the bin count; bins are numbered in creation
 * order and each keeps its items in insertion order (the caller builds the lists). */
int64_t ds_pack_bfd(const uint32_t *len, int64_t n, int64_t cap, int64_t *bin_of);

/* ---- sample access for the iterator (dataset.c) ---- */
/* Read sample `pos` (file order within split s) into ids/mask (room for its length). */
int ds_read_sample(const nmc_dataset_t *ds, nmc_dataset_split_t s, int64_t pos, int32_t *ids, uint8_t *mask,
                   nmc_diags_t *d);
int64_t ds_sample_len(const nmc_dataset_t *ds, nmc_dataset_split_t s, int64_t pos);
int64_t ds_units(const nmc_dataset_t *ds, nmc_dataset_split_t s);
/* Unit u: its samples as positions in the split (n of them). */
void ds_unit(const nmc_dataset_t *ds, nmc_dataset_split_t s, int64_t u, const int64_t **mem, int64_t *n);
const nmc_dataset_opts_t *ds_opts(const nmc_dataset_t *ds);
int32_t ds_pad_id(const nmc_dataset_t *ds);

/* ---- hashing / rng (dataset_cache.c) ---- */
typedef struct { uint64_t a, b; } ds_hash_t;
void ds_hash_init(ds_hash_t *h);
void ds_hash_bytes(ds_hash_t *h, const void *p, size_t n);
void ds_hash_u64(ds_hash_t *h, uint64_t v);
void ds_hash_str(ds_hash_t *h, const char *s); /* NULL hashes differently from "" */
uint64_t ds_splitmix64(uint64_t *state);

#endif
