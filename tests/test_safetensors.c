/* test_safetensors.c — safetensors reader/writer: every malformed-header case (files
 * written here into a temp dir) with its exact error code, sharded checkpoints, the
 * committed fixtures, dtype conversion, and the writer (read back here, and by the
 * Python `safetensors` package when it is installed). */
#include "safetensors.h"
#include <check.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#define FIXTURES "tests/data/models"

static char tmpdir[256];

static void setup(void)
{
    snprintf(tmpdir, sizeof tmpdir, "/tmp/nmc-test-st-XXXXXX");
    ck_assert_ptr_nonnull(mkdtemp(tmpdir));
}

static void teardown(void)
{
    char cmd[300];
    snprintf(cmd, sizeof cmd, "rm -rf '%s'", tmpdir);
    ck_assert_int_eq(system(cmd), 0);
}

static const char *tpath(const char *name)
{
    static char buf[4][512];
    static int k;
    k = (k + 1) % 4;
    snprintf(buf[k], sizeof buf[k], "%s/%s", tmpdir, name);
    return buf[k];
}

/* Write n (little-endian u64), then hdr (hlen bytes), then `data` bytes of value 0xAB. */
static const char *write_raw_n(const char *name, uint64_t n, const char *hdr, size_t hlen,
                               size_t data)
{
    const char *p = tpath(name);
    FILE *f = fopen(p, "wb");
    ck_assert_ptr_nonnull(f);
    for (int i = 0; i < 8; i++) fputc((int)((n >> (8 * i)) & 0xff), f);
    fwrite(hdr, 1, hlen, f);
    for (size_t i = 0; i < data; i++) fputc(0xAB, f);
    fclose(f);
    return p;
}

static const char *write_raw(const char *name, const char *hdr, size_t data)
{
    return write_raw_n(name, strlen(hdr), hdr, strlen(hdr), data);
}

static void write_text(const char *name, const char *text)
{
    FILE *f = fopen(tpath(name), "wb");
    ck_assert_ptr_nonnull(f);
    fputs(text, f);
    fclose(f);
}

/* Open must fail with exactly one error whose code is `code` (plus, for JSON problems,
 * the JSON layer's own record). Returns the matching record's message. */
static void expect_fail(const char *path, const char *code, const char *msg)
{
    nmc_diags_t d;
    nmc_diags_init(&d);
    nmc_st_t *st = (nmc_st_t *)1;
    ck_assert_int_eq(nmc_st_open(path, &st, &d), -1);
    ck_assert_ptr_null(st);
    ck_assert_uint_ge(d.n, 1);
    const nmc_diag_t *hit = NULL;
    for (size_t i = 0; i < d.n; i++) {
        if (strcmp(d.items[i].code, code) == 0) hit = &d.items[i];
        else ck_assert_msg(strncmp(d.items[i].code, "json-", 5) == 0, "unexpected code %s (%s)",
                           d.items[i].code, d.items[i].message);
    }
    ck_assert_msg(hit != NULL, "no %s; first: %s: %s", code, d.items[0].code, d.items[0].message);
    ck_assert_ptr_nonnull(hit->file);
    if (msg) ck_assert_str_eq(hit->message, msg);
    nmc_diags_free(&d);
}

/* ---- header length ------------------------------------------------------------------- */
START_TEST(short_file)
{
    const char *p = tpath("short.safetensors");
    write_text("short.safetensors", "abc");
    expect_fail(p, "st-header-too-small", "file is 3 bytes, shorter than the 8-byte header length");
}
END_TEST

START_TEST(header_too_large)
{
    const char *p = write_raw_n("big.safetensors", 100000001ull, "{}", 2, 0);
    expect_fail(p, "st-header-too-large",
                "header length 100000001 exceeds the limit of 100000000 bytes");
    p = write_raw_n("huge.safetensors", UINT64_MAX, "{}", 2, 0);
    expect_fail(p, "st-header-too-large", NULL);
}
END_TEST

