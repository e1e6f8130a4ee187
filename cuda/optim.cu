// optim.cu: optimizer updates over the flat parameter buffer (PyTorch's formulas, as
// genlab/optim.py).
// Guarded: nothing changes unless the step's loss (guard[0]) is finite and the sum of squares of
// its gradient (guard[2]) at most GRAD_LIMIT_SQ (finite_step, genlab.cuh), so a diverging step is
// refused without a round trip to the host (genlab/guard.py holds the rest of the rule).
//
// sgd_value / adam_value update one parameter held in registers; sgd_one / adam_one parameter i in
// memory; update_four 4 of them as float4s; update_chunk an update item of the persistent
// executors (dataflow.cu, rows.cu); optimizer_update the level executor's update.
// SGD: v = momentum * v + g (v starts at 0, so the first step takes v = g); p -= lr * v.
// Adam: per-parameter step count t; m, v moving averages; bias-corrected step (AdamCorrection).
#ifndef GENLAB_OPTIM_CU  // dataflow.cu includes this file too
#define GENLAB_OPTIM_CU
#include "genlab.cuh"

// Adam's bias corrections for step count tt: lr / (1 - beta1^tt) and 1 - beta2^tt, in double as
// -expm1(tt log beta) (cheaper than pow, and exact where 1 - beta^tt is small).
struct AdamCorrection {
    float t = -1.f, step = 0.f, correction = 1.f;
    __device__ __forceinline__ void at(float tt, float lr, double log_beta1, double log_beta2) {
        if (tt == t) return;  // the parameters of a chunk mostly share their step count
        t = tt;
        step = (float)((double)lr / -expm1((double)tt * log_beta1));
        correction = (float)-expm1((double)tt * log_beta2);
    }
};

// One parameter's update in registers (PyTorch's formulas). Every operation is rounded
// explicitly (__fmul_rn, __fadd_rn...), so nvcc cannot fuse any pair into an FMA: the update gives
// the same bits in every kernel it is inlined into (the level executor's optimizer_update, the
// persistent executors' update items, the row executor's deferred update), and so a run that
// applies a deferred update early (before a checkpoint) stays identical to one that does not.
__device__ __forceinline__ void sgd_value(float& p, float g, float& vel, float lr, float momentum)
{
    float step = g;
    if (momentum != 0.f) {
        step = __fadd_rn(__fmul_rn(momentum, vel), step);
        vel = step;
    }
    p = __fsub_rn(p, __fmul_rn(lr, step));
}

__device__ __forceinline__ void adam_value(float& p, float g, float& m, float& v, float& t, float lr, float beta1,
                                           float beta2, float eps, double log_beta1, double log_beta2,
                                           AdamCorrection& c)
{
    t = __fadd_rn(t, 1.f);
    m = __fadd_rn(__fmul_rn(beta1, m), __fmul_rn(__fsub_rn(1.f, beta1), g));
    v = __fadd_rn(__fmul_rn(beta2, v), __fmul_rn(__fmul_rn(__fsub_rn(1.f, beta2), g), g));
    c.at(t, lr, log_beta1, log_beta2);
    p = __fsub_rn(p, __fdiv_rn(__fmul_rn(c.step, m), __fadd_rn(__fsqrt_rn(__fdiv_rn(v, c.correction)), eps)));
}

// Parameter i's update in memory.
__device__ __forceinline__ void sgd_one(int i, float* __restrict__ p, const float* __restrict__ g,
                                        float* __restrict__ vel, float lr, float momentum)
{
    float pi = p[i], vi = momentum != 0.f ? vel[i] : 0.f;
    sgd_value(pi, __ldcg(g + i), vi, lr, momentum);
    p[i] = pi;
    if (momentum != 0.f) vel[i] = vi;
}

__device__ __forceinline__ void adam_one(int i, float* __restrict__ p, const float* __restrict__ g,
                                         float* __restrict__ m, float* __restrict__ v, float* __restrict__ t,
                                         float lr, float beta1, float beta2, float eps, double log_beta1,
                                         double log_beta2, AdamCorrection& c)
{
    float pi = p[i], mi = m[i], vi = v[i], ti = t[i];
    adam_value(pi, __ldcg(g + i), mi, vi, ti, lr, beta1, beta2, eps, log_beta1, log_beta2, c);
    p[i] = pi; m[i] = mi; v[i] = vi; t[i] = ti;
}

