/* dataset_store.c — where a job's data and model live: the store (runtime/store.h) resolves
 * the model entity and the filesets, dataset.c lists a fileset's JSONL files. Kept apart from
 * the job code because job.h and store.h cannot share a translation unit.
 */
#include "dataset_int.h"
#include "store.h"

static int fileset_files(nmc_arena_t *a, const nmc_store_t *s, const char *ref, const char ***files, size_t *n,
                         nmc_diags_t *d)
{
    nmc_store_entity_t e;
    if (nmc_store_resolve_fileset(s, ref, &e, d) != 0) return -1;
    return nmc_dataset_list_files(a, e.path, files, n, d);
}

int nmc_dataset_resolve(nmc_arena_t *a, const char *home, const char *model_ref, const char *train_ref,
                        const char *valid_ref, const char **model_dir, const char ***train_files, size_t *n_train,
                        const char ***val_files, size_t *n_val, nmc_diags_t *d)
{
    nmc_store_t *s = NULL;
    *model_dir = NULL, *train_files = *val_files = NULL, *n_train = *n_val = 0;
    if (nmc_store_open(home, &s, d) != 0) return -1;
    nmc_store_entity_t me;
    int rc = -1;
    if (nmc_store_resolve_model(s, model_ref, &me, d) == 0 &&
        fileset_files(a, s, train_ref, train_files, n_train, d) == 0 &&
        (!valid_ref || fileset_files(a, s, valid_ref, val_files, n_val, d) == 0)) {
        *model_dir = nmc_arena_strdup(a, me.path);
        rc = 0;
    }
    nmc_store_close(s);
    return rc;
}