START_TEST(header_past_eof)
{
    const char *p = write_raw_n("trunc.safetensors", 64, "{}", 2, 0);
    expect_fail(p, "st-header-length", "header length 64 runs past the end of the 10-byte file");
}
END_TEST

START_TEST(header_bad_json)
{
    expect_fail(write_raw("j1.safetensors", "{\"a\":", 0), "st-header-json", NULL);
    expect_fail(write_raw("j2.safetensors", "[1,2]", 0), "st-header-json",
                "the safetensors header is a JSON array, not an object");
    expect_fail(write_raw("j3.safetensors", "{\"a\":{},}", 0), "st-header-json", NULL);
}
END_TEST

START_TEST(duplicate_names)
{
    const char *h = "{\"a\":{\"dtype\":\"U8\",\"shape\":[1],\"data_offsets\":[0,1]},"
                    "\"a\":{\"dtype\":\"U8\",\"shape\":[1],\"data_offsets\":[1,2]}}";
    const char *p = write_raw("dup.safetensors", h, 2);
    expect_fail(p, "st-header-json", NULL);
    /* and the JSON layer said why */
    nmc_diags_t d;
    nmc_diags_init(&d);
    nmc_st_t *st;
    ck_assert_int_eq(nmc_st_open(p, &st, &d), -1);
    ck_assert_str_eq(d.items[0].code, "json-duplicate-key");
    nmc_diags_free(&d);
}
END_TEST

/* ---- entries ------------------------------------------------------------------------------ */
START_TEST(entry_shapes)
{
    expect_fail(write_raw("e1.safetensors", "{\"w\":[1]}", 0), "st-entry-invalid",
                "tensor 'w': header entry is a array, not an object");
    expect_fail(write_raw("e2.safetensors", "{\"w\":{\"shape\":[1],\"data_offsets\":[0,4]}}", 4),
                "st-entry-invalid", "tensor 'w': missing \"dtype\"");
    expect_fail(write_raw("e3.safetensors",
                          "{\"w\":{\"dtype\":\"F128\",\"shape\":[1],\"data_offsets\":[0,4]}}", 4),
                "st-dtype-unknown", "tensor 'w': unknown dtype \"F128\"");
    expect_fail(write_raw("e4.safetensors",
                          "{\"w\":{\"dtype\":\"F32\",\"shape\":[-1],\"data_offsets\":[0,4]}}", 4),
                "st-shape-invalid", "tensor 'w': shape[0] is not a non-negative integer");
    expect_fail(write_raw("e5.safetensors",
                          "{\"w\":{\"dtype\":\"F32\",\"shape\":[1.5],\"data_offsets\":[0,4]}}", 4),
                "st-shape-invalid", NULL);
    expect_fail(write_raw("e6.safetensors",
                          "{\"w\":{\"dtype\":\"F32\",\"shape\":4,\"data_offsets\":[0,4]}}", 4),
                "st-shape-invalid", "tensor 'w': shape must be an array");
    expect_fail(write_raw("e7.safetensors",
                          "{\"w\":{\"dtype\":\"F32\",\"shape\":[1,1,1,1,1,1,1,1,1],"
                          "\"data_offsets\":[0,4]}}", 4),
                "st-shape-invalid", "tensor 'w': shape has more than 8 dims");
}
END_TEST

START_TEST(shape_overflow)
{
    expect_fail(write_raw("o.safetensors",
                          "{\"w\":{\"dtype\":\"F32\",\"shape\":[4294967296,4294967296],"
                          "\"data_offsets\":[0,4]}}", 4),
                "st-shape-overflow", "tensor 'w': the element count of the shape overflows 64 bits");
}
END_TEST

START_TEST(offsets_malformed)
{
    expect_fail(write_raw("f1.safetensors",
                          "{\"w\":{\"dtype\":\"F32\",\"shape\":[1],\"data_offsets\":[0,4,8]}}", 4),
                "st-offsets-invalid", "tensor 'w': data_offsets is not a pair of non-negative integers");
    expect_fail(write_raw("f2.safetensors",
                          "{\"w\":{\"dtype\":\"F32\",\"shape\":[1],\"data_offsets\":[4,0]}}", 4),
                "st-offsets-invalid", "tensor 'w': data_offsets end 0 is before begin 4");
    expect_fail(write_raw("f3.safetensors", "{\"w\":{\"dtype\":\"F32\",\"shape\":[1]}}", 4),
                "st-offsets-invalid", "tensor 'w': missing \"data_offsets\"");
}
END_TEST

