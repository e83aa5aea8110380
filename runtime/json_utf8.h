/* json_utf8.h — UTF-8 units shared by the JSON layer and the diagnostic renderer.
 *
 * A "unit" is one valid UTF-8 sequence, or one broken sequence: an invalid lead byte plus
 * the continuation bytes right after it (at most 3). The parser reports one error per broken
 * unit, and columns count units, so a caret lands under the byte the message names even in
 * a file that is not UTF-8. Private to runtime/json*.c and runtime/diag.c.
 */
#ifndef NMC_JSON_UTF8_H
#define NMC_JSON_UTF8_H
#include <stddef.h>
#include <stdint.h>

/* Encode cp (<= 0x10FFFF) into out; returns 1-4. */
size_t nmc_utf8_encode(uint32_t cp, char out[4]);

static inline int nmc_utf8_is_cont(unsigned char b) { return (b & 0xC0) == 0x80; }

/* Bytes in a broken unit: the bad byte and the continuation bytes that follow it. */
static inline size_t nmc_utf8_broken(const unsigned char *s, size_t n, int32_t *cp,
                                     const char **why, const char *what)
{
    size_t k = 1;
    while (k < n && k < 4 && nmc_utf8_is_cont(s[k])) k++;
    *cp = -1;
    if (why) *why = what;
    return k;
}

/* Length in bytes (>= 1) of the unit at s[0..n), n >= 1. *cp gets the code point, or -1
 * when the unit is not valid UTF-8 (then *why, if not NULL, names the defect). Validity
 * follows RFC 3629: no overlong forms, no encoded surrogates, nothing above U+10FFFF. */
static inline size_t nmc_utf8_unit(const unsigned char *s, size_t n, int32_t *cp, const char **why)
{
    unsigned char b = s[0];
    if (b < 0x80) {
        *cp = b;
        return 1;
    }
    if (nmc_utf8_is_cont(b)) return nmc_utf8_broken(s, n, cp, why, "unexpected continuation byte");
    if (b < 0xC2) return nmc_utf8_broken(s, n, cp, why, "overlong encoding");
    if (b > 0xF4) return nmc_utf8_broken(s, n, cp, why, "byte that never appears in UTF-8");
    size_t need = b < 0xE0 ? 1 : b < 0xF0 ? 2 : 3;
    uint32_t v = b & (need == 1 ? 0x1F : need == 2 ? 0x0F : 0x07);
    for (size_t i = 1; i <= need; i++) {
        if (i >= n || !nmc_utf8_is_cont(s[i])) return nmc_utf8_broken(s, n, cp, why, "truncated sequence");
        v = (v << 6) | (s[i] & 0x3F);
    }
    static const uint32_t min_cp[4] = {0, 0x80, 0x800, 0x10000};
    if (v < min_cp[need]) return nmc_utf8_broken(s, n, cp, why, "overlong encoding");
    if (v >= 0xD800 && v <= 0xDFFF) return nmc_utf8_broken(s, n, cp, why, "encoded surrogate");
    if (v > 0x10FFFF) return nmc_utf8_broken(s, n, cp, why, "code point above U+10FFFF");
    *cp = (int32_t)v;
    return need + 1;
}

#endif
