// dni.cu: synthetic gradients at the cuts of a network (genlab.DNI on the CUDA engine,
// genlab/engines/cuda/decoupled.py; the serial twin is genlab/asynchronous/dni.py).
//
// A boundary group s (one with an edge into a later part) has a module M_s that predicts the
// per-sample dL/dh_s from h_s (and, conditioned, the label): pred = h W + b (+ C[y]). Its
// parameters sit in one flat buffer (`mparams`): W (w x w, row-major [j][k]), b (w), then C
// (classes x w) if conditioned. Module i's predictions and targets are columns col..col+w-1 of
// the batch-major `pred` and `target` (a row of `cols` floats a sample).
//
// dni_predict: pred of every module, and (seed) pred / batch written into dz of its boundary group
//   (the level_push executor's dz blocks, zeroed before and pushed into after: the backward adds
//   the earlier part's own shares to the synthetic gradient). Group-major activations only.
//   Launch: grid (n_interfaces, ceil(batch * max width / THREADS)), THREADS; a thread an output.
// dni_truth: the target of every module, batch * the shares its crossing edges s -> g would have
//   sent back: sum over them of dz_g W_e (W_e: (width g x w) at params + woff). After the
//   backward (every dz final) and before the update. Launch: as dni_predict.
// dni_grads: the modules' gradients of half the mean squared error (pred - target): a thread a
//   parameter and DNI_ROWS batch rows, its partial sum into partials[chunk * stride + parameter].
//   Launch: grid (n_interfaces, chunks * ceil(max parameters of a module / THREADS)), THREADS,
//   chunks = ceil(batch / DNI_ROWS) (blockIdx.y: the chunk, then the block of parameters).
// dni_grads_sum: the partial sums added in chunk order (deterministic) over the batch, into
//   mgrads, their sum of squares added into *gradsq (the step's, which guards both updates).
//   Launch: grid (n_interfaces, ceil(max parameters of a module / THREADS)), THREADS.
// dni_errors: per module, sum (pred - target)^2 and sum target^2 into sums[2i], sums[2i + 1]
//   (written, not added). Launch: grid n_interfaces, THREADS.
// The modules' update is optim.cu's optimizer_update (Adam) over mparams, guarded like the network's.
// dni_keep (pipelined, genlab/engines/cuda/pipelined.py): after a step, the activations of each
//   group a later stage reads, and the labels, pushed into their rings of kept batches (newest
//   first; fill: every kept block takes the step's), unless the step was refused (guard).
//   Launch: grid (blocks, n_keeps + 1: the last the labels), THREADS.
#include "genlab.cuh"

struct DniInterface {  // one module (genlab/engines/cuda/decoupled.py writes an array of them)
    int slot, width, col, param, cross0, cross1;  // its group, width, first column, parameters, crossing edges
};

struct DniCrossing {  // an edge s -> g into a later part
    int slot, width, woff;  // g's slot and width, the edge's weight block
};

struct DniCut {
    const DniInterface* interfaces;
    const DniCrossing* crossings;
    const int *act_off, *labels;
    const float *act, *params;
    float *dz, *mparams, *mgrads, *pred, *target, *partials;
    double *gradsq, *sums;
    int batch, cols, classes, conditioned, seed;  // seed: dni_predict writes dz too
    int stride;  // floats between two chunks' partial sums (every module's parameters)
};

extern "C" __global__ void dni_predict(const __grid_constant__ DniCut a)
{
    const DniInterface m = a.interfaces[blockIdx.x];
    const int w = m.width, i = blockIdx.y * THREADS + threadIdx.x, b = i / w, k = i % w;
    if (b >= a.batch) return;
    const float* h = a.act + a.act_off[m.slot] + b * w;
    const float* W = a.mparams + m.param;
    float out = 0.f;
    for (int j = 0; j < w; ++j) out += h[j] * W[j * w + k];
    out += W[w * w + k];
    if (a.conditioned) out += W[w * w + w + a.labels[b] * w + k];
    a.pred[b * a.cols + m.col + k] = out;
    if (a.seed) a.dz[a.act_off[m.slot] + b * w + k] = out / (float)a.batch;
}

extern "C" __global__ void dni_truth(const __grid_constant__ DniCut a)
{
    const DniInterface m = a.interfaces[blockIdx.x];
    const int w = m.width, i = blockIdx.y * THREADS + threadIdx.x, b = i / w, k = i % w;
    if (b >= a.batch) return;
    float share = 0.f;
    for (int c = m.cross0; c < m.cross1; ++c) {
        const DniCrossing e = a.crossings[c];
        const float* D = a.dz + a.act_off[e.slot] + b * e.width;
        const float* W = a.params + e.woff;
        float one = 0.f;  // this edge's share, then added (as the serial engine adds the shares)
        for (int j = 0; j < e.width; ++j) one += D[j] * W[j * w + k];
        share += one;
    }
    a.target[b * a.cols + m.col + k] = share * (float)a.batch;
}