START_TEST(offsets_out_of_range)
{
    expect_fail(write_raw("r.safetensors",
                          "{\"w\":{\"dtype\":\"F32\",\"shape\":[2],\"data_offsets\":[0,8]}}", 4),
                "st-offsets-out-of-range",
                "tensor 'w': data_offsets [0, 8] run past the end of the 4-byte data buffer");
}
END_TEST

START_TEST(offsets_overlap)
{
    expect_fail(write_raw("ov.safetensors",
                          "{\"a\":{\"dtype\":\"F32\",\"shape\":[2],\"data_offsets\":[0,8]},"
                          "\"b\":{\"dtype\":\"F32\",\"shape\":[2],\"data_offsets\":[4,12]}}", 12),
                "st-offsets-overlap",
                "tensor 'b': data_offsets [4, 12] overlap tensor 'a', which ends at 8");
}
END_TEST

START_TEST(offsets_gap)
{
    /* a gap between tensors, and a gap before the first one */
    expect_fail(write_raw("g1.safetensors",
                          "{\"a\":{\"dtype\":\"F32\",\"shape\":[1],\"data_offsets\":[0,4]},"
                          "\"b\":{\"dtype\":\"F32\",\"shape\":[1],\"data_offsets\":[8,12]}}", 12),
                "st-offsets-gap",
                "tensor 'b': data_offsets begin at 8, leaving bytes [4, 8) outside every tensor");
    expect_fail(write_raw("g2.safetensors",
                          "{\"a\":{\"dtype\":\"F32\",\"shape\":[1],\"data_offsets\":[4,8]}}", 8),
                "st-offsets-gap", NULL);
}
END_TEST

START_TEST(size_mismatch)
{
    expect_fail(write_raw("s.safetensors",
                          "{\"a\":{\"dtype\":\"BF16\",\"shape\":[3],\"data_offsets\":[0,8]}}", 8),
                "st-size-mismatch",
                "tensor 'a': data_offsets span 8 bytes but dtype BF16 and its shape need 6");
}
END_TEST

START_TEST(incomplete_buffer)
{
    expect_fail(write_raw("ib.safetensors",
                          "{\"a\":{\"dtype\":\"F32\",\"shape\":[1],\"data_offsets\":[0,4]}}", 6),
                "st-incomplete-buffer",
                "the tensors cover 4 of the 6 bytes after the header; the last 2 bytes belong to "
                "no tensor");
}
END_TEST

START_TEST(metadata_invalid)
{
    expect_fail(write_raw("m.safetensors", "{\"__metadata__\":{\"format\":1}}", 0),
                "st-metadata-invalid", "__metadata__ must map strings to strings");
}
END_TEST

START_TEST(error_names_file_and_path)
{
    const char *p = write_raw("named.safetensors",
                              "{\"model.layers.0.w\":{\"dtype\":\"F32\",\"shape\":[2],"
                              "\"data_offsets\":[0,4]}}", 4);
    nmc_diags_t d;
    nmc_diags_init(&d);
    nmc_st_t *st;
    ck_assert_int_eq(nmc_st_open(p, &st, &d), -1);
    ck_assert_str_eq(d.items[0].code, "st-size-mismatch");
    ck_assert_str_eq(d.items[0].file, p);
    ck_assert_str_eq(d.items[0].path, "[\"model.layers.0.w\"].data_offsets");
    ck_assert_str_eq(d.items[0].expected, "8 bytes");
    ck_assert_str_eq(d.items[0].got, "4 bytes");
    nmc_diags_free(&d);
}
END_TEST

