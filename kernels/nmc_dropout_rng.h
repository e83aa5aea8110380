/* nmc_dropout_rng.h — the counter-based RNG behind dropout masks, shared by the CPU
 * (kernels/dropout.c) and CUDA (kernels/dropout.cu) paths so both draw the SAME mask.
 *
 * Element i of a mask drawn with (seed, offset) uses counter c = offset + i:
 *   u = (splitmix64(seed ^ splitmix64(c)) >> 40) * 2^-24     (24-bit uniform in [0, 1))
 *   keep = u >= p;  mask = keep ? 1.0f / (1.0f - p) : 0.0f   (p in (0, 1))
 * p <= 0 keeps everything (mask 1), p >= 1 drops everything (mask 0), as torch does.
 * A training step advances `offset` by the number of elements it drew, so masks never
 * repeat within a run. Pure integer math: bit-identical on any compiler and device.
 */
#ifndef NMC_DROPOUT_RNG_H
#define NMC_DROPOUT_RNG_H
#include <stdint.h>

#ifdef __CUDACC__
#define NMC_HOST_DEVICE __host__ __device__
#else
#define NMC_HOST_DEVICE
#endif

/* Steele, Lea & Flood's SplitMix64 finalizer (public domain constants). */
NMC_HOST_DEVICE static inline uint64_t nmc_splitmix64(uint64_t z)
{
    z += 0x9E3779B97F4A7C15ull;
    z = (z ^ (z >> 30)) * 0xBF58476D1CE4E5B9ull;
    z = (z ^ (z >> 27)) * 0x94D049BB133111EBull;
    return z ^ (z >> 31);
}

/* The uniform draw for counter c (exactly representable: a multiple of 2^-24 below 1). */
NMC_HOST_DEVICE static inline float nmc_dropout_uniform(uint64_t seed, uint64_t c)
{
    return (float)(nmc_splitmix64(seed ^ nmc_splitmix64(c)) >> 40) * (1.0f / 16777216.0f);
}
#endif
