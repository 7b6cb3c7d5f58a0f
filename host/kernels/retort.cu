// Retort's own CUDA kernels: what the CPU path fuses (softmax-KL and softmax-CE rows, forward and
// backward), the optimizer updates, and device-side dropout masks. Built by host/build.rs with
// nvcc into one fatbin (SASS for the build's compute capability plus PTX for newer GPUs). Every
// kernel mirrors a CPU function in the host; the GPU tests compare them.
#include <stdint.h>

#define WARP 32
#define ROWS_PER_BLOCK 4 // four warps, one row each

__device__ __forceinline__ float warp_max(float v) {
    for (int o = WARP / 2; o > 0; o /= 2) v = fmaxf(v, __shfl_xor_sync(0xffffffffu, v, o));
    return v;
}

__device__ __forceinline__ float warp_sum(float v) {
    for (int o = WARP / 2; o > 0; o /= 2) v += __shfl_xor_sync(0xffffffffu, v, o);
    return v;
}

// logsumexp(x * it) of one row, the warp cooperating; NaN for a row without a finite entry
// (as the CPU's logsumexp_row).
__device__ float row_lse(const float *x, int64_t c, float it) {
    int lane = threadIdx.x % WARP;
    float m = -INFINITY;
    for (int64_t j = lane; j < c; j += WARP) m = fmaxf(m, x[j]);
    m = warp_max(m) * it;
    if (m == -INFINITY) return NAN;
    float s = 0.f;
    for (int64_t j = lane; j < c; j += WARP) s += expf(x[j] * it - m);
    return m + logf(warp_sum(s));
}

// The warp's row index, or -1 past the last row.
__device__ __forceinline__ int64_t warp_row(int64_t n) {
    int64_t r = (int64_t)blockIdx.x * ROWS_PER_BLOCK + threadIdx.x / WARP;
    return r < n ? r : -1;
}

// Per-row KL(softmax(p*it) || softmax(q*it)) with 0*log 0 = 0: p, q [n, c] -> out [n].
extern "C" __global__ void retort_kl_rows_f32(const float *p, const float *q, float *out, int64_t n,
                                              int64_t c, float it) {
    int64_t r = warp_row(n);
    if (r < 0) return;
    const float *pr = p + r * c, *qr = q + r * c;
    float lsp = row_lse(pr, c, it), lsq = row_lse(qr, c, it);
    float acc = 0.f;
    for (int64_t j = threadIdx.x % WARP; j < c; j += WARP) {
        float a = pr[j] * it - lsp, b = qr[j] * it - lsq;
        if (a != -INFINITY) acc += expf(a) * (a - b);
    }
    acc = warp_sum(acc);
    if (threadIdx.x % WARP == 0) out[r] = acc;
}

// The gradient of retort_kl_rows_f32 with respect to q (wrt_p = 0):
// g*it*(softmax(q*it) - softmax(p*it)); or p (wrt_p = 1): g*it*p_j*(log p_j - log q_j - KL).
extern "C" __global__ void retort_kl_rows_grad_f32(const float *p, const float *q, const float *g,
                                                   float *out, int64_t n, int64_t c, float it,
                                                   int wrt_p) {
    int64_t r = warp_row(n);
    if (r < 0) return;
    const float *pr = p + r * c, *qr = q + r * c;
    float *o = out + r * c;
    float lsp = row_lse(pr, c, it), lsq = row_lse(qr, c, it);
    float gr = g[r] * it;
    int lane = threadIdx.x % WARP;
    if (!wrt_p) {
        for (int64_t j = lane; j < c; j += WARP)
            o[j] = gr * (expf(qr[j] * it - lsq) - expf(pr[j] * it - lsp));
        return;
    }
    float kl = 0.f;
    for (int64_t j = lane; j < c; j += WARP) {
        float a = pr[j] * it - lsp, b = qr[j] * it - lsq;
        if (a != -INFINITY) kl += expf(a) * (a - b);
    }
    kl = warp_sum(kl);
    for (int64_t j = lane; j < c; j += WARP) {
        float a = pr[j] * it - lsp, b = qr[j] * it - lsq;
        o[j] = a == -INFINITY ? 0.f : gr * expf(a) * (a - b - kl);
    }
}