/* A valid hand-written file: empty tensors, scalars, unknown-to-training dtypes. */
START_TEST(valid_edge_cases)
{
    const char *h = "{\"__metadata__\":{\"format\":\"pt\"},"
                    "\"e\":{\"dtype\":\"F32\",\"shape\":[0,3],\"data_offsets\":[0,0]},"
                    "\"s\":{\"dtype\":\"I64\",\"shape\":[],\"data_offsets\":[0,8]},"
                    "\"q\":{\"dtype\":\"F8_E4M3\",\"shape\":[2],\"data_offsets\":[8,10]}}";
    const char *p = write_raw("edge.safetensors", h, 10);
    nmc_diags_t d;
    nmc_diags_init(&d);
    nmc_st_t *st;
    ck_assert_int_eq(nmc_st_open(p, &st, &d), 0);
    ck_assert_uint_eq(nmc_st_count(st), 3);
    ck_assert_str_eq(nmc_st_at(st, 0)->name, "e"); /* sorted by name */
    ck_assert_str_eq(nmc_st_metadata(st, "format"), "pt");
    ck_assert_ptr_null(nmc_st_metadata(st, "nope"));
    const nmc_st_tensor_t *s = nmc_st_find(st, "s");
    ck_assert_int_eq(s->ndim, 0);
    ck_assert_int_eq(s->numel, 1);
    ck_assert_int_eq(nmc_st_find(st, "e")->numel, 0);
    float out[2];
    ck_assert_int_eq(nmc_st_to_f32(nmc_st_find(st, "q"), out, &d), -1);
    ck_assert_str_eq(d.items[0].code, "st-dtype-unsupported");
    ck_assert_str_eq(d.items[0].message, "tensor 'q' has dtype F8_E4M3, which nmc cannot train with");
    ck_assert_ptr_null(nmc_st_get(st, "missing", &d));
    ck_assert_str_eq(d.items[1].code, "st-tensor-not-found");
    nmc_st_close(st);
    nmc_diags_free(&d);
}
END_TEST

/* ---- conversions ---------------------------------------------------------------------- */
START_TEST(half_conversions)
{
    ck_assert_float_eq(nmc_st_f16_to_f32(0x3c00), 1.0f);
    ck_assert_float_eq(nmc_st_f16_to_f32(0xc000), -2.0f);
    ck_assert_float_eq(nmc_st_f16_to_f32(0x7bff), 65504.0f);
    ck_assert_float_eq(nmc_st_f16_to_f32(0x0001), 5.9604644775390625e-08f);
    ck_assert_float_eq(nmc_st_f16_to_f32(0x0400), 6.103515625e-05f);
    ck_assert(isinf(nmc_st_f16_to_f32(0x7c00)));
    ck_assert(isnan(nmc_st_f16_to_f32(0x7e00)));
    ck_assert_float_eq(nmc_st_bf16_to_f32(0x3f80), 1.0f);
    ck_assert_float_eq(nmc_st_bf16_to_f32(0xc040), -3.0f);
    ck_assert_uint_eq(nmc_st_f32_to_bf16(1.0f), 0x3f80);
    ck_assert_uint_eq(nmc_st_f32_to_bf16(1.00390625f), 0x3f80);  /* tie -> even */
    ck_assert_uint_eq(nmc_st_f32_to_bf16(1.01171875f), 0x3f82);  /* tie -> even (up) */
    ck_assert_uint_eq(nmc_st_f32_to_f16(1.0f), 0x3c00);
    ck_assert_uint_eq(nmc_st_f32_to_f16(65504.0f), 0x7bff);
    ck_assert_uint_eq(nmc_st_f32_to_f16(70000.0f), 0x7c00);
    ck_assert_uint_eq(nmc_st_f32_to_f16(5.9604644775390625e-08f), 0x0001);
    ck_assert_uint_eq(nmc_st_f32_to_f16(-0.0f), 0x8000);
    for (uint32_t h = 0; h < 0x7c00; h++) /* every finite positive half round-trips */
        ck_assert_uint_eq(nmc_st_f32_to_f16(nmc_st_f16_to_f32((uint16_t)h)), h);
}
END_TEST

