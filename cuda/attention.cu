// attention.cu: attention groups and the token rows of sequence networks (genlab/kinds/attention.py
// is the reference), group-major activations.
//
// In a sequence network every block holds one row per token: row b * T + t of a group is token t of
// sample b. An attention group s of width d (geo: GEO_TOKENS T, GEO_HEADS heads) computes, for
// each sample, z = b + P + sum over in-edges of h_src W^T (each token alike; P the sinusoidal
// position encoding where GEO_POSITIONS is set, position() below), q, k, v = z Wq^T, z Wk^T,
// z Wv^T, per head softmax(q k^T / sqrt(d / heads)) v = o, and h = z + o Wo^T. Its own vector at
// bias_off[s] holds b (d), Wq, Wk, Wv, Wo (d x d each, row-major).
//
// attention_forward: one block per (group in `slots`, sample), everything of the sample in shared
//   memory (ATT_SHARED floats: the engine checks 10 T d + 2 heads T^2 fits); grid (groups, samples).
//   It keeps z, q, k, v, o and p in `cache` for the backward (kept()).
// attention_backward: the same blocks: the forward read back from `cache`, dL/dh pulled from the
//   consumers (each reads token rows: dz_d W), then back through the attention: dz = dL/dz written where the
//   group's dz lives, the gradients of b, Wq, Wk, Wv, Wo added atomically (zeroed before: optim.cu's
//   zero_ranges), and the statistics of dL/dh.
// token_weight_grad: dL/dW of an edge into an attention group, summed over every token row; one
//   thread per weight element. Task (src slot, dst slot, weight offset); grid (tasks, ceil(elements / THREADS)).
// pool_tokens / spread_tokens: the output group of a sequence network averages its token rows into
//   one row per sample (the logits), and its gradient goes back to every token divided by T.
#include "genlab.cuh"

#define G(s, f) geo[GEO_INTS * (s) + (f)]

// Token t's sinusoidal encoding at feature j of width d, in double precision as NumPy computes it
// (genlab/kinds/attention.py positions): sin(t / 10000^(2i / d)) at j = 2i, cos at j = 2i + 1.
__device__ float position(int t, int j, int d)
{
    const double angle = (double)t / pow(10000.0, (double)(j - j % 2) / (double)d);
    return (float)(j % 2 == 0 ? sin(angle) : cos(angle));
}

// z, q, k, v, p (heads x T x T, softmaxed) and o of sample b of attention group s, into `sh`
// (z, q, k, v, o: T x d each, then p).
__device__ void attend(int s, int b, const int* geo, const int* width, const int* act_off, const int* bias_off,
                       const int* in_ptr, const int* in_src, const int* in_woff, const float* params,
                       const float* act, float* sh)
{
    const int T = G(s, GEO_TOKENS), d = width[s], heads = G(s, GEO_HEADS), dh = d / heads, n = T * d;
    const float* own = params + bias_off[s];
    float *z = sh, *q = sh + n, *k = q + n, *v = k + n, *o = v + n, *p = o + n;
    const bool encoded = G(s, GEO_POSITIONS) != 0;
    for (int idx = threadIdx.x; idx < n; idx += THREADS) {
        const int t = idx / d, j = idx % d;
        float acc = encoded ? own[j] + position(t, j, d) : own[j];
        for (int e = in_ptr[s]; e < in_ptr[s + 1]; ++e) {
            const int src = in_src[e], ws = width[src];
            const float* h = act + act_off[src] + (b * T + t) * ws;
            const float* w = params + in_woff[e] + j * ws;
            for (int i = 0; i < ws; ++i) acc += h[i] * w[i];
        }
        z[idx] = acc;
    }
    __syncthreads();
    const float *wq = own + d, *wk = wq + d * d, *wv = wk + d * d;
    for (int idx = threadIdx.x; idx < n; idx += THREADS) {
        const int t = idx / d, j = idx % d;
        float a = 0.f, bb = 0.f, c = 0.f;
        for (int i = 0; i < d; ++i) {
            const float zi = z[t * d + i];
            a += zi * wq[j * d + i]; bb += zi * wk[j * d + i]; c += zi * wv[j * d + i];
        }
        q[idx] = a; k[idx] = bb; v[idx] = c;
    }
    __syncthreads();
    const float scale = rsqrtf((float)dh);
    for (int idx = threadIdx.x; idx < heads * T * T; idx += THREADS) {
        const int h = idx / (T * T), t = (idx / T) % T, u = idx % T;
        float acc = 0.f;
        for (int c = 0; c < dh; ++c) acc += q[t * d + h * dh + c] * k[u * d + h * dh + c];
        p[idx] = acc * scale;
    }
    __syncthreads();
    for (int r = threadIdx.x; r < heads * T; r += THREADS) {  // one row (head, token) a thread
        float* row = p + r * T;
        float m = row[0], total = 0.f;
        for (int u = 1; u < T; ++u) m = fmaxf(m, row[u]);
        for (int u = 0; u < T; ++u) { row[u] = expf(row[u] - m); total += row[u]; }
        for (int u = 0; u < T; ++u) row[u] /= total;
    }
    __syncthreads();
    for (int idx = threadIdx.x; idx < n; idx += THREADS) {
        const int t = idx / d, j = idx % d, h = j / dh;
        float acc = 0.f;
        for (int u = 0; u < T; ++u) acc += p[(h * T + t) * T + u] * v[u * d + j];
        o[idx] = acc;
    }
    __syncthreads();
}

