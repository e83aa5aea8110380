/* tokenizer.h — HF tokenizer.json (tokenizers 0.23 format) loaded and run in C, giving the
 * same ids and decoded strings as HF tokenizers for the families nmc trains:
 *
 *   byte-level BPE   GPT-2, Llama-3, Qwen2/2.5/3: ByteLevel and Split pre-tokenizers (with the
 *                    exact regex of each family), Sequence, NFC, ByteLevel decoder
 *   SentencePiece    Llama-2, Mistral, TinyLlama: Prepend/Replace normalizers or Metaspace,
 *   BPE              byte_fallback, unk/fuse_unk, Replace/ByteFallback/Fuse/Strip/Metaspace
 *                    decoders
 *   both             added_tokens (special or not; single_word, lstrip, rstrip, normalized),
 *                    TemplateProcessing/ByteLevel/Sequence post-processors, merges as "a b"
 *                    strings or [a, b] pairs, ignore_merges
 *
 * Anything else (WordPiece, Unigram, another normalizer, pre-tokenizer, decoder or regex) is
 * refused at load with a diagnostic that names the component and lists what is supported;
 * nothing is silently approximated. Ignored on purpose (a warning says so): "truncation" and
 * "padding" (the data pipeline truncates and pads itself).
 *
 * Thread safety: a loaded tokenizer is read-only. Encoding from several threads is safe; give
 * each thread its own nmc_tok_encoder_t (per-thread scratch and word cache), or call
 * nmc_tokenizer_encode, which makes a temporary one per call.
 *
 * Diagnostic codes (stable): tokenizer-bad-json (a field of the wrong type or missing),
 * tokenizer-bad-version, tokenizer-missing-model, tokenizer-unsupported-model,
 * tokenizer-unsupported-normalizer, tokenizer-unsupported-pre-tokenizer,
 * tokenizer-unsupported-decoder, tokenizer-unsupported-post-processor,
 * tokenizer-unsupported-pattern, tokenizer-unsupported-option, tokenizer-bad-merge,
 * tokenizer-merge-not-in-vocab, tokenizer-token-id-out-of-range, tokenizer-duplicate-id,
 * tokenizer-unknown-token, tokenizer-ignored-field (warning), tokenizer-added-token-id
 * (warning: HF reassigns the id the same way), tokenizer-invalid-utf8 (encode),
 * tokenizer-bad-id (decode), plus the io-/json- codes of json.h.
 */
#ifndef NMC_TOKENIZER_H
#define NMC_TOKENIZER_H
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "diag.h"
#include "json.h"

typedef struct nmc_tokenizer nmc_tokenizer_t;
typedef struct nmc_tok_encoder nmc_tok_encoder_t;

/* Ids are int32 in the API; 2^24 bounds the id table (16 M entries, 128 MiB of pointers) and
 * is 60x the largest real vocabulary (Gemma, 262 k). */
#define NMC_TOK_MAX_ID ((int32_t)1 << 24)

/* Load path (a tokenizer.json; up to NMC_JSON_DATA_MAX_BYTES). Returns NULL on any error,
 * with records in diags; warnings may be added on success too. Free with nmc_tokenizer_free. */
nmc_tokenizer_t *nmc_tokenizer_load(const char *path, nmc_diags_t *diags);

/* The same from an already parsed tree (file names the source in diagnostics; may be NULL).
 * Nothing of root is referenced after the call. */
nmc_tokenizer_t *nmc_tokenizer_from_json(const nmc_json_t *root, const char *file,
                                         nmc_diags_t *diags);

void nmc_tokenizer_free(nmc_tokenizer_t *t);

/* A caller-owned, growable id buffer; reuse it across calls, free with nmc_tok_ids_free. */
typedef struct {
    int32_t *ids;
    size_t n, cap;
} nmc_tok_ids_t;
void nmc_tok_ids_free(nmc_tok_ids_t *v);

/* Per-thread encoding state (scratch buffers and a cache of words already split into ids).
 * t must outlive it. */
nmc_tok_encoder_t *nmc_tok_encoder_new(const nmc_tokenizer_t *t);
void nmc_tok_encoder_free(nmc_tok_encoder_t *e);

/* Encode text[0..len) (UTF-8; need not be NUL-terminated) into out (replaced, not appended).
 * add_special_tokens: apply the post-processor's template (e.g. BOS) as HF's
 * encode(add_special_tokens=True) does. Returns 0, or -1 with a tokenizer-invalid-utf8 record
 * in diags (may be NULL) when text is not well-formed UTF-8. */
int nmc_tok_encode(nmc_tok_encoder_t *e, const char *text, size_t len, bool add_special_tokens,
                   nmc_tok_ids_t *out, nmc_diags_t *diags);
/* The same with a temporary encoder (no cache kept between calls). */
int nmc_tokenizer_encode(const nmc_tokenizer_t *t, const char *text, size_t len,
                         bool add_special_tokens, nmc_tok_ids_t *out, nmc_diags_t *diags);

/* Decode ids as HF's decode(ids, skip_special_tokens) does. Returns a malloc'd NUL-terminated
 * UTF-8 string (caller frees; *len_out, if not NULL, gets its length), or NULL with a
 * tokenizer-bad-id record when an id is not in the vocabulary (HF silently drops those). */
char *nmc_tokenizer_decode(const nmc_tokenizer_t *t, const int32_t *ids, size_t n,
                           bool skip_special_tokens, size_t *len_out, nmc_diags_t *diags);

/* Lookups. token_to_id: -1 when absent. id_to_token: NULL when absent; the string lives as
 * long as t (for a normalized added token it is the normalized form, as in HF). */
int32_t nmc_tokenizer_token_to_id(const nmc_tokenizer_t *t, const char *tok, size_t len);
const char *nmc_tokenizer_id_to_token(const nmc_tokenizer_t *t, int32_t id, size_t *len);
/* HF's get_vocab_size(with_added_tokens=True): model vocab + added tokens not in it. */
size_t nmc_tokenizer_vocab_size(const nmc_tokenizer_t *t);
/* One past the largest id (rows an embedding needs). */
int32_t nmc_tokenizer_id_limit(const nmc_tokenizer_t *t);
bool nmc_tokenizer_is_special(const nmc_tokenizer_t *t, int32_t id);
/* -1 when unknown. bos: the special token the single template puts first, else the first
 * present of <|begin_of_text|>, <s>, <bos>. eos: the first present of <|end_of_text|>, </s>,
 * <|endoftext|>, <eos>, <|im_end|>. pad: <pad>, <|pad|>, <|finetune_right_pad_id|>. A model's
 * tokenizer_config.json may name others: the caller overrides with nmc_tokenizer_set_special. */
int32_t nmc_tokenizer_bos_id(const nmc_tokenizer_t *t);
int32_t nmc_tokenizer_eos_id(const nmc_tokenizer_t *t);
int32_t nmc_tokenizer_pad_id(const nmc_tokenizer_t *t);
/* Set bos/eos/pad by token text before sharing t between threads; -1 if tok is unknown. */
typedef enum { NMC_TOK_BOS, NMC_TOK_EOS, NMC_TOK_PAD } nmc_tok_role_t;
int32_t nmc_tokenizer_set_special(nmc_tokenizer_t *t, nmc_tok_role_t role, const char *tok);

#endif