/* ---- writer --------------------------------------------------------------------------- */
static const char *write_sample(void)
{
    static float w[6] = {1, -2, 3.5f, 0.25f, -0.125f, 1e-3f};
    static uint16_t b[3], h[2];
    b[0] = nmc_st_f32_to_bf16(1.5f), b[1] = nmc_st_f32_to_bf16(-4.0f), b[2] = nmc_st_f32_to_bf16(0.0f);
    h[0] = nmc_st_f32_to_f16(0.5f), h[1] = nmc_st_f32_to_f16(-1.0f);
    nmc_st_write_tensor_t t[3] = {
        {.name = "z.bf16", .dtype = NMC_ST_BF16, .ndim = 1, .shape = {3}, .data = b},
        {.name = "a.f32", .dtype = NMC_ST_F32, .ndim = 2, .shape = {2, 3}, .data = w},
        {.name = "m.f16", .dtype = NMC_ST_F16, .ndim = 1, .shape = {2}, .data = h},
    };
    nmc_st_kv_t meta[2] = {{"format", "pt"}, {"author", "nmc \"test\""}};
    const char *p = tpath("written.safetensors");
    nmc_diags_t d;
    nmc_diags_init(&d);
    ck_assert_int_eq(nmc_st_write(p, t, 3, meta, 2, &d), 0);
    ck_assert_uint_eq(d.n, 0);
    nmc_diags_free(&d);
    return p;
}

START_TEST(write_layout)
{
    const char *p = write_sample();
    FILE *f = fopen(p, "rb");
    unsigned char len8[8];
    ck_assert_uint_eq(fread(len8, 1, 8, f), 8);
    uint64_t n = 0;
    for (int i = 7; i >= 0; i--) n = (n << 8) | len8[i];
    ck_assert_uint_eq(n % 8, 0);
    char *hdr = calloc(1, n + 1);
    ck_assert_uint_eq(fread(hdr, 1, n, f), n);
    fclose(f);
    const char *want =
        "{\"__metadata__\":{\"author\":\"nmc \\\"test\\\"\",\"format\":\"pt\"},"
        "\"a.f32\":{\"dtype\":\"F32\",\"shape\":[2,3],\"data_offsets\":[0,24]},"
        "\"m.f16\":{\"dtype\":\"F16\",\"shape\":[2],\"data_offsets\":[24,28]},"
        "\"z.bf16\":{\"dtype\":\"BF16\",\"shape\":[3],\"data_offsets\":[28,34]}}";
    ck_assert_uint_eq(strncmp(hdr, want, strlen(want)), 0);
    for (size_t i = strlen(want); i < n; i++) ck_assert_int_eq(hdr[i], ' ');
    ck_assert_uint_lt(n - strlen(want), 8);
    free(hdr);
    /* no temp file left behind */
    char cmd[600];
    snprintf(cmd, sizeof cmd, "test -z \"$(ls '%s' | grep tmp)\"", tmpdir);
    ck_assert_int_eq(system(cmd), 0);
}
END_TEST

START_TEST(write_read_back)
{
    const char *p = write_sample();
    nmc_diags_t d;
    nmc_diags_init(&d);
    nmc_st_t *st;
    ck_assert_int_eq(nmc_st_open(p, &st, &d), 0);
    ck_assert_uint_eq(nmc_st_count(st), 3);
    ck_assert_str_eq(nmc_st_metadata(st, "author"), "nmc \"test\"");
    float out[6];
    const nmc_st_tensor_t *a = nmc_st_get(st, "a.f32", &d);
    ck_assert_int_eq(a->ndim, 2);
    ck_assert_int_eq(a->shape[1], 3);
    ck_assert_int_eq(nmc_st_to_f32(a, out, &d), 0);
    ck_assert_float_eq(out[2], 3.5f);
    ck_assert_float_eq(out[5], 1e-3f);
    ck_assert_int_eq(nmc_st_to_f32(nmc_st_find(st, "z.bf16"), out, &d), 0);
    ck_assert_float_eq(out[0], 1.5f);
    ck_assert_float_eq(out[1], -4.0f);
    ck_assert_int_eq(nmc_st_to_f32(nmc_st_find(st, "m.f16"), out, &d), 0);
    ck_assert_float_eq(out[0], 0.5f);
    ck_assert_float_eq(out[1], -1.0f);
    ck_assert_uint_eq(d.n, 0);
    nmc_st_close(st);
    nmc_diags_free(&d);
}
END_TEST

