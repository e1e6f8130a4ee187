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
// attention_forward: one block per (group in `slots`, `per_block` samples), one sample after the
//   other, everything of a sample in shared memory (its work area: 5 T d + heads T^2 floats; the
//   engine checks that the backward's 10 T d + 2 heads T^2 fit ATT_SHARED); grid (groups,
//   ceil(samples / per_block)), `shared` floats of dynamic shared memory. Where the group's weights
//   fit beside the work area (att_staged), the block stages them once for all its samples, rows
//   padded to an odd length (a warp's lanes read rows j at the same column: distinct banks);
//   otherwise it reads them from global memory. It keeps z, q, k, v, o and p in `cache` for the
//   backward (kept()).
// attention_backward: the same blocks: the forward read back from `cache`, dL/dh pulled from the
//   consumers (each reads token rows: dz_d W), then back through the attention: dz = dL/dz written
//   where the group's dz lives, and the statistics of dL/dh. The gradients of b, Wq, Wk, Wv, Wo are
//   summed over the block's samples in shared memory where they fit beside the work area (d + 4 d^2
//   floats) and added atomically once a block, else added atomically a sample at a time (zeroed
//   before: optim.cu's zero_ranges).
// token_weight_grad: dL/dW of an edge into an attention group, summed over every token row; a block
//   takes 32 weight elements (a warp's lanes), each warp of the block every (THREADS / 32)-th row,
//   the warps' sums added in a fixed order. Task (src slot, dst slot, weight offset); grid (tasks,
//   ceil(elements / 32)).
// pool_tokens / spread_tokens: the output group of a sequence network averages its token rows into
//   one row per sample (the logits), and its gradient goes back to every token divided by T.
#include "genlab.cuh"

#define G(s, f) geo[GEO_INTS * (s) + (f)]
#ifndef ATT_BLOCKS
#define ATT_BLOCKS 6  // blocks of the forward and backward an SM holds at once (__launch_bounds__: 40
#endif                // registers a thread; the variant harness, benchmarks/kernels/kinds.py, tries others)

// Token t's sinusoidal encoding at feature j of width d, in double precision as NumPy computes it
// (genlab/kinds/attention.py positions): sin(t / 10000^(2i / d)) at j = 2i, cos at j = 2i + 1.
__device__ float position(int t, int j, int d)
{
    const double angle = (double)t / pow(10000.0, (double)(j - j % 2) / (double)d);
    return (float)(j % 2 == 0 ? sin(angle) : cos(angle));
}

// The row length a staged matrix of rows of n floats takes: odd, so that the lanes of a warp that
// read the same column of different rows hit different banks.
__device__ __forceinline__ int odd_row(int n) { return n | 1; }

// Floats the staged weights of attention group s take: Wq, Wk, Wv, Wo (d x odd_row(d) each), then
// each in-edge's W (d x odd_row(width of its source)), in in-edge order.
__device__ int att_staged(int s, const int* width, const int* in_ptr, const int* in_src)
{
    const int d = width[s];
    int n = 4 * d * odd_row(d);
    for (int e = in_ptr[s]; e < in_ptr[s + 1]; ++e) n += d * odd_row(width[in_src[e]]);
    return n;
}

// A d x cols matrix where the block reads it: row j at w + j * ld.
struct Rows {
    const float* w;
    int ld;
};

// Copy the d x cols row-major matrix at src into sh with rows of odd_row(cols); returns its view.
__device__ Rows stage(float* sh, const float* src, int d, int cols)
{
    const int ld = odd_row(cols);
    for (int i = threadIdx.x; i < d * cols; i += THREADS) sh[(i / cols) * ld + i % cols] = src[i];
    return {sh, ld};
}

