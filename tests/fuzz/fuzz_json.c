/* fuzz_json.c — libFuzzer target for the strict JSON layer and the diagnostic renderers.
 *
 * Each input is parsed three ways: default limits, tiny limits (64 bytes, depth 3, so the
 * limit paths run), and the data-file limits. Whatever happens, the diagnostics are rendered
 * (text with the source, and JSON). An accepted document must survive a round trip: its
 * compact serialization parses again and serializes to the same bytes, and the pretty
 * writer's output parses too. Crashes, sanitizer reports, leaks and failed round trips
 * abort. Built and run by tests/fuzz/run.sh.
 */
#include "json.h"
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

int LLVMFuzzerTestOneInput(const unsigned char *data, size_t size);

static char *serialize(const nmc_json_t *v, int indent, size_t *n)
{
    char *mem = NULL;
    FILE *f = open_memstream(&mem, n);
    if (indent < 0) nmc_json_write(v, f);
    else {
        nmc_json_writer_t w;
        nmc_jw_init(&w, f, indent);
        nmc_jw_value(&w, v);
    }
    fclose(f);
    return mem;
}

static void roundtrip(const nmc_json_t *v)
{
    size_t n1, n2, np;
    char *w1 = serialize(v, -1, &n1);
    char *pretty = serialize(v, 2, &np);
    nmc_arena_t *a = nmc_arena_new();
    nmc_diags_t d;
    nmc_diags_init(&d);
    nmc_json_limits_t lim = {.max_bytes = NMC_JSON_DATA_MAX_BYTES, .max_depth = 4096};
    nmc_json_t *v2 = NULL, *v3 = NULL;
    if (nmc_json_parse(a, w1, n1, "w1", &lim, &v2, &d) != 0) abort();
    char *w2 = serialize(v2, -1, &n2);
    if (n1 != n2 || memcmp(w1, w2, n1) != 0) abort();
    if (nmc_json_parse(a, pretty, np, "pretty", &lim, &v3, &d) != 0) abort();
    free(w1);
    free(w2);
    free(pretty);
    nmc_diags_free(&d);
    nmc_arena_free(a);
}

static void one(const char *src, size_t len, const nmc_json_limits_t *lim)
{
    nmc_arena_t *a = nmc_arena_new();
    nmc_diags_t d;
    nmc_diags_init(&d);
    nmc_json_t *v = NULL;
    int rc = nmc_json_parse(a, src, len, "fuzz.json", lim, &v, &d);
    if ((rc == 0) != (v != NULL) || (rc != 0 && d.n_errors == 0)) abort();
    static FILE *devnull;
    if (!devnull) devnull = fopen("/dev/null", "w");
    nmc_diags_sort(&d);
    nmc_diags_render_text(&d, src, len, devnull, 1);
    nmc_diags_render_json(&d, "fuzz.json", devnull);
    if (rc == 0) roundtrip(v);
    nmc_diags_free(&d);
    nmc_arena_free(a);
}

int LLVMFuzzerTestOneInput(const unsigned char *data, size_t size)
{
    /* an exact-size copy: any read past `size` is a heap overflow ASan sees */
    char *src = malloc(size ? size : 1);
    if (size) memcpy(src, data, size);
    one(src, size, NULL);
    nmc_json_limits_t tiny = {.max_bytes = 64, .max_depth = 3};
    one(src, size, &tiny);
    nmc_json_limits_t big = {.max_bytes = NMC_JSON_DATA_MAX_BYTES, .max_depth = 0};
    one(src, size, &big);
    free(src);
    return 0;
}