START_TEST(write_python_reads)
{
    if (system("python3 -c 'import safetensors.numpy' >/dev/null 2>&1") != 0) {
        fprintf(stderr, "test_safetensors: python3 safetensors not available, skipping\n");
        return;
    }
    const char *p = write_sample();
    char cmd[1024];
    /* The reference reader validates the whole header on open; bf16 needs torch. */
    snprintf(cmd, sizeof cmd,
             "python3 -c \"from safetensors import safe_open; f = safe_open('%s', 'np'); "
             "assert f.get_tensor('a.f32').tolist() == [[1, -2, 3.5], [0.25, -0.125, %.17g]]; "
             "assert f.get_tensor('m.f16').tolist() == [0.5, -1.0]; "
             "assert sorted(f.keys()) == ['a.f32', 'm.f16', 'z.bf16'], f.keys(); "
             "assert f.metadata() == {'format': 'pt', 'author': 'nmc ' + chr(34) + 'test' + chr(34)}, "
             "f.metadata()\"",
             p, (double)1e-3f);
    ck_assert_int_eq(system(cmd), 0);
    if (system("python3 -c 'import torch' >/dev/null 2>&1") != 0) return;
    snprintf(cmd, sizeof cmd,
             "python3 -c \"from safetensors.torch import load_file; t = load_file('%s'); "
             "assert t['z.bf16'].float().tolist() == [1.5, -4.0, 0.0], t\"", p);
    ck_assert_int_eq(system(cmd), 0);
}
END_TEST

START_TEST(write_rejects_bad_input)
{
    float x = 1;
    nmc_st_write_tensor_t t[2] = {
        {.name = "a", .dtype = NMC_ST_F32, .ndim = 1, .shape = {1}, .data = &x},
        {.name = "a", .dtype = NMC_ST_F32, .ndim = 1, .shape = {1}, .data = &x},
    };
    nmc_diags_t d;
    nmc_diags_init(&d);
    ck_assert_int_eq(nmc_st_write(tpath("bad.safetensors"), t, 2, NULL, 0, &d), -1);
    ck_assert_str_eq(d.items[0].code, "st-write-invalid");
    ck_assert_int_ne(access(tpath("bad.safetensors"), F_OK), 0);
    t[1].name = "__metadata__";
    ck_assert_int_eq(nmc_st_write(tpath("bad.safetensors"), t, 2, NULL, 0, &d), -1);
    ck_assert_str_eq(d.items[1].code, "st-write-invalid");
    nmc_diags_free(&d);
}
END_TEST

/* ---- sharded -------------------------------------------------------------------------- */
static void write_shards(void)
{
    float a[2] = {1, 2}, b[3] = {3, 4, 5};
    nmc_st_write_tensor_t ta = {.name = "a", .dtype = NMC_ST_F32, .ndim = 1, .shape = {2}, .data = a};
    nmc_st_write_tensor_t tb = {.name = "b", .dtype = NMC_ST_F32, .ndim = 1, .shape = {3}, .data = b};
    nmc_diags_t d;
    nmc_diags_init(&d);
    ck_assert_int_eq(nmc_st_write(tpath("s-1.safetensors"), &ta, 1, NULL, 0, &d), 0);
    ck_assert_int_eq(nmc_st_write(tpath("s-2.safetensors"), &tb, 1, NULL, 0, &d), 0);
    nmc_diags_free(&d);
}

