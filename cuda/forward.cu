// forward.cu: the forward pass (pull: each group gathers its inputs).
//
// forward_tile: h_s = act(b_s + sum_e h_src(e) W_e^T) over one TILE x TILE tile (the product in the
// build's precision, products.cuh), where act is
// ReLU for hidden groups and the identity for the output group (logits). Task (slot, j0, e0, e1):
// batch rows b0.., neurons j0.., summed over the in-edges e0..e1-1 and over each source width in
// TILE-wide chunks staged in shared memory. Split-K: the linear output group's in-edges may be
// split over several tasks, `split` in-edges each (a wide DAG, or a network grown wide, feeds it
// from many groups); part q (the task's first in-edge, counted from the group's first, / split)
// writes its sums into its own block of `parts` (`cap` rows of the output's width a part; the
// part holding the first in-edge adds the bias), and loss.cu's sum_output_parts adds the parts
// into the logits in part order, so that the logits do not depend on which part finished first.
// Called by the level executor (forward_level) and by the dataflow executor (dataflow.cu).
// A task covers `chunk` <= TILE neurons (the task lists' chunk: TILE, or CH for the row executor).
// forward_level: one topological level. Launch: grid (n_tasks, ceil(batch / TILE)), THREADS.
// A split output's parts are added into its logits by loss.cu's sum_parts (or the loss item).
#ifndef GENLAB_FORWARD_CU  // dataflow.cu includes this file too
#define GENLAB_FORWARD_CU
#include "genlab.cuh"
#include "products.cuh"

__device__ __forceinline__ void forward_tile(
    const int* __restrict__ task, int b0, const int* __restrict__ width, const int* __restrict__ act_off,
    const int* __restrict__ bias_off, const int* __restrict__ in_ptr, const int* __restrict__ in_src,
    const int* __restrict__ in_woff, const float* params, float* act, int batch, int ld, int output_slot, int chunk,
    int split, float* __restrict__ parts, int cap)
{
    __shared__ float xs[TILE][TILE + TPAD];  // [batch row][k]
    __shared__ float ws[TILE][TILE + TPAD];  // [neuron j][k]
    const int s = task[0], j0 = task[1], e0 = task[2], e1 = task[3];
    const bool part = (s == output_slot) && (e0 != in_ptr[s] || e1 != in_ptr[s + 1]);
    const int w = width[s], jend = min(w, j0 + chunk);  // the task's neurons: j0..jend-1
    float acc[2][2] = {{0.f, 0.f}, {0.f, 0.f}};

    for (int e = e0; e < e1; ++e) {
        const int src = in_src[e], ws_ = width[src], rs = ROW(ld, ws_);
        const float* x = act + act_off[src];
        const float* W = params + in_woff[e];
        for (int k0 = 0; k0 < ws_; k0 += TILE) {
            for (int i = threadIdx.x; i < TILE * TILE; i += THREADS) {
                const int r = i / TILE, c = i % TILE, k = k0 + c;  // c fastest: coalesced along k
                xs[r][c] = (b0 + r < batch && k < ws_) ? __ldcg(x + (b0 + r) * rs + k) : 0.f;
                ws[r][c] = (j0 + r < jend && k < ws_) ? W[(j0 + r) * ws_ + k] : 0.f;
            }
            __syncthreads();
            tile_product(acc, [&](int r, int k) { return xs[r][k]; }, [&](int j, int k) { return ws[j][k]; });
            __syncthreads();
        }
    }
    float* h = act + act_off[s];
    float* mine = part ? parts + (size_t)((e0 - in_ptr[s]) / split) * cap * w : nullptr;  // this part's block
    const int rs = ROW(ld, w);
    for (int a = 0; a < 2; ++a)
        for (int c = 0; c < 2; ++c) {
            const int b = b0 + acc_row(a), j = j0 + acc_col(c);
            if (b < batch && j < jend) {
                const float z = acc[a][c] + (e0 == in_ptr[s] ? params[bias_off[s] + j] : 0.f);
                if (part) mine[b * w + j] = z;
                else h[b * rs + j] = (s == output_slot) ? z : fmaxf(z, 0.f);
            }
        }
}

extern "C" __global__ void forward_level(const Net n, const int* __restrict__ tasks, int batch, int ld,
                                         int output_slot, int chunk, int split, float* __restrict__ parts, int cap)
{
    forward_tile(tasks + 4 * blockIdx.x, blockIdx.y * TILE, n.width, n.act_off, n.bias_off, n.in_ptr, n.in_src,
                 n.in_woff, n.params, n.act, batch, ld, output_slot, chunk, split, parts, cap);
}
#endif  // GENLAB_FORWARD_CU
