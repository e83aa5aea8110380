/* batch.h — one micro-batch as the model consumes it: the contract between the dataset
 * pipeline (runtime/dataset.c produces it) and the model (runtime/model.c consumes it).
 *
 * Rows are fixed length T (padded or packed). Labels are ALREADY SHIFTED: labels[i] is the
 * token the model must predict at position i (i.e. input_ids[i+1] of the same document), or
 * NMC_IGNORE_INDEX where no loss is taken: prompt/system/user tokens, padding, and the last
 * token of every document (in a packed row it must not predict the next document's first
 * token). This equals Hugging Face's "labels = input_ids; shift inside the loss" with
 * labels[:, 1:] moved left by one, and with the first token of each packed document masked
 * as DataCollatorWithFlattening does.
 *
 * Attention: token i of a row attends to tokens doc_start[i] .. i of the same row
 * (doc_start[i] is the row-local index of the first token of i's document). Padding tokens
 * form their own document(s) and carry no labels. positions[i] restarts at 0 for every
 * document (RoPE position ids). For unpacked rows doc_start is all 0 for real tokens.
 *
 * Ownership: the arrays belong to whoever filled the batch (the dataset iterator reuses
 * them for the next batch); the model only reads them during the call.
 */
#ifndef NMC_BATCH_H
#define NMC_BATCH_H
#include <stdint.h>

#define NMC_IGNORE_INDEX (-100)

typedef struct {
    int B;                    /* rows in this micro-batch */
    int T;                    /* tokens per row */
    int32_t *input_ids;       /* [B*T] */
    int32_t *labels;          /* [B*T] shifted targets or NMC_IGNORE_INDEX */
    int32_t *positions;       /* [B*T] position ids, restarting per document */
    int32_t *doc_start;       /* [B*T] row-local start index of each token's document */
    int64_t n_label_tokens;   /* number of labels != NMC_IGNORE_INDEX */
    int64_t n_real_tokens;    /* tokens that are not padding (for tokens/s) */
    int64_t first_sample;     /* index (in this epoch's order) of the first sample in the batch; -1 if n/a */
} nmc_batch_t;

#endif