START_TEST(sharded_ok)
{
    write_shards();
    write_text("model.safetensors.index.json",
               "{\"metadata\":{\"total_size\":20},\"weight_map\":{\"a\":\"s-1.safetensors\","
               "\"b\":\"s-2.safetensors\"}}");
    nmc_diags_t d;
    nmc_diags_init(&d);
    nmc_st_t *st;
    ck_assert_int_eq(nmc_st_open(tmpdir, &st, &d), 0); /* directory: index preferred */
    ck_assert_uint_eq(nmc_st_file_count(st), 2);
    ck_assert_uint_eq(nmc_st_count(st), 2);
    float out[3];
    ck_assert_int_eq(nmc_st_to_f32(nmc_st_find(st, "b"), out, &d), 0);
    ck_assert_float_eq(out[2], 5.0f);
    ck_assert(strstr(nmc_st_find(st, "b")->file, "s-2.safetensors") != NULL);
    nmc_st_close(st);
    nmc_diags_free(&d);
}
END_TEST

START_TEST(sharded_errors)
{
    write_shards();
    write_text("i1.index.json", "{\"weight_map\":{\"a\":\"s-1.safetensors\","
                                "\"b\":\"s-3.safetensors\"}}");
    expect_fail(tpath("i1.index.json"), "st-shard-missing",
                "shard s-3.safetensors named by weight_map does not exist");
    write_text("i2.index.json", "{\"weight_map\":{\"a\":\"s-1.safetensors\","
                                "\"b\":\"s-2.safetensors\",\"c\":\"s-2.safetensors\"}}");
    expect_fail(tpath("i2.index.json"), "st-index-tensor-missing",
                "tensor 'c': weight_map puts it in s-2.safetensors, which does not contain it");
    write_raw("s-5.safetensors", "{\"x\":{\"dtype\":\"U8\",\"shape\":[1],\"data_offsets\":[0,1]},"
                                 "\"y\":{\"dtype\":\"U8\",\"shape\":[1],\"data_offsets\":[1,2]}}", 2);
    write_text("i3.index.json", "{\"weight_map\":{\"x\":\"s-5.safetensors\"}}");
    expect_fail(tpath("i3.index.json"), "st-index-tensor-unlisted",
                "tensor 'y': present in this shard but weight_map does not list it");
    /* s-2 is named only through another tensor: b present but assigned elsewhere */
    write_text("i4.index.json", "{\"weight_map\":{\"a\":\"s-1.safetensors\","
                                "\"b\":\"s-1.safetensors\"}}");
    expect_fail(tpath("i4.index.json"), "st-index-tensor-missing", NULL);
    write_text("i5.index.json", "{\"weight_map\":{\"a\":\"../s-1.safetensors\"}}");
    expect_fail(tpath("i5.index.json"), "st-index-invalid", NULL);
    write_text("i6.index.json", "{\"metadata\":{}}");
    expect_fail(tpath("i6.index.json"), "st-index-invalid", "the index has no usable \"weight_map\"");
    /* a broken shard reports the shard's own file */
    write_raw("s-4.safetensors", "{\"x\":{\"dtype\":\"F32\",\"shape\":[1],\"data_offsets\":[0,4]}}", 2);
    write_text("i7.index.json", "{\"weight_map\":{\"x\":\"s-4.safetensors\"}}");
    expect_fail(tpath("i7.index.json"), "st-offsets-out-of-range", NULL);
}
END_TEST

START_TEST(no_checkpoint)
{
    expect_fail(tmpdir, "st-no-checkpoint", "no safetensors checkpoint in this directory");
    nmc_diags_t d;
    nmc_diags_init(&d);
    nmc_st_t *st;
    ck_assert_int_eq(nmc_st_open(tpath("absent.safetensors"), &st, &d), -1);
    ck_assert_str_eq(d.items[0].code, "io-error");
    nmc_diags_free(&d);
}
END_TEST