// Each of `rows` rows of T scores at p, softmaxed in place: a team of SOFTMAX_TEAM lanes a row
// (a lane every SOFTMAX_TEAM-th score), the maximum and the sum across the team by shuffles.
#define SOFTMAX_TEAM 8
__device__ __forceinline__ void softmax_rows(float* p, int rows, int T)
{
    const int lane = threadIdx.x % SOFTMAX_TEAM, teams = THREADS / SOFTMAX_TEAM;
    for (int base = 0; base < rows; base += teams) {  // (the same trips for every thread: the shuffles)
        const int r = base + threadIdx.x / SOFTMAX_TEAM;
        float* row = p + r * T;
        float m = -INFINITY, total = 0.f;
        if (r < rows)
            for (int u = lane; u < T; u += SOFTMAX_TEAM) m = fmaxf(m, row[u]);
        for (int o = SOFTMAX_TEAM / 2; o > 0; o >>= 1) m = fmaxf(m, __shfl_xor_sync(0xffffffffu, m, o));
        if (r < rows)
            for (int u = lane; u < T; u += SOFTMAX_TEAM) {
                row[u] = expf(row[u] - m);
                total += row[u];
            }
        for (int o = SOFTMAX_TEAM / 2; o > 0; o >>= 1) total += __shfl_xor_sync(0xffffffffu, total, o);
        if (r < rows)
            for (int u = lane; u < T; u += SOFTMAX_TEAM) row[u] /= total;
    }
}

// ds = p (ds - sum over the row of ds p) * scale, row by row (dL/dscores from dL/dp), in teams
// as softmax_rows.
__device__ __forceinline__ void softmax_back_rows(float* ds, const float* p, int rows, int T, float scale)
{
    const int lane = threadIdx.x % SOFTMAX_TEAM, teams = THREADS / SOFTMAX_TEAM;
    for (int base = 0; base < rows; base += teams) {
        const int r = base + threadIdx.x / SOFTMAX_TEAM;
        float dot = 0.f;
        if (r < rows)
            for (int u = lane; u < T; u += SOFTMAX_TEAM) dot += ds[r * T + u] * p[r * T + u];
        for (int o = SOFTMAX_TEAM / 2; o > 0; o >>= 1) dot += __shfl_xor_sync(0xffffffffu, dot, o);
        if (r < rows)
            for (int u = lane; u < T; u += SOFTMAX_TEAM) ds[r * T + u] = p[r * T + u] * (ds[r * T + u] - dot) * scale;
    }
}

