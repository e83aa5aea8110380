/* bf16.c — fp32 <-> bf16 conversion, CPU (bit-exact with torch / c10::BFloat16).
 *
 * Belongs here: nmc_f32_to_bf16, nmc_bf16_to_f32.
 * f32 -> bf16 rounds to nearest, ties to even, on the bit pattern (c10's
 * round_to_nearest_even); infinities and signed zeros are kept; values that round past the
 * largest finite bf16 become inf. Every NaN becomes the quiet NaN 0x7FC0, as c10's scalar
 * path does; torch's AVX-512 tensor path writes 0xFFFF and CUDA's __float2bfloat16 0x7FFF,
 * so NaN bit patterns are not portable and only NaN-ness is compared. bf16 -> f32 is exact.
 * Test tolerance: exact bit patterns vs torch (NaN: any NaN on torch's side, 0x7FC0 here).
 */
#include "nmc_kernels.h"

#include <string.h>

void nmc_f32_to_bf16(nmc_bf16 *dst, const float *src, size_t n)
{
    for (size_t i = 0; i < n; i++) {
        uint32_t u;
        memcpy(&u, &src[i], sizeof u);
        if ((u & 0x7FFFFFFFu) > 0x7F800000u) {
            dst[i] = 0x7FC0;
            continue;
        }
        uint32_t bias = ((u >> 16) & 1u) + 0x7FFFu;
        dst[i] = (nmc_bf16)((u + bias) >> 16);
    }
}

void nmc_bf16_to_f32(float *dst, const nmc_bf16 *src, size_t n)
{
    for (size_t i = 0; i < n; i++) {
        uint32_t u = (uint32_t)src[i] << 16;
        memcpy(&dst[i], &u, sizeof u);
    }
}