/* ---- committed fixtures ------------------------------------------------------------------ */
START_TEST(fixtures)
{
    nmc_diags_t d;
    nmc_diags_init(&d);
    nmc_st_t *llama, *qwen, *sharded;
    ck_assert_int_eq(nmc_st_open(FIXTURES "/tiny-llama", &llama, &d), 0);
    ck_assert_uint_eq(nmc_st_count(llama), 21); /* embed + 2 x 9 + norm + lm_head */
    const nmc_st_tensor_t *k = nmc_st_find(llama, "model.layers.1.self_attn.k_proj.weight");
    ck_assert_int_eq(k->dtype, NMC_ST_BF16);
    ck_assert_int_eq(k->shape[0], 32);
    ck_assert_int_eq(k->shape[1], 64);
    ck_assert_str_eq(nmc_st_metadata(llama, "format"), "pt");
    ck_assert_int_eq(nmc_st_open(FIXTURES "/tiny-qwen3", &qwen, &d), 0);
    ck_assert_int_eq(nmc_st_open(FIXTURES "/tiny-qwen3-sharded", &sharded, &d), 0);
    ck_assert_uint_ge(nmc_st_file_count(sharded), 2);
    ck_assert_uint_eq(nmc_st_count(qwen), 24); /* tied: no lm_head */
    ck_assert_uint_eq(nmc_st_count(sharded), nmc_st_count(qwen));
    for (size_t i = 0; i < nmc_st_count(qwen); i++) { /* same weights, byte for byte */
        const nmc_st_tensor_t *x = nmc_st_at(qwen, i), *y = nmc_st_at(sharded, i);
        ck_assert_str_eq(x->name, y->name);
        ck_assert_uint_eq(x->nbytes, y->nbytes);
        ck_assert_int_eq(memcmp(x->data, y->data, x->nbytes), 0);
    }
    float *buf = malloc(2048 * 64 * sizeof(float));
    ck_assert_int_eq(nmc_st_to_f32(nmc_st_find(qwen, "model.embed_tokens.weight"), buf, &d), 0);
    double sum = 0;
    for (int i = 0; i < 2048 * 64; i++) sum += buf[i] * buf[i];
    ck_assert(sum > 0); /* random init, not zeros */
    free(buf);
    ck_assert_uint_eq(d.n, 0);
    nmc_st_close(llama);
    nmc_st_close(qwen);
    nmc_st_close(sharded);
    nmc_diags_free(&d);
}
END_TEST

static Suite *suite(void)
{
    Suite *s = suite_create("safetensors");
    TCase *tc = tcase_create("core");
    tcase_add_checked_fixture(tc, setup, teardown);
    tcase_set_timeout(tc, 60);
    tcase_add_test(tc, short_file);
    tcase_add_test(tc, header_too_large);
    tcase_add_test(tc, header_past_eof);
    tcase_add_test(tc, header_bad_json);
    tcase_add_test(tc, duplicate_names);
    tcase_add_test(tc, entry_shapes);
    tcase_add_test(tc, shape_overflow);
    tcase_add_test(tc, offsets_malformed);
    tcase_add_test(tc, offsets_out_of_range);
    tcase_add_test(tc, offsets_overlap);
    tcase_add_test(tc, offsets_gap);
    tcase_add_test(tc, size_mismatch);
    tcase_add_test(tc, incomplete_buffer);
    tcase_add_test(tc, metadata_invalid);
    tcase_add_test(tc, error_names_file_and_path);
    tcase_add_test(tc, valid_edge_cases);
    tcase_add_test(tc, half_conversions);
    tcase_add_test(tc, write_layout);
    tcase_add_test(tc, write_read_back);
    tcase_add_test(tc, write_python_reads);
    tcase_add_test(tc, write_rejects_bad_input);
    tcase_add_test(tc, sharded_ok);
    tcase_add_test(tc, sharded_errors);
    tcase_add_test(tc, no_checkpoint);
    tcase_add_test(tc, fixtures);
    suite_add_tcase(s, tc);
    return s;
}

int main(void)
{
    SRunner *r = srunner_create(suite());
    srunner_run_all(r, CK_NORMAL);
    int failed = srunner_ntests_failed(r);
    srunner_free(r);
    return failed ? 1 : 0;
}