// Per-row hard-label cross-entropy -log softmax(z)[y]: 0 for y < 0 (ignored), NaN for y >= c (the
// CPU path's "label out of range" error, caught on the device by the loss finiteness check).
extern "C" __global__ void retort_ce_rows_f32(const float *z, const int64_t *y, float *out, int64_t n,
                                              int64_t c) {
    int64_t r = warp_row(n);
    if (r < 0) return;
    int64_t k = y[r];
    if (k < 0) {
        if (threadIdx.x % WARP == 0) out[r] = 0.f;
        return;
    }
    const float *zr = z + r * c;
    float lse = row_lse(zr, c, 1.f);
    if (threadIdx.x % WARP == 0) out[r] = k < c ? lse - zr[k] : NAN;
}

// g*(softmax(z) - onehot(y)) per row; zero rows for ignored labels, NaN rows for labels >= c.
extern "C" __global__ void retort_ce_rows_grad_f32(const float *z, const int64_t *y, const float *g,
                                                   float *out, int64_t n, int64_t c) {
    int64_t r = warp_row(n);
    if (r < 0) return;
    int64_t k = y[r];
    float *o = out + r * c;
    int lane = threadIdx.x % WARP;
    if (k < 0 || k >= c) {
        float fill = k < 0 ? 0.f : NAN;
        for (int64_t j = lane; j < c; j += WARP) o[j] = fill;
        return;
    }
    const float *zr = z + r * c;
    float lse = row_lse(zr, c, 1.f), gr = g[r];
    for (int64_t j = lane; j < c; j += WARP) o[j] = gr * expf(zr[j] - lse) - (j == k ? gr : 0.f);
}

// AdamW with decoupled weight decay, in place: the CPU pass's arithmetic, element by element.
// step = lr / (1 - b1^t), c2s = sqrt(1 - b2^t), decay = 1 - lr * wd.
extern "C" __global__ void retort_adamw_f32(float *w, const float *g, float *m, float *v, int64_t n,
                                            float b1, float b2, float eps, float decay, float step,
                                            float c2s) {
    for (int64_t i = (int64_t)blockIdx.x * blockDim.x + threadIdx.x; i < n;
         i += (int64_t)blockDim.x * gridDim.x) {
        float gi = g[i];
        float mi = b1 * m[i] + (1.f - b1) * gi;
        float vi = b2 * v[i] + (1.f - b2) * gi * gi;
        m[i] = mi;
        v[i] = vi;
        w[i] = w[i] * decay - step * mi / (sqrtf(vi) / c2s + eps);
    }
}

// SGD with momentum (PyTorch's: the buffer starts as the first gradient), Nesterov and weight
// decay, in place. buf may be null when mu == 0.
extern "C" __global__ void retort_sgd_f32(float *w, const float *g, float *buf, int64_t n, float lr,
                                          float mu, float wd, int first, int nesterov) {
    for (int64_t i = (int64_t)blockIdx.x * blockDim.x + threadIdx.x; i < n;
         i += (int64_t)blockDim.x * gridDim.x) {
        float d = g[i] + wd * w[i];
        if (mu == 0.f) {
            w[i] -= lr * d;
            continue;
        }
        float b = first ? d : mu * buf[i] + d;
        buf[i] = b;
        w[i] -= lr * (nesterov ? d + mu * b : b);
    }
}

// A counter-based uniform in [0, 1): splitmix64 of (seed, index), top 24 bits.
__device__ __forceinline__ float uniform_at(uint64_t seed, uint64_t i) {
    uint64_t z = seed + (i + 1) * 0x9e3779b97f4a7c15ull;
    z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ull;
    z = (z ^ (z >> 27)) * 0x94d049bb133111ebull;
    z ^= z >> 31;
    return (float)(z >> 40) * (1.f / 16777216.f);
}

// Dropout's mask: scale where uniform < keep, else 0. The seed comes from the plugin's RNG stream,
// so masks are reproducible from the run seed without a device RNG state to checkpoint.
extern "C" __global__ void retort_dropout_mask_f32(float *out, int64_t n, float keep, float scale,
                                                   uint64_t seed) {
    for (int64_t i = (int64_t)blockIdx.x * blockDim.x + threadIdx.x; i < n;
         i += (int64_t)blockDim.x * gridDim.x)
        out[i] = uniform_at(seed, (uint64_t)i) < keep ? scale : 0.f;
}
