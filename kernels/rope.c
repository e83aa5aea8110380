/* rope.c — rotary position embedding: inverse frequencies and the CPU rotation.
 *
 * Belongs here: nmc_rope_inv_freq (shared by CPU and CUDA paths), nmc_cpu_rope_fwd/bwd.
 * x, dx [N, nh*hd] row-major, rotated in place; pos [N] (position of each token, e.g.
 * restarting at 0 for each packed document); inv_freq [hd/2].
 * HF rotate_half pairing: for i < hd/2 with angle a = (float)pos * inv_freq[i] (float
 * product, as transformers' fp32 freqs), c = cosf(a), s = sinf(a):
 *   fwd: x'[i] = x[i] c - x[i+hd/2] s;   x'[i+hd/2] = x[i+hd/2] c + x[i] s
 *   bwd: the transpose (inverse) rotation.
 * inv_freq follows transformers' _compute_default_rope_parameters / linear /
 * _compute_llama3_parameters step by step IN FLOAT32, because that is the precision the
 * torch code runs in (tensor ops with python scalars cast to float32; a/t as
 * reciprocal(t)*a, which is how torch evaluates scalar / tensor).
 * Test tolerance: inv_freq vs torch 2.4e-7 rel (~2 ulp; bit-exact with torch 2.15 here);
 * fwd/bwd vs double 1e-7 + 1e-6 rel; vs torch (positions up to 16000) 2e-7 + 1e-6 rel.
 */
#include "nmc_kernels.h"
#include "nmc_cpu_internal.h"

#include <math.h>

/* 1.0 / (base ** (arange(0, dim, 2).float() / dim)) in float32 */
static void default_inv_freq(float *inv_freq, int hd, double theta)
{
    for (int i = 0; i < hd / 2; i++) {
        float e = (float)(2 * i) / (float)hd;
        inv_freq[i] = 1.0f / powf((float)theta, e);
    }
}

static void llama3_adjust(float *inv_freq, int half, const nmc_rope_cfg_t *cfg)
{
    float factor = (float)cfg->factor, lo = (float)cfg->low_freq_factor;
    double old_ctx = cfg->original_max_position;
    float low_wavelen = (float)(old_ctx / cfg->low_freq_factor);
    float high_wavelen = (float)(old_ctx / cfg->high_freq_factor);
    float span = (float)(cfg->high_freq_factor - cfg->low_freq_factor);
    for (int i = 0; i < half; i++) {
        float f = inv_freq[i];
        float wavelen = (1.0f / f) * (float)(2.0 * M_PI);
        float g = wavelen > low_wavelen ? f / factor : f;
        float smooth = ((1.0f / wavelen) * (float)old_ctx - lo) / span;
        float smoothed = (1.0f - smooth) * g / factor + smooth * g;
        int medium = !(wavelen < high_wavelen) && !(wavelen > low_wavelen);
        inv_freq[i] = medium ? smoothed : g;
    }
}

void nmc_rope_inv_freq(float *inv_freq, int hd, const nmc_rope_cfg_t *cfg)
{
    default_inv_freq(inv_freq, hd, cfg->theta);
    if (cfg->type == NMC_ROPE_LINEAR) {
        for (int i = 0; i < hd / 2; i++) inv_freq[i] /= (float)cfg->factor;
    } else if (cfg->type == NMC_ROPE_LLAMA3) {
        llama3_adjust(inv_freq, hd / 2, cfg);
    }
}

typedef struct {
    float *x;
    const int32_t *pos;
    const float *inv_freq;
    int N, nh, hd;
    float sign; /* +1 forward, -1 backward (inverse rotation) */
} rope_job_t;

static void rope_task(void *ctx, int id, int n)
{
    const rope_job_t *j = ctx;
    int half = j->hd / 2;
    float cs[2 * 256]; /* cos/sin of one row, chunks of 256 frequencies */
    size_t lo, hi;
    nmc_cpu_range((size_t)j->N, id, n, &lo, &hi);
    for (size_t r = lo; r < hi; r++) {
        float p = (float)j->pos[r];
        for (int f0 = 0; f0 < half; f0 += 256) {
            int nf = half - f0 < 256 ? half - f0 : 256;
            for (int i = 0; i < nf; i++) {
                float a = p * j->inv_freq[f0 + i];
                cs[2 * i] = cosf(a);
                cs[2 * i + 1] = j->sign * sinf(a);
            }
            for (int h = 0; h < j->nh; h++) {
                float *x = j->x + r * (size_t)j->nh * j->hd + (size_t)h * j->hd + f0;
                for (int i = 0; i < nf; i++) {
                    float x1 = x[i], x2 = x[i + half], c = cs[2 * i], s = cs[2 * i + 1];
                    x[i] = x1 * c - x2 * s;
                    x[i + half] = x2 * c + x1 * s;
                }
            }
        }
    }
}

static void rope_apply(float *x, const int32_t *pos, const float *inv_freq, int N, int nh,
                       int hd, float sign)
{
    if (N <= 0 || nh <= 0 || hd < 2) return;
    rope_job_t j = {x, pos, inv_freq, N, nh, hd, sign};
    nmc_cpu_parallel(rope_task, &j, nmc_cpu_want((size_t)N * nh * hd, 1 << 15));
}

void nmc_cpu_rope_fwd(float *x, const int32_t *pos, const float *inv_freq, int N, int nh, int hd)
{
    rope_apply(x, pos, inv_freq, N, nh, hd, 1.0f);
}

void nmc_cpu_rope_bwd(float *dx, const int32_t *pos, const float *inv_freq, int N, int nh, int hd)
{
    rope_apply(dx, pos, inv_freq, N, nh, hd, -1.0f);
}