// update_four: parameters i..i+3 as float4s (i a multiple of 4: the buffers are 16-byte aligned),
// one round trip to memory for 4 parameters; update_tail: parameters i..n-1 one by one.
__device__ __forceinline__ void update_four(int i, int optimizer, float* __restrict__ params,
                                            const float* __restrict__ grads, float* __restrict__ state0,
                                            float* __restrict__ state1, float* __restrict__ state2, float lr,
                                            float hyper1, float hyper2, float eps, double log_beta1,
                                            double log_beta2, AdamCorrection& corr)
{
    float4* p4 = reinterpret_cast<float4*>(params + i);
    const float4 g = __ldcg(reinterpret_cast<const float4*>(grads + i));
    float4 p = *p4;
    float* pv = &p.x;
    const float* gv = &g.x;
    if (optimizer == OPTIMIZER_SGD) {
        float4* v4 = reinterpret_cast<float4*>(state0 + i);
        float4 v = hyper1 != 0.f ? *v4 : make_float4(0.f, 0.f, 0.f, 0.f);
        float* vv = &v.x;
#pragma unroll
        for (int j = 0; j < 4; ++j) sgd_value(pv[j], gv[j], vv[j], lr, hyper1);
        if (hyper1 != 0.f) *v4 = v;
    } else {
        float4* m4 = reinterpret_cast<float4*>(state0 + i);
        float4* v4 = reinterpret_cast<float4*>(state1 + i);
        float4* t4 = reinterpret_cast<float4*>(state2 + i);
        float4 m = *m4, v = *v4, t = *t4;
        float *mv = &m.x, *vv = &v.x, *tv = &t.x;
#pragma unroll
        for (int j = 0; j < 4; ++j)
            adam_value(pv[j], gv[j], mv[j], vv[j], tv[j], lr, hyper1, hyper2, eps, log_beta1, log_beta2, corr);
        *m4 = m; *v4 = v; *t4 = t;
    }
    *p4 = p;
}

__device__ __forceinline__ void update_tail(int i, int n_params, int optimizer, float* __restrict__ params,
                                            const float* __restrict__ grads, float* __restrict__ state0,
                                            float* __restrict__ state1, float* __restrict__ state2, float lr,
                                            float hyper1, float hyper2, float eps, double log_beta1,
                                            double log_beta2, AdamCorrection& corr)
{
    for (int j = i; j < n_params; ++j) {
        if (optimizer == OPTIMIZER_SGD) sgd_one(j, params, grads, state0, lr, hyper1);
        else adam_one(j, params, grads, state0, state1, state2, lr, hyper1, hyper2, eps, log_beta1, log_beta2, corr);
    }
}

// update_chunk: parameters c * CHUNK.. of the persistent executors' update item c (a block), 4 at a
// time a thread (CHUNK is a multiple of 4), the tail one by one.
__device__ __forceinline__ void update_chunk(int c, int n_params, int optimizer, float* __restrict__ params,
                                             const float* __restrict__ grads, float* __restrict__ state0,
                                             float* __restrict__ state1, float* __restrict__ state2, float lr,
                                             float hyper1, float hyper2, float eps)
{
    const double log_beta1 = optimizer ? log((double)hyper1) : 0.0, log_beta2 = optimizer ? log((double)hyper2) : 0.0;
    AdamCorrection corr;
#pragma unroll
    for (int k = 0; k < CHUNK / (4 * THREADS); ++k) {
        const int i = c * CHUNK + 4 * (k * THREADS + threadIdx.x);
        if (i >= n_params) break;
        if (i + 4 > n_params) {
            update_tail(i, n_params, optimizer, params, grads, state0, state1, state2, lr, hyper1, hyper2, eps,
                        log_beta1, log_beta2, corr);
            break;
        }
        update_four(i, optimizer, params, grads, state0, state1, state2, lr, hyper1, hyper2, eps, log_beta1,
                    log_beta2, corr);
    }
}

// optimizer_update: the level executor's update, 4 parameters a thread. optimizer 0: SGD (state0
// the velocity, hyper1 the momentum); 1: Adam (state0..2 = m, v, t; hyper1, hyper2 = beta1, beta2).
// Guarded as every update. Launch: grid ceil(n / (4 THREADS)), THREADS.
extern "C" __global__ void optimizer_update(int optimizer, float* __restrict__ params, const float* __restrict__ grads,
                                            float* __restrict__ state0, float* __restrict__ state1,
                                            float* __restrict__ state2, int n, float lr, float hyper1, float hyper2,
                                            float eps, const double* __restrict__ guard)
{
    const int i = 4 * (blockIdx.x * THREADS + threadIdx.x);
    if (i >= n || !finite_step(guard)) return;
    const double log_beta1 = optimizer ? log((double)hyper1) : 0.0, log_beta2 = optimizer ? log((double)hyper2) : 0.0;
    AdamCorrection corr;
    if (i + 4 > n)
        update_tail(i, n, optimizer, params, grads, state0, state1, state2, lr, hyper1, hyper2, eps, log_beta1,
                    log_beta2, corr);
    else
        update_four(i, optimizer, params, grads, state0, state1, state2, lr, hyper1, hyper2, eps, log_beta1,
                    log_beta2, corr);
}

// max_abs: out = max(out, max |x[i]|) as the bits of a non-negative float (their order is the
// floats' order; a NaN's bits exceed infinity's), for the step guard's exact bounds. out starts
// at 0. Launch: grid ceil(n / (THREADS * 8)), THREADS.
extern "C" __global__ void max_abs(const float* __restrict__ x, int n, unsigned int* __restrict__ out)
{
    unsigned int best = 0;
    const int end = min(n, (int)((blockIdx.x + 1) * THREADS * 8));
    for (int i = blockIdx.x * THREADS * 8 + threadIdx.x; i < end; i += THREADS)
        best = max(best, __float_as_uint(x[i]) & 0x7FFFFFFFu);
    for (int off = 16; off > 0; off >>= 1) best = max(best, __shfl_xor_sync(0xFFFFFFFFu, best, off));
    if ((threadIdx.x & 31) == 0 && best) atomicMax(out, best);
}

