// loss.cu: softmax cross-entropy of the logits against the labels, and its gradient.
//
// softmax_xent: for each batch row, loss = log(sum exp(l - max)) - (l_y - max) and
// dL/dl = (softmax(l) - onehot(y)) / batch (the mean loss's gradient), written where the output
// group's dz lives. Also accumulates the mean loss, the count of correct predictions and the
// output group's statistics (sum dL/dl, sum (dL/dl)^2, sum l * dL/dl) into stats[3 * slot..].
// Launch: grid ceil(batch / THREADS), THREADS threads; one thread per batch row.
#include "genlab.cuh"

extern "C" __global__ void softmax_xent(
    const float* __restrict__ logits, const int* __restrict__ labels, int batch, int classes,
    float* __restrict__ dlogits, double* __restrict__ loss_sum, int* __restrict__ correct,
    double* __restrict__ stats, int output_slot)
{
    __shared__ double scratch[THREADS / 32];
    const int b = blockIdx.x * THREADS + threadIdx.x;
    double s1 = 0.0, s2 = 0.0, s3 = 0.0, loss = 0.0;
    int right = 0;
    if (b < batch) {
        const float* l = logits + b * classes;
        const int y = labels[b];
        float m = l[0];
        int best = 0;
        for (int c = 1; c < classes; ++c)
            if (l[c] > m) { m = l[c]; best = c; }
        float total = 0.f;
        for (int c = 0; c < classes; ++c) total += expf(l[c] - m);
        loss = (double)(logf(total) - (l[y] - m)) / batch;
        right = (best == y);
        for (int c = 0; c < classes; ++c) {
            const float g = (expf(l[c] - m) / total - (c == y ? 1.f : 0.f)) / batch;
            dlogits[b * classes + c] = g;
            s1 += g; s2 += (double)g * g; s3 += (double)l[c] * g;
        }
    }
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
