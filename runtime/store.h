/* store.h — the local store: Model Entities and FileSets on disk, no server.
 *
 * NMC_HOME (env), else $XDG_DATA_HOME/nmc, else $HOME/.local/share/nmc, holds
 *   models/<workspace>/<name>/entity.json      the Model Entity (metadata, where the files are)
 *   models/<workspace>/<name>/files/           the checkpoint, when imported with --copy
 *   models/<workspace>/<name>/adapters/<adapter>/   LoRA adapters trained on this
 *                                              base (one directory per adapter, PEFT layout)
 *   filesets/<workspace>/<name>/entity.json    the FileSet
 *   filesets/<workspace>/<name>/files/         the data, when imported with --copy
 * Job files address entities as `name` or `workspace/name` (workspace "default").
 * An import by reference records the absolute source path and checks it still exists on
 * every resolve; an import by copy copies the files in. Either way the entity directory
 * appears atomically (built under a temp name, then renamed) and the source is only read.
 * Names are [A-Za-z0-9._-]+ per segment, not starting with '.', at most one '/'.
 *
 * Library code: returns status, appends diagnostics (codes store-*), never prints.
 * docs/store.md documents the layout, entity.json and every error code.
 */
#ifndef NMC_STORE_H
#define NMC_STORE_H
#include "arena.h"
#include "diag.h"
#include "json.h"
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>

/* A name segment: 1..NMC_STORE_NAME_MAX bytes (a path component on every filesystem
 * nmc targets allows 255; 128 keeps `workspace/name` readable and well under PATH_MAX). */
#define NMC_STORE_NAME_MAX 128
#define NMC_STORE_DEFAULT_WORKSPACE "default"
/* entity.json format version; bumped when a field changes meaning. */
#define NMC_STORE_FORMAT_VERSION 1

typedef enum { NMC_ENTITY_MODEL = 0, NMC_ENTITY_FILESET = 1 } nmc_entity_kind_t;

typedef struct {
    char workspace[NMC_STORE_NAME_MAX + 1];
    char name[NMC_STORE_NAME_MAX + 1];
} nmc_store_ref_t;

/* Model metadata recorded at import (from config.json and the checkpoint). */
typedef struct {
    const char *architecture; /* "LlamaForCausalLM" */
    const char *model_type;   /* "llama" */
    const char *dtype;        /* of the checkpoint's floating tensors: "bfloat16", "float32", ... */
    const char *checkpoint;   /* "model.safetensors" or "model.safetensors.index.json" */
    int64_t parameters;       /* elements over all checkpoint tensors */
    int64_t num_layers, hidden_size, vocab_size, num_heads, num_kv_heads, intermediate_size;
    int64_t max_position_embeddings;
    int64_t tensors;          /* tensor count */
    int64_t shards;           /* safetensors file count */
    bool tie_word_embeddings;
    bool has_tokenizer;       /* tokenizer.json present at import */
} nmc_store_model_meta_t;

typedef struct {
    nmc_entity_kind_t kind;
    const char *workspace, *name;
    const char *ref;        /* "workspace/name" */
    bool by_reference;      /* true: files live at `path` outside the store */
    const char *path;       /* absolute path of the files (a directory; a fileset may be a file) */
    const char *source;     /* absolute path the import read from */
    const char *entity_dir; /* the entity's directory in the store (adapters/ lives here) */
    int64_t files, bytes;   /* regular files and their total size at import */
    nmc_store_model_meta_t model; /* kind == NMC_ENTITY_MODEL only */
} nmc_store_entity_t;

typedef struct nmc_store nmc_store_t;

/* Open the store at `home`, or (home NULL) at the default location above. Nothing is
 * created until an import. Returns 0, or -1 with store-home when no location can be
 * determined (no NMC_HOME, XDG_DATA_HOME or HOME). Close with nmc_store_close. */
int nmc_store_open(const char *home, nmc_store_t **out, nmc_diags_t *d);
void nmc_store_close(nmc_store_t *s);
const char *nmc_store_home(const nmc_store_t *s);

/* Parse and check `ref` ("name" or "workspace/name"). Returns 0, or -1 with
 * store-invalid-name saying which rule was broken. `what` ("model", "fileset") and
 * `field` (e.g. "--name", "model") go into the message. */