__device__ __forceinline__ int module_size(const DniInterface& m, const DniCut& a)
{
    return m.width * m.width + m.width + (a.conditioned ? a.classes * m.width : 0);
}

extern "C" __global__ void dni_grads(const __grid_constant__ DniCut a)
{
    const DniInterface m = a.interfaces[blockIdx.x];
    const int chunks = (a.batch + DNI_ROWS - 1) / DNI_ROWS, per = gridDim.y / chunks;
    const int chunk = blockIdx.y / per, w = m.width, p = (blockIdx.y % per) * THREADS + threadIdx.x;
    if (p >= module_size(m, a)) return;
    const int k = p % w, row = p / w;  // W[row][k] for row < w, then b[k], then C[row - w - 1][k]
    const float* P = a.pred + m.col + k;
    const float* T = a.target + m.col + k;
    const float* h = a.act + a.act_off[m.slot] + row;
    const int label = row - w - 1, b1 = min(a.batch, (chunk + 1) * DNI_ROWS);
    float g = 0.f;
    for (int b = chunk * DNI_ROWS; b < b1; ++b) {
        const float error = P[b * a.cols] - T[b * a.cols];
        if (row < w) g += h[b * w] * error;
        else if (row == w) g += error;
        else if (a.labels[b] == label) g += error;
    }
    a.partials[(size_t)chunk * a.stride + m.param + p] = g;
}

extern "C" __global__ void dni_grads_sum(const __grid_constant__ DniCut a)
{
    __shared__ double scratch[THREADS / 32];
    const DniInterface m = a.interfaces[blockIdx.x];
    const int p = blockIdx.y * THREADS + threadIdx.x, chunks = (a.batch + DNI_ROWS - 1) / DNI_ROWS;
    float g = 0.f;
    if (p < module_size(m, a)) {
        for (int c = 0; c < chunks; ++c) g += a.partials[(size_t)c * a.stride + m.param + p];
        g /= (float)a.batch;
        a.mgrads[m.param + p] = g;
    }
    const double total = block_sum((double)g * g, scratch);
    if (threadIdx.x == 0) atomicAdd(a.gradsq, total);
}

extern "C" __global__ void dni_errors(const __grid_constant__ DniCut a)
{
    __shared__ double scratch[THREADS / 32];
    const DniInterface m = a.interfaces[blockIdx.x];
    double miss = 0.0, truth = 0.0;
    for (int i = threadIdx.x; i < a.batch * m.width; i += THREADS) {
        const int at = (i / m.width) * a.cols + m.col + i % m.width;
        const double t = a.target[at], d = (double)a.pred[at] - t;
        miss += d * d;
        truth += t * t;
    }
    miss = block_sum(miss, scratch);
    truth = block_sum(truth, scratch);
    if (threadIdx.x == 0) {
        a.sums[2 * blockIdx.x] = miss;
        a.sums[2 * blockIdx.x + 1] = truth;
    }
}

struct DniKeep {  // a group later stages read: its live block, its first kept block, width, how many kept
    int live, kept, width, depth;  // offsets in act; kept block d at kept + d * width * stride
};

extern "C" __global__ void dni_keep(const DniKeep* keeps, int n, float* act, const int* labels, int* ring,
                                    int label_depth, int stride, int rows, int fill, const double* guard)
{
    if (!finite_step(guard)) return;
    const bool lab = blockIdx.y == n;
    const int w = lab ? 1 : keeps[blockIdx.y].width, depth = lab ? label_depth : keeps[blockIdx.y].depth;
    const int step = w * stride;  // between kept blocks
    for (int i = blockIdx.x * THREADS + threadIdx.x; i < rows * w; i += gridDim.x * THREADS) {
        if (lab) {
            const int now = labels[i];
            for (int d = depth - 1; d > 0; --d) ring[d * stride + i] = fill ? now : ring[(d - 1) * stride + i];
            ring[i] = now;
        } else {
            const DniKeep k = keeps[blockIdx.y];
            const float now = act[k.live + i];
            float* kept = act + k.kept + i;
            for (int d = depth - 1; d > 0; --d) kept[d * step] = fill ? now : kept[(d - 1) * step];
            kept[0] = now;
        }
    }
}