// segment_sum: dst[i] = the sum of src[idx[j]] for j in ptr[i]..ptr[i+1]-1, in that order (a
// shared parameter's gradient from its copies' in an unrolled recurrent network: deterministic,
// no atomics). Launch: ceil(n / THREADS), THREADS.
extern "C" __global__ void segment_sum(float* __restrict__ dst, const float* __restrict__ src,
                                       const int* __restrict__ ptr, const int* __restrict__ idx, int n)
{
    const int i = blockIdx.x * THREADS + threadIdx.x;
    if (i >= n) return;
    float sum = 0.f;
    for (int j = ptr[i]; j < ptr[i + 1]; ++j) sum = __fadd_rn(sum, __ldg(src + idx[j]));
    dst[i] = sum;
}

// gather: dst[i] = src[map[i]] where map[i] >= 0, else 0. Carries optimizer state from one
// parameter layout to the next when the topology changes. Launch: ceil(n / THREADS), THREADS.
extern "C" __global__ void gather(float* __restrict__ dst, const float* __restrict__ src,
                                  const int* __restrict__ map, int n)
{
    const int i = blockIdx.x * THREADS + threadIdx.x;
    if (i < n) dst[i] = map[i] >= 0 ? src[map[i]] : 0.f;
}
// Ranges of parameters by group (range r: ranges[3r] its slot, ranges[3r + 1] its first parameter,
// ranges[3r + 2] its length): the gradients of groups that are not dense (conv.cu, attention.cu).
// param_norms: wstats[slot] and *gradsq += the sum of squares of the range's gradients (what
//   backward.cu's weight_grad adds for dense edges). zero_ranges: the range's gradients = 0 (before
//   a kernel adds into them). Launch: one block per range.
extern "C" __global__ void param_norms(const int* __restrict__ ranges, const float* __restrict__ grads,
                                       double* __restrict__ wstats, double* __restrict__ gradsq)
{
    __shared__ double scratch[THREADS / 32];
    const int* r = ranges + 3 * blockIdx.x;
    double sq = 0.0;
    for (int i = threadIdx.x; i < r[2]; i += THREADS) sq += (double)grads[r[1] + i] * grads[r[1] + i];
    sq = block_sum(sq, scratch);
    if (threadIdx.x == 0) { atomicAdd(wstats + r[0], sq); atomicAdd(gradsq, sq); }
}

extern "C" __global__ void zero_ranges(const int* __restrict__ ranges, float* __restrict__ grads)
{
    const int* r = ranges + 3 * blockIdx.x;
    for (int i = threadIdx.x; i < r[2]; i += THREADS) grads[r[1] + i] = 0.f;
}

// A data-parallel step's sums over the replicas (engines/cuda/replicas.py), two collectives: the
// gradients (floats) and `sums` (doubles: the moments of dL/dh, the loss, the correct count).
// replica_pack: this replica's part, each weighted by its share of the step's rows: grads *=
//   share; sums[3g + c] = stats[3g + c] * (share, share^2, share)[c]; sums[3n] = loss * share;
//   sums[3n + 1] = the correct count. replica_unpack: the summed values back where the update and
//   the statistics read them, and the gradient norms zeroed for param_norms (of the summed
//   gradients). Launch: one thread per element of the larger range (any grid: grid-stride).
extern "C" __global__ void replica_pack(float* __restrict__ grads, int n_params, double share,
                                        const double* __restrict__ stats, const double* __restrict__ scalars,
                                        int n_groups, double* __restrict__ sums)
{
    const int stride = gridDim.x * THREADS, m = 3 * n_groups;
    const float weight = (float)share;
    for (int i = blockIdx.x * THREADS + threadIdx.x; i < n_params; i += stride) grads[i] *= weight;
    for (int i = blockIdx.x * THREADS + threadIdx.x; i < m + 2; i += stride)
        sums[i] = i < m ? stats[i] * (i % 3 == 1 ? share * share : share)
                        : i == m ? scalars[0] * share : (double)*(const int*)(scalars + 1);
}

extern "C" __global__ void replica_unpack(const double* __restrict__ sums, int n_groups, double* __restrict__ stats,
                                          double* __restrict__ scalars, double* __restrict__ wstats)
{
    const int stride = gridDim.x * THREADS, m = 3 * n_groups;
    for (int i = blockIdx.x * THREADS + threadIdx.x; i < m; i += stride) {
        stats[i] = sums[i];
        if (i < n_groups) wstats[i] = 0.0;
    }
    if (blockIdx.x == 0 && threadIdx.x == 0) {
        scalars[0] = sums[m];
        *(int*)(scalars + 1) = (int)llrint(sums[m + 1]);
        scalars[2] = 0.0;  // the step's squared gradient norm (param_norms)
    }
}

#endif  // GENLAB_OPTIM_CU
