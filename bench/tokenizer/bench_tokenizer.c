/* bench_tokenizer.c — single-thread encode throughput of nmc's tokenizer.
 *
 * Usage: bench_tokenizer TOKENIZER.json CORPUS.jsonl REPS
 * Encodes every corpus line (one JSON string per line) REPS times with one encoder (its word
 * cache warm after the first pass, as HF's per-thread cache is) and prints one line:
 *   tokens=N seconds=S tokens_per_s=R checksum=C
 * run.py compares it with HF tokenizers on the same corpus in the same run.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "tokenizer.h"

static double now(void) {
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + ts.tv_nsec * 1e-9;
}

int main(int argc, char **argv) {
    if (argc != 4) {
        fprintf(stderr, "usage: %s TOKENIZER.json CORPUS.jsonl REPS\n", argv[0]);
        return 2;
    }
    nmc_diags_t d;
    nmc_diags_init(&d);
    nmc_tokenizer_t *t = nmc_tokenizer_load(argv[1], &d);
    if (!t) {
        nmc_diags_render_text(&d, NULL, 0, stderr, 0);
        return 1;
    }
    nmc_arena_t *a = nmc_arena_new();
    FILE *f = fopen(argv[2], "rb");
    if (!f) { perror(argv[2]); return 1; }
    fseek(f, 0, SEEK_END);
    long n = ftell(f);
    fseek(f, 0, SEEK_SET);
    char *text = malloc((size_t)n + 1);
    if (fread(text, 1, (size_t)n, f) != (size_t)n) return 1;
    fclose(f);
    const char **lines = NULL;
    size_t *lens = NULL, nl = 0;
    for (char *p = text; p < text + n;) {
        char *e = memchr(p, '\n', (size_t)(text + n - p));
        if (!e) e = text + n;
        nmc_json_t *j;
        if (nmc_json_parse(a, p, (size_t)(e - p), argv[2], NULL, &j, &d) == 0 && j->kind == NMC_JSON_STRING) {
            lines = realloc(lines, (nl + 1) * sizeof *lines);
            lens = realloc(lens, (nl + 1) * sizeof *lens);
            lines[nl] = j->u.str.s;
            lens[nl++] = j->u.str.len;
        }
        p = e + 1;
    }
    int reps = atoi(argv[3]);
    nmc_tok_encoder_t *e = nmc_tok_encoder_new(t);
    nmc_tok_ids_t ids = {0};
    unsigned long long tokens = 0, sum = 0;
    double t0 = now();
    for (int r = 0; r < reps; r++)
        for (size_t i = 0; i < nl; i++) {
            nmc_tok_encode(e, lines[i], lens[i], false, &ids, NULL);
            tokens += ids.n;
            for (size_t k = 0; k < ids.n; k++) sum = sum * 1000003u + (unsigned)ids.ids[k];
        }
    double dt = now() - t0;
    printf("tokens=%llu seconds=%.6f tokens_per_s=%.0f checksum=%llu\n", tokens, dt, tokens / dt, sum);
    nmc_tok_ids_free(&ids);
    nmc_tok_encoder_free(e);
    nmc_tokenizer_free(t);
    nmc_diags_free(&d);
    nmc_arena_free(a);
    free(lines);
    free(lens);
    free(text);
    return 0;
}