// Where sample b of attention group s keeps its forward (z, q, k, v, o, p: 5 T d + heads T^2
// floats) for the backward: cache_off[s] floats a sample before it, times the samples' capacity.
__device__ __forceinline__ float* kept(float* cache, const int* cache_off, int s, int b, int capacity, int n)
{
    return cache + (long long)cache_off[s] * capacity + (long long)b * n;
}

extern "C" __global__ void attention_forward(
    const int* __restrict__ slots, const int* __restrict__ geo, const int* __restrict__ width,
    const int* __restrict__ act_off, const int* __restrict__ bias_off, const int* __restrict__ in_ptr,
    const int* __restrict__ in_src, const int* __restrict__ in_woff, const float* __restrict__ params,
    float* __restrict__ act, float* __restrict__ cache, const int* __restrict__ cache_off, int capacity)
{
    __shared__ float sh[ATT_SHARED];
    const int s = slots[blockIdx.x], b = blockIdx.y, T = G(s, GEO_TOKENS), d = width[s];
    attend(s, b, geo, width, act_off, bias_off, in_ptr, in_src, in_woff, params, act, sh);
    const int n_kept = 5 * T * d + G(s, GEO_HEADS) * T * T;
    float* out = kept(cache, cache_off, s, b, capacity, n_kept);
    for (int i = threadIdx.x; i < n_kept; i += THREADS) out[i] = sh[i];
    const float *z = sh, *o = sh + 4 * T * d, *wo = params + bias_off[s] + d + 3 * d * d;
    for (int idx = threadIdx.x; idx < T * d; idx += THREADS) {
        const int t = idx / d, j = idx % d;
        float acc = z[idx];
        for (int i = 0; i < d; ++i) acc += o[t * d + i] * wo[j * d + i];
        act[act_off[s] + (b * T + t) * d + j] = acc;
    }
}

