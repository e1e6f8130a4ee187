// loss.cu: softmax cross-entropy of the logits against the labels, and its gradient.
//
// softmax_rows: for batch rows b0..b0+rows-1 (one thread each, rows <= THREADS): loss =
// log(sum exp(l - max)) - (l_y - max) and dL/dl = (softmax(l) - onehot(y)) / batch (the mean
// loss's gradient), written where the output group's dz lives. Accumulates the mean loss, the
// count of correct predictions and the output group's statistics (sum dL/dl, sum (dL/dl)^2,
// sum l * dL/dl) into stats[3 * slot..]. Called by softmax_xent and by the dataflow executor.
// softmax_xent: launch grid ceil(batch / THREADS), THREADS threads; one thread per batch row.
// sum_parts: a split output's logits from its parts (forward.cu), before the loss. Launch: grid
// ceil(batch / TILE), THREADS.
// Rows of logits are ROW(ld, classes) floats apart (the activation layout, genlab.cuh).
#ifndef GENLAB_LOSS_CU  // dataflow.cu includes this file too
#define GENLAB_LOSS_CU
#include "genlab.cuh"

// One row's softmax cross-entropy: logits l[0..classes-1] (written inside the launch: read through
// L2), label y; the loss divided by `count` (the mean's denominator) and dL/dl = (softmax(l) -
// onehot(y)) / count into dl; the correct count and the output group's statistics (sum dL/dl,
// sum (dL/dl)^2, sum l * dL/dl) accumulated. softmax_rows and wavefront.cu's loss use it.
__device__ __forceinline__ void softmax_row(const float* l, int y, int classes, float count, float* dl,
                                            double& loss, int& right, double& s1, double& s2, double& s3)
{
    float m = __ldcg(l);
    int best = 0;
    for (int c = 1; c < classes; ++c) {
        const float v = __ldcg(l + c);
        if (v > m) { m = v; best = c; }
    }
    float total = 0.f;
    for (int c = 0; c < classes; ++c) total += expf(__ldcg(l + c) - m);
    loss += (double)(logf(total) - (__ldcg(l + y) - m)) / count;
    right += best == y;
    for (int c = 0; c < classes; ++c) {
        const float v = __ldcg(l + c);
        const float g = (expf(v - m) / total - (c == y ? 1.f : 0.f)) / count;
        dl[c] = g;
        s1 += g; s2 += (double)g * g; s3 += (double)v * g;
    }
}

__device__ __forceinline__ void softmax_rows(
    int b0, int rows, const float* logits, const int* __restrict__ labels, int batch, int classes, int ld,
    float* dlogits, double* loss_sum, int* correct, double* stats, int output_slot)
{
    __shared__ double scratch[THREADS / 32];
    const int b = b0 + threadIdx.x, stride = ROW(ld, classes);
    double s1 = 0.0, s2 = 0.0, s3 = 0.0, loss = 0.0;
    int right = 0;
    if ((int)threadIdx.x < rows)
        softmax_row(logits + b * stride, labels[b], classes, (float)batch, dlogits + b * stride, loss, right, s1, s2,
                    s3);
    loss = block_sum(loss, scratch);
    s1 = block_sum(s1, scratch);
    s2 = block_sum(s2, scratch);
    s3 = block_sum(s3, scratch);
    const double r = block_sum((double)right, scratch);
    if (threadIdx.x == 0) {
        atomicAdd(loss_sum, loss);
        atomicAdd(correct, (int)r);
        atomicAdd(stats + 3 * output_slot, s1);
        atomicAdd(stats + 3 * output_slot + 1, s2);
        atomicAdd(stats + 3 * output_slot + 2, s3);
    }
}

// The split output's logits of rows b0..b0+rows-1 (written inside the launch: read through L2):
// each the sum of the n parts' values in part order. The block's threads share the rows.
__device__ __forceinline__ void sum_output_parts(const float* parts, int n, int cap, int b0, int rows, int w,
                                                 float* logits, int ld)
{
    const int rs = ROW(ld, w);
    for (int i = threadIdx.x; i < rows * w; i += blockDim.x) {
        const int b = b0 + i / w, j = i % w;
        float v = __ldcg(parts + (size_t)b * w + j);
        for (int q = 1; q < n; ++q) v += __ldcg(parts + ((size_t)q * cap + b) * w + j);
        logits[(size_t)b * rs + j] = v;
    }
}

extern "C" __global__ void softmax_xent(
    const float* __restrict__ logits, const int* __restrict__ labels, int batch, int classes, int ld,
    float* __restrict__ dlogits, double* __restrict__ loss_sum, int* __restrict__ correct,
    double* __restrict__ stats, int output_slot)
{
    const int b0 = blockIdx.x * THREADS;
    softmax_rows(b0, min(THREADS, batch - b0), logits, labels, batch, classes, ld, dlogits, loss_sum, correct,
                 stats, output_slot);
}

extern "C" __global__ void sum_parts(const float* __restrict__ parts, int n, int cap, int batch, int w,
                                     float* __restrict__ logits, int ld)
{
    const int b0 = blockIdx.x * TILE;
    sum_output_parts(parts, n, cap, b0, min(TILE, batch - b0), w, logits, ld);
}
#endif  // GENLAB_LOSS_CU