// z, q, k, v, p (heads x T x T, softmaxed) and o of sample b of attention group s, into `sh`
// (z, q, k, v, o: T x d each, then p). Wq, Wk, Wv: own[0..2]; the in-edges' weights: `in_rows`
// (staged, one after the other in in-edge order), or null: read from params.
__device__ void attend(int s, int b, const int* geo, const int* width, const int* act_off, const float* bias,
                       const int* in_ptr, const int* in_src, const int* in_woff, const float* params,
                       const Rows* own, const float* in_rows, const float* act, float* sh)
{
    const int T = G(s, GEO_TOKENS), d = width[s], heads = G(s, GEO_HEADS), dh = d / heads, n = T * d;
    float *z = sh, *q = sh + n, *k = q + n, *v = k + n, *o = v + n, *p = o + n;
    const bool encoded = G(s, GEO_POSITIONS) != 0;
    for (int idx = threadIdx.x; idx < n; idx += THREADS) {
        const int t = idx / d, j = idx % d;
        float acc = encoded ? bias[j] + position(t, j, d) : bias[j];
        const float* staged = in_rows;
        for (int e = in_ptr[s]; e < in_ptr[s + 1]; ++e) {
            const int src = in_src[e], ws = width[src];
            const float* h = act + act_off[src] + (b * T + t) * ws;
            const float* w = staged ? staged + j * odd_row(ws) : params + in_woff[e] + j * ws;
            for (int i = 0; i < ws; ++i) acc += h[i] * w[i];
            if (staged) staged += d * odd_row(ws);
        }
        z[idx] = acc;
    }
    __syncthreads();
    for (int idx = threadIdx.x; idx < n; idx += THREADS) {
        const int t = idx / d, j = idx % d;
        const float *wq = own[0].w + j * own[0].ld, *wk = own[1].w + j * own[1].ld, *wv = own[2].w + j * own[2].ld;
        float a = 0.f, bb = 0.f, c = 0.f;
        for (int i = 0; i < d; ++i) {
            const float zi = z[t * d + i];
            a += zi * wq[i]; bb += zi * wk[i]; c += zi * wv[i];
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
    softmax_rows(p, heads * T, T);
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

extern "C" __global__ void __launch_bounds__(THREADS, ATT_BLOCKS) attention_forward(
    const int* __restrict__ slots, const int* __restrict__ geo, const int* __restrict__ width,
    const int* __restrict__ act_off, const int* __restrict__ bias_off, const int* __restrict__ in_ptr,
    const int* __restrict__ in_src, const int* __restrict__ in_woff, const float* __restrict__ params,
    float* __restrict__ act, float* __restrict__ cache, const int* __restrict__ cache_off, int capacity,
    int samples, int per_block, int shared)
{
    extern __shared__ float sh[];
    const int s = slots[blockIdx.x], T = G(s, GEO_TOKENS), d = width[s], n = T * d;
    const int n_kept = 5 * n + G(s, GEO_HEADS) * T * T;
    const int b0 = blockIdx.y * per_block, b1 = min(samples, b0 + per_block);
    const float* own = params + bias_off[s];
    const int staged = att_staged(s, width, in_ptr, in_src);
    Rows w[4];
    float *work = sh, *in_rows = nullptr;
    if (staged + n_kept <= shared) {  // the weights once for every sample of the block
        for (int m = 0; m < 4; ++m) w[m] = stage(sh + m * d * odd_row(d), own + d + m * d * d, d, d);
        in_rows = sh + 4 * d * odd_row(d);
        float* next = in_rows;
        for (int e = in_ptr[s]; e < in_ptr[s + 1]; ++e) {
            const int ws = width[in_src[e]];
            stage(next, params + in_woff[e], d, ws);
            next += d * odd_row(ws);
        }
        work = sh + staged;
        __syncthreads();
    } else {
        for (int m = 0; m < 4; ++m) w[m] = {own + d + m * d * d, d};
    }
    const float *z = work, *o = work + 4 * n;
#pragma unroll 1
    for (int b = b0; b < b1; ++b) {
        attend(s, b, geo, width, act_off, own, in_ptr, in_src, in_woff, params, w, in_rows, act, work);
        float* out = kept(cache, cache_off, s, b, capacity, n_kept);
        for (int i = threadIdx.x; i < n_kept; i += THREADS) out[i] = work[i];
        for (int idx = threadIdx.x; idx < n; idx += THREADS) {
            const int t = idx / d, j = idx % d;
            const float* wo = w[3].w + j * w[3].ld;
            float acc = z[idx];
            for (int i = 0; i < d; ++i) acc += o[t * d + i] * wo[i];
            act[act_off[s] + (b * T + t) * d + j] = acc;
        }
        __syncthreads();  // the next sample's z overwrites this one's
    }
}

// grad[i] += v for the block's sums in shared memory (sums), or straight into the gradient
// (atomically: other blocks add to it too).
__device__ __forceinline__ void add_grad(float* sums, float* grad, int i, float v)
{
    if (sums) sums[i] += v;
    else atomicAdd(grad + i, v);
}

extern "C" __global__ void __launch_bounds__(THREADS, ATT_BLOCKS) attention_backward(
    const int* __restrict__ slots, const int* __restrict__ geo, const int* __restrict__ width,
    const int* __restrict__ act_off, const int* __restrict__ bias_off, const int* __restrict__ out_ptr,
    const int* __restrict__ out_dst, const int* __restrict__ out_woff, const float* __restrict__ params,
    const float* __restrict__ act, float* __restrict__ dz, float* __restrict__ grads, double* __restrict__ stats,
    float* __restrict__ cache, const int* __restrict__ cache_off, int capacity, int samples, int per_block,
    int shared)
{
    extern __shared__ float sh[];
    __shared__ double scratch[THREADS / 32];
    const int s = slots[blockIdx.x], T = G(s, GEO_TOKENS), d = width[s], n = T * d;
    const int heads = G(s, GEO_HEADS), dh = d / heads, pp = heads * T * T;
    const int b0 = blockIdx.y * per_block, b1 = min(samples, b0 + per_block);
    const float* own = params + bias_off[s];
    const float *wq = own + d, *wk = wq + d * d, *wv = wk + d * d, *wo = wv + d * d;
    float* grad_own = grads + bias_off[s];  // b, Wq, Wk, Wv, Wo as in params
    const int n_own = d + 4 * d * d;
    float *sums = nullptr, *sh_work = sh;
    if (n_own + 10 * n + 2 * pp <= shared) {  // the gradients summed over the block's samples here
        sums = sh;
        sh_work = sh + n_own;
        for (int i = threadIdx.x; i < n_own; i += THREADS) sums[i] = 0.f;
    }
    float *z = sh_work, *q = z + n, *k = q + n, *v = k + n, *o = v + n, *p = o + n;
    float *g = p + pp, *dO = g + n, *dq = dO + n, *dk = dq + n, *dv = dk + n, *ds = dv + n;
    const float scale = rsqrtf((float)dh);
    double s1 = 0.0, s2 = 0.0, s3 = 0.0;
#pragma unroll 1
    for (int b = b0; b < b1; ++b) {
        const float* in = kept(cache, cache_off, s, b, capacity, 5 * n + pp);  // the forward, as it left it
        for (int i = threadIdx.x; i < 5 * n + pp; i += THREADS) sh_work[i] = in[i];
        __syncthreads();
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
        __syncthreads();
        for (int idx = threadIdx.x; idx < d * d; idx += THREADS) {  // dWo = g^T o
            const int j = idx / d, i = idx % d;
            float acc = 0.f;
            for (int t = 0; t < T; ++t) acc += g[t * d + j] * o[t * d + i];
            add_grad(sums, grad_own, d + 3 * d * d + idx, acc);
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
        softmax_back_rows(ds, p, heads * T, T, scale);  // through the softmax and the scale
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
            add_grad(sums, grad_own, d + idx, a);
            add_grad(sums, grad_own, d + d * d + idx, bb);
            add_grad(sums, grad_own, d + 2 * d * d + idx, c);
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
            add_grad(sums, grad_own, j, acc);
        }
        __syncthreads();  // the next sample's forward overwrites this one's
    }
    add_group_stats(stats, s, s1, s2, s3, scratch);  // (its barriers order every thread's sums before the adds)
    if (sums)
        for (int i = threadIdx.x; i < n_own; i += THREADS) atomicAdd(grad_own + i, sums[i]);
}

extern "C" __global__ void token_weight_grad(
    const int* __restrict__ tasks, const int* __restrict__ width, const int* __restrict__ act_off,
    const float* __restrict__ act, const float* __restrict__ dz, float* __restrict__ grads, int rows)
{
    __shared__ double part[THREADS];
    const int src = tasks[3 * blockIdx.x], s = tasks[3 * blockIdx.x + 1], woff = tasks[3 * blockIdx.x + 2];
    const int d = width[s], ws = width[src], lane = threadIdx.x & 31, slice = threadIdx.x >> 5;
    const int idx = blockIdx.y * 32 + lane;
    double acc = 0.0;
    if (idx < d * ws) {
        const int j = idx / ws, i = idx % ws;
        for (int r = slice; r < rows; r += THREADS / 32)
            acc += (double)dz[act_off[s] + r * d + j] * act[act_off[src] + r * ws + i];
    }
    part[threadIdx.x] = acc;
    __syncthreads();
    if (slice == 0 && idx < d * ws) {  // the slices' sums in a fixed order
        double total = 0.0;
        for (int k = 0; k < THREADS / 32; ++k) total += part[32 * k + lane];
        grads[woff + idx] = (float)total;
    }
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