extern "C" __global__ void attention_backward(
    const int* __restrict__ slots, const int* __restrict__ geo, const int* __restrict__ width,
    const int* __restrict__ act_off, const int* __restrict__ bias_off, const int* __restrict__ out_ptr,
    const int* __restrict__ out_dst, const int* __restrict__ out_woff, const float* __restrict__ params,
    const float* __restrict__ act, float* __restrict__ dz, float* __restrict__ grads, double* __restrict__ stats,
    float* __restrict__ cache, const int* __restrict__ cache_off, int capacity)
{
    __shared__ float sh[ATT_SHARED];
    __shared__ double scratch[THREADS / 32];
    const int s = slots[blockIdx.x], b = blockIdx.y, T = G(s, GEO_TOKENS), d = width[s], n = T * d;
    const int heads = G(s, GEO_HEADS), dh = d / heads, pp = heads * T * T;
    const float* in = kept(cache, cache_off, s, b, capacity, 5 * n + pp);  // the forward, as it left it
    for (int i = threadIdx.x; i < 5 * n + pp; i += THREADS) sh[i] = in[i];
    __syncthreads();
    float *z = sh, *q = sh + n, *k = q + n, *v = k + n, *o = v + n, *p = o + n;
    float *g = p + pp, *dO = g + n, *dq = dO + n, *dk = dq + n, *dv = dk + n, *ds = dv + n;
    const float* own = params + bias_off[s];
    const float *wq = own + d, *wk = wq + d * d, *wv = wk + d * d, *wo = wv + d * d;
    float* grad_own = grads + bias_off[s];
    const float scale = rsqrtf((float)dh);
    double s1 = 0.0, s2 = 0.0, s3 = 0.0;
    for (int idx = threadIdx.x; idx < n; idx += THREADS) {  // dL/dh from the consumers' token rows
        const int t = idx / d, j = idx % d;
        float acc = 0.f;
        for (int e = out_ptr[s]; e < out_ptr[s + 1]; ++e) {
            const int c = out_dst[e], nc = width[c];
            const float* dzc = dz + act_off[c] + (b * T + t) * nc;
            const float* w = params + out_woff[e] + j;
            for (int m = 0; m < nc; ++m) acc += dzc[m] * w[m * d];
        }
        g[idx] = acc;
        s1 += acc; s2 += (double)acc * acc; s3 += (double)act[act_off[s] + (b * T + t) * d + j] * acc;
    }
    add_group_stats(stats, s, s1, s2, s3, scratch);
    __syncthreads();
    for (int idx = threadIdx.x; idx < d * d; idx += THREADS) {  // dWo = g^T o
        const int j = idx / d, i = idx % d;
        float acc = 0.f;
        for (int t = 0; t < T; ++t) acc += g[t * d + j] * o[t * d + i];
        atomicAdd(grad_own + d + 3 * d * d + idx, acc);
    }
    for (int idx = threadIdx.x; idx < n; idx += THREADS) {  // dL/do = g Wo
        const int t = idx / d, i = idx % d;
        float acc = 0.f;
        for (int j = 0; j < d; ++j) acc += g[t * d + j] * wo[j * d + i];
        dO[idx] = acc;
    }
    __syncthreads();
    for (int idx = threadIdx.x; idx < pp; idx += THREADS) {  // dL/dp
        const int h = idx / (T * T), t = (idx / T) % T, u = idx % T;
        float acc = 0.f;
        for (int c = 0; c < dh; ++c) acc += dO[t * d + h * dh + c] * v[u * d + h * dh + c];
        ds[idx] = acc;
    }
    for (int idx = threadIdx.x; idx < n; idx += THREADS) {  // dL/dv = p^T do
        const int u = idx / d, j = idx % d, h = j / dh;
        float acc = 0.f;
        for (int t = 0; t < T; ++t) acc += p[(h * T + t) * T + u] * dO[t * d + j];
        dv[idx] = acc;
    }
    __syncthreads();
    for (int r = threadIdx.x; r < heads * T; r += THREADS) {  // through the softmax and the scale
        float dot = 0.f;
        for (int u = 0; u < T; ++u) dot += ds[r * T + u] * p[r * T + u];
        for (int u = 0; u < T; ++u) ds[r * T + u] = p[r * T + u] * (ds[r * T + u] - dot) * scale;
    }
    __syncthreads();
    for (int idx = threadIdx.x; idx < n; idx += THREADS) {  // dL/dq = ds k, dL/dk = ds^T q
        const int t = idx / d, j = idx % d, h = j / dh;
        float a = 0.f, c = 0.f;
        for (int u = 0; u < T; ++u) {
            a += ds[(h * T + t) * T + u] * k[u * d + j];
            c += ds[(h * T + u) * T + t] * q[u * d + j];
        }
        dq[idx] = a; dk[idx] = c;
    }
    __syncthreads();
    for (int idx = threadIdx.x; idx < d * d; idx += THREADS) {  // dWq, dWk, dWv = (dq, dk, dv)^T z
        const int j = idx / d, i = idx % d;
        float a = 0.f, bb = 0.f, c = 0.f;
        for (int t = 0; t < T; ++t) {
            const float zi = z[t * d + i];
            a += dq[t * d + j] * zi; bb += dk[t * d + j] * zi; c += dv[t * d + j] * zi;
        }
        atomicAdd(grad_own + d + idx, a);
        atomicAdd(grad_own + d + d * d + idx, bb);
        atomicAdd(grad_own + d + 2 * d * d + idx, c);
    }
    for (int idx = threadIdx.x; idx < n; idx += THREADS) {  // dL/dz = g + dq Wq + dk Wk + dv Wv
        const int t = idx / d, i = idx % d;
        float acc = g[idx];
        for (int j = 0; j < d; ++j)
            acc += dq[t * d + j] * wq[j * d + i] + dk[t * d + j] * wk[j * d + i] + dv[t * d + j] * wv[j * d + i];
        dz[act_off[s] + (b * T + t) * d + i] = acc;
        o[idx] = acc;  // o is no longer needed: keep dL/dz for the bias below
    }
    __syncthreads();
    for (int j = threadIdx.x; j < d; j += THREADS) {
        float acc = 0.f;
        for (int t = 0; t < T; ++t) acc += o[t * d + j];
        atomicAdd(grad_own + j, acc);
    }
}

extern "C" __global__ void token_weight_grad(
    const int* __restrict__ tasks, const int* __restrict__ width, const int* __restrict__ act_off,
    const float* __restrict__ act, const float* __restrict__ dz, float* __restrict__ grads, int rows)
{
    const int src = tasks[3 * blockIdx.x], s = tasks[3 * blockIdx.x + 1], woff = tasks[3 * blockIdx.x + 2];
    const int d = width[s], ws = width[src], idx = blockIdx.y * THREADS + threadIdx.x;
    if (idx >= d * ws) return;
    const int j = idx / ws, i = idx % ws;
    double acc = 0.0;
    for (int r = 0; r < rows; ++r) acc += (double)dz[act_off[s] + r * d + j] * act[act_off[src] + r * ws + i];
    grads[woff + idx] = (float)acc;
}

extern "C" __global__ void pool_tokens(const float* __restrict__ rows, float* __restrict__ pooled, int samples,
                                       int tokens, int classes)
{
    const int i = blockIdx.x * THREADS + threadIdx.x;
    if (i >= samples * classes) return;
    const int b = i / classes, c = i % classes;
    float acc = 0.f;
    for (int t = 0; t < tokens; ++t) acc += rows[(b * tokens + t) * classes + c];
    pooled[i] = acc / tokens;
}

extern "C" __global__ void spread_tokens(const float* __restrict__ dpooled, float* __restrict__ drows, int samples,
                                         int tokens, int classes)
{
    const int i = blockIdx.x * THREADS + threadIdx.x;
    if (i >= samples * tokens * classes) return;
    const int c = i % classes, b = i / classes / tokens;
    drows[i] = dpooled[b * classes + c] / tokens;
}