int nmc_store_parse_ref(const char *ref, const char *what, const char *field,
                        nmc_store_ref_t *out, nmc_diags_t *d);

/* Import. src: a model directory (config.json + safetensors) or, for a fileset, a file
 * or directory. copy: copy files into the store; else record src by reference.
 * Model imports are validated first (config supported, checkpoint headers valid and
 * matching the config, tokenizer.json present or a warning). On success fills *out
 * (strings owned by the store) and returns 0; otherwise -1 and nothing is left behind.
 * An existing entity of that name is an error (store-entity-exists). */
int nmc_store_import_model(nmc_store_t *s, const char *src, const char *ref, bool copy,
                           nmc_store_entity_t *out, nmc_diags_t *d);
int nmc_store_import_fileset(nmc_store_t *s, const char *src, const char *ref, bool copy,
                             nmc_store_entity_t *out, nmc_diags_t *d);

/* Resolve a ref used by a job. Errors: store-invalid-name, store-model-not-found /
 * store-fileset-not-found (with the import command on the help line), store-entity-invalid
 * (entity.json damaged), store-source-missing (a by-reference source is gone).
 * Strings in *out stay valid until nmc_store_close. */
int nmc_store_resolve_model(const nmc_store_t *s, const char *ref, nmc_store_entity_t *out,
                            nmc_diags_t *d);
int nmc_store_resolve_fileset(const nmc_store_t *s, const char *ref,
                              nmc_store_entity_t *out, nmc_diags_t *d);

/* All entities of a kind, sorted by ref. *items lives until nmc_store_close. Entities whose
 * entity.json is damaged are reported (store-entity-invalid) and skipped; the call still
 * returns 0 unless the store cannot be read. */
int nmc_store_list(const nmc_store_t *s, nmc_entity_kind_t kind, nmc_store_entity_t **items,
                   size_t *n, nmc_diags_t *d);

/* Directory of an adapter of a base model entity (where `nmc train` publishes LoRA outputs): <entity_dir>/adapters/<adapter>.
 * (Allocated in the store's arena; the directory is not created.) */
const char *nmc_store_adapter_dir(const nmc_store_t *s, const nmc_store_entity_t *base,
                                  const char *adapter);

/* The adapters stored under base model entity `base`: names of the directories in
 * <entity_dir>/adapters/ that hold an adapter_config.json (PEFT layout), sorted; entries
 * without one (a temp directory of a save in progress) are skipped. *names (an array of
 * *n strings) lives in the store's arena until nmc_store_close. No adapters/ directory
 * gives 0 names. Returns 0, or -1 with io-error when the directory cannot be read. */
int nmc_store_list_adapters(const nmc_store_t *s, const nmc_store_entity_t *base,
                            const char ***names, size_t *n, nmc_diags_t *d);

/* ---- atomic file writing (used by the store and by nmc_st_write) -------------------- */
typedef struct {
    FILE *f;        /* write here between begin and commit */
    char *tmp;      /* temp file beside the target (malloc'd) */
    char *path;     /* the target (malloc'd) */
} nmc_atomic_file_t;

/* Create a temp file in path's directory. Returns 0, or -1 with io-error. */
int nmc_atomic_begin(nmc_atomic_file_t *af, const char *path, nmc_diags_t *d);
/* Flush, fsync, close, rename onto the target, fsync the directory. On any failure the
 * temp file is removed, the target is untouched, and -1 is returned with io-error. */
int nmc_atomic_commit(nmc_atomic_file_t *af, nmc_diags_t *d);
/* Discard the temp file (safe after a failed begin or commit). */
void nmc_atomic_abort(nmc_atomic_file_t *af);

/* ---- CLI (wired into runtime/main.c by the coordinator) ------------------------------ */
/* argv[0] is the subcommand ("import", "list", "show"). Prints results to stdout and
 * diagnostics to stderr. Returns the exit code: 0 ok, 1 error, 2 usage error. */
int nmc_cmd_models(int argc, char **argv);
int nmc_cmd_filesets(int argc, char **argv);

/* Write `"model": {...}` (the metadata of a model entity, as entity.json stores it) as a
 * member of the JSON object `w` is in. Used by entity.json and `nmc models show --format json`. */
void nmc_store_write_model_meta(nmc_json_writer_t *w, const nmc_store_model_meta_t *m);

#endif
