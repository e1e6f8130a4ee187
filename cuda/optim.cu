// optim.cu: optimizer updates over the flat parameter buffer (PyTorch's formulas, as
// genlab/optim.py). Launch: grid ceil(n / THREADS), THREADS; one thread per parameter.
// Guarded: nothing changes unless the step's loss (guard[0]) and the sum of squares of its
// gradient (guard[2]) are finite, so a diverging step is refused without a round trip to the host.
//
// sgd_one / adam_one update parameter i (also called by the dataflow executor).
// sgd_update: v = momentum * v + g (v starts at 0, so the first step takes v = g); p -= lr * v.
// adam_update: per-parameter step count t; m, v moving averages; bias-corrected step.
#ifndef GENLAB_OPTIM_CU  // dataflow.cu includes this file too
#define GENLAB_OPTIM_CU
#include "genlab.cuh"

__device__ __forceinline__ bool finite_step(const double* guard) {
    return isfinite(__ldcg(guard)) && isfinite(__ldcg(guard + 2));
}

__device__ __forceinline__ void sgd_one(int i, float* p, const float* g, float* vel, float lr, float momentum)
{
    float step = __ldcg(g + i);
    if (momentum != 0.f) {
        step = momentum * vel[i] + step;
        vel[i] = step;
    }
    p[i] -= lr * step;
}

__device__ __forceinline__ void adam_one(int i, float* p, const float* g, float* m, float* v, float* t, float lr,
                                         float beta1, float beta2, float eps)
{
    const float tt = t[i] + 1.f, gi = __ldcg(g + i);
    t[i] = tt;
    const float mi = beta1 * m[i] + (1.f - beta1) * gi;
    const float vi = beta2 * v[i] + (1.f - beta2) * gi * gi;
    m[i] = mi;
    v[i] = vi;
    const float step = (float)((double)lr / (1.0 - pow((double)beta1, (double)tt)));
    const float correction = (float)(1.0 - pow((double)beta2, (double)tt));
    p[i] -= step * mi / (sqrtf(vi / correction) + eps);
}

extern "C" __global__ void sgd_update(float* __restrict__ p, const float* __restrict__ g,
                                      float* __restrict__ vel, int n, float lr, float momentum,
                                      const double* __restrict__ guard)
{
    const int i = blockIdx.x * THREADS + threadIdx.x;
    if (i < n && finite_step(guard)) sgd_one(i, p, g, vel, lr, momentum);
}

extern "C" __global__ void adam_update(float* __restrict__ p, const float* __restrict__ g,
                                       float* __restrict__ m, float* __restrict__ v, float* __restrict__ t,
                                       int n, float lr, float beta1, float beta2, float eps,
                                       const double* __restrict__ guard)
{
    const int i = blockIdx.x * THREADS + threadIdx.x;
    if (i < n && finite_step(guard)) adam_one(i, p, g, m, v, t, lr, beta1, beta2, eps);
}

// gather: dst[i] = src[map[i]] where map[i] >= 0, else 0. Carries optimizer state from one
// parameter layout to the next when the topology changes. Launch: ceil(n / THREADS), THREADS.
extern "C" __global__ void gather(float* __restrict__ dst, const float* __restrict__ src,
                                  const int* __restrict__ map, int n)
{
    const int i = blockIdx.x * THREADS + threadIdx.x;
    if (i < n) dst[i] = map[i] >= 0 ? src[map[i]] : 0.f;
}
#endif  // GENLAB_OPTIM_CU
