// backward.cu: the backward pass, pull (each group gathers from its consumers) or push (each
// group scatters into its sources).
//
// backward_tile: for one hidden group s, dL/dh_s = sum over out-edges s->d of dz_d W_e (pull:
//   the consumers sit on deeper levels and are done), then dz_s = dL/dh_s * (h_s > 0), over a
//   TILE x TILE tile (batch rows b0.., neurons k0..kend-1, `chunk` <= TILE of them); finish_tile writes it and accumulates the
//   group's statistics of dL/dh: stats[3s] += sum, stats[3s+1] += sum of squares,
//   stats[3s+2] += sum of h * dL/dh. backward_level: task (slot, k0) of one level.
//   Launch: grid (n_tasks, ceil(batch / TILE)), THREADS.
// backward_push / backward_finish (the push variant, dz zeroed first): for a group d of one
//   level whose dz is final, task (d, j0) adds dz_d[:, j0..] W_e[j0.., :] into dL/dh of every
//   hidden source (atomicAdd into its dz block: the dz tile is loaded once for all in-edges);
//   once every consumer of s has pushed, backward_finish turns the sum into dz_s in place
//   (ReLU mask and statistics, as finish_tile). Launch: as backward_level.
// weight_grad_tile: dW_e = dz_dst^T h_src (reduced over the batch), task (edge, j0, k0), written
//   into `grads` at the weight block's offset; wstats[dst] += sum of squares (for the
//   weight-gradient norm), and the same into *gradsq (the whole gradient's, which guards the
//   update). weight_grad: launch grid n_tasks, THREADS.
// bias_grad_tile: db_s = sum over the batch of dz_s, task (slot, j0): TILE neurons, the batch
//   split over THREADS / TILE row groups; wstats[s] and *gradsq += its sum of squares.
//   bias_grad: launch grid n_tasks, THREADS.
#ifndef GENLAB_BACKWARD_CU  // dataflow.cu includes this file too
#define GENLAB_BACKWARD_CU
#include "genlab.cuh"
#include "products.cuh"

__device__ __forceinline__ void finish_tile(
    int s, int k0, int kend, int b0, const float acc[2][2], const int* __restrict__ width,
    const int* __restrict__ act_off, const float* act, float* dz, int batch, int ld, double* stats)
{
    __shared__ double scratch[THREADS / 32];
    const int w = width[s], rs = ROW(ld, w);
    double s1 = 0.0, s2 = 0.0, s3 = 0.0;
    const float* h = act + act_off[s];
    float* dzs = dz + act_off[s];
    for (int a = 0; a < 2; ++a)
        for (int c = 0; c < 2; ++c) {
            const int b = b0 + acc_row(a), k = k0 + acc_col(c);
            if (b < batch && k < kend) {
                mask_and_count(acc[a][c], __ldcg(h + b * rs + k), dzs + b * rs + k, s1, s2, s3);
            }
        }
    add_group_stats(stats, s, s1, s2, s3, scratch);
}

__device__ __forceinline__ void backward_tile(
    int s, int k0, int b0, const int* __restrict__ width, const int* __restrict__ act_off,
    const int* __restrict__ out_ptr, const int* __restrict__ out_dst, const int* __restrict__ out_woff,
    const float* params, const float* act, float* dz, int batch, int ld, double* stats, int chunk)
{
    __shared__ float ds[TILE][TILE + TPAD];  // [batch row][j] of dz_d
    __shared__ float wt[TILE][TILE + TPAD];  // [k][j] = W_e[j][k]
    const int w = width[s], kend = min(w, k0 + chunk);  // the task's neurons: k0..kend-1
    float acc[2][2] = {{0.f, 0.f}, {0.f, 0.f}};

    for (int e = out_ptr[s]; e < out_ptr[s + 1]; ++e) {
        const int d = out_dst[e], wd = width[d], rd = ROW(ld, wd);
        const float* D = dz + act_off[d];
        const float* W = params + out_woff[e];  // (wd x w)
        for (int j0 = 0; j0 < wd; j0 += TILE) {
            for (int i = threadIdx.x; i < TILE * TILE; i += THREADS) {
                const int r = i / TILE, c = i % TILE;
                ds[r][c] = (b0 + r < batch && j0 + c < wd) ? __ldcg(D + (b0 + r) * rd + j0 + c) : 0.f;
                wt[c][r] = (j0 + r < wd && k0 + c < kend) ? W[(j0 + r) * w + k0 + c] : 0.f;
            }
            __syncthreads();
            tile_product(acc, [&](int r, int j) { return ds[r][j]; }, [&](int k, int j) { return wt[k][j]; });
            __syncthreads();
        }
    }
    finish_tile(s, k0, kend, b0, acc, width, act_off, act, dz, batch, ld, stats);
}

extern "C" __global__ void backward_level(const Net n, const int* __restrict__ tasks, int batch, int ld, int chunk)
{
    backward_tile(tasks[2 * blockIdx.x], tasks[2 * blockIdx.x + 1], blockIdx.y * TILE, n.width, n.act_off, n.out_ptr,
                  n.out_dst, n.out_woff, n.params, n.act, n.dz, batch, ld, n.stats, chunk);
}

// The pushed backward's bodies take their arrays as restrict parameters, as backward_tile does: nvcc
// reads a struct's members as pointers that any store may alias, so a kernel that used n.X directly
// reloads its topology after every atomicAdd (W1's level_push step ran 1-2% slower, round10). Read
// through __ldg instead, the push ran 4-7% behind the base: its inline asm keeps nvcc from folding the
// unrolled tile loads' offsets (round11's variants).
__device__ __forceinline__ void push_tile(
    int d, int j0, int b0, const int* __restrict__ width, const int* __restrict__ act_off,
    const int* __restrict__ in_ptr, const int* __restrict__ in_src, const int* __restrict__ in_woff,
    const int* __restrict__ hidden, const float* __restrict__ params, float* __restrict__ dz, int batch, int ld)
{
    __shared__ float ds[TILE][TILE + TPAD];  // [batch row][j] of dz_d, loaded once for every in-edge
    __shared__ float ws[TILE][TILE + TPAD];  // [j][k] = W_e[j0 + j][k0 + k]
    const int wd = width[d], rd = ROW(ld, wd);
    const float* D = dz + act_off[d];
    for (int i = threadIdx.x; i < TILE * TILE; i += THREADS) {
        const int r = i / TILE, c = i % TILE;
        ds[r][c] = (b0 + r < batch && j0 + c < wd) ? __ldcg(D + (b0 + r) * rd + j0 + c) : 0.f;
    }
    for (int e = in_ptr[d]; e < in_ptr[d + 1]; ++e) {
        const int src = in_src[e];
        if (!hidden[src]) continue;
        const int w = width[src], rs = ROW(ld, w);
        const float* W = params + in_woff[e];  // (wd x w)
        float* H = dz + act_off[src];
        for (int k0 = 0; k0 < w; k0 += TILE) {
            for (int i = threadIdx.x; i < TILE * TILE; i += THREADS) {
                const int r = i / TILE, c = i % TILE;
                ws[r][c] = (j0 + r < wd && k0 + c < w) ? W[(j0 + r) * w + k0 + c] : 0.f;
            }
            __syncthreads();
            float acc[2][2] = {{0.f, 0.f}, {0.f, 0.f}};
            tile_product(acc, [&](int r, int j) { return ds[r][j]; }, [&](int k, int j) { return ws[j][k]; });
            __syncthreads();
            for (int a = 0; a < 2; ++a)
                for (int c = 0; c < 2; ++c) {
                    const int b = b0 + acc_row(a), k = k0 + acc_col(c);
                    if (b < batch && k < w) atomicAdd(H + b * rs + k, acc[a][c]);
                }
        }
    }
}

extern "C" __global__ void backward_push(const Net n, const int* __restrict__ tasks, int batch, int ld)
{
    push_tile(tasks[2 * blockIdx.x], tasks[2 * blockIdx.x + 1], blockIdx.y * TILE, n.width, n.act_off, n.in_ptr,
              n.in_src, n.in_woff, n.hidden, n.params, n.dz, batch, ld);
}

__device__ __forceinline__ void finish_loaded(
    int s, int k0, int b0, const int* __restrict__ width, const int* __restrict__ act_off,
    const float* __restrict__ act, float* __restrict__ dz, int batch, int ld, double* __restrict__ stats)
{
    const int w = width[s], rs = ROW(ld, w);
    const float* G = dz + act_off[s];
    float acc[2][2];
    for (int a = 0; a < 2; ++a)
        for (int c = 0; c < 2; ++c) {
            const int b = b0 + acc_row(a), k = k0 + acc_col(c);  // where finish_tile reads acc[a][c]
            acc[a][c] = (b < batch && k < w) ? __ldcg(G + b * rs + k) : 0.f;
        }
    finish_tile(s, k0, min(w, k0 + TILE), b0, acc, width, act_off, act, dz, batch, ld, stats);
}

extern "C" __global__ void backward_finish(const Net n, const int* __restrict__ tasks, int batch, int ld)
{
    finish_loaded(tasks[2 * blockIdx.x], tasks[2 * blockIdx.x + 1], blockIdx.y * TILE, n.width, n.act_off, n.act,
                  n.dz, batch, ld, n.stats);
}

__device__ __forceinline__ void weight_grad_tile(
    int e, int j0, int k0, const int* __restrict__ in_src, const int* __restrict__ in_dst,
    const int* __restrict__ in_woff, const int* __restrict__ width, const int* __restrict__ act_off,
    const float* act, const float* dz, float* grads, int batch, int ld, double* wstats, double* gradsq)
{
    __shared__ float ds[TILE][TILE + TPAD];  // [batch row][j] of dz_dst
    __shared__ float hs[TILE][TILE + TPAD];  // [batch row][k] of h_src
    __shared__ double scratch[THREADS / 32];
    const int src = in_src[e], dst = in_dst[e], ws_ = width[src], wd = width[dst];
    const int rs = ROW(ld, ws_), rd = ROW(ld, wd);
    const float* D = dz + act_off[dst];
    const float* H = act + act_off[src];
    float acc[2][2] = {{0.f, 0.f}, {0.f, 0.f}};
    for (int b0 = 0; b0 < batch; b0 += TILE) {
        for (int i = threadIdx.x; i < TILE * TILE; i += THREADS) {
            const int r = i / TILE, c = i % TILE, b = b0 + r;
            ds[r][c] = (b < batch && j0 + c < wd) ? __ldcg(D + b * rd + j0 + c) : 0.f;
            hs[r][c] = (b < batch && k0 + c < ws_) ? __ldcg(H + b * rs + k0 + c) : 0.f;
        }
        __syncthreads();
        tile_product(acc, [&](int j, int r) { return ds[r][j]; }, [&](int k, int r) { return hs[r][k]; });
        __syncthreads();
    }
    double sq = 0.0;
    for (int a = 0; a < 2; ++a)
        for (int c = 0; c < 2; ++c) {
            const int j = j0 + acc_row(a), k = k0 + acc_col(c);
            if (j < wd && k < ws_) {
                grads[in_woff[e] + j * ws_ + k] = acc[a][c];
                sq += (double)acc[a][c] * acc[a][c];
            }
        }
    sq = block_sum(sq, scratch);
    if (threadIdx.x == 0) { atomicAdd(wstats + dst, sq); atomicAdd(gradsq, sq); }
}

extern "C" __global__ void weight_grad(const Net n, const int* __restrict__ tasks, int batch, int ld,
                                       double* __restrict__ gradsq)
{
    const int* t = tasks + 3 * blockIdx.x;
    weight_grad_tile(t[0], t[1], t[2], n.in_src, n.in_dst, n.in_woff, n.width, n.act_off, n.act, n.dz, n.grads, batch,
                     ld, n.wstats, gradsq);
}

__device__ __forceinline__ void bias_grad_tile(
    int s, int j0, const int* __restrict__ width, const int* __restrict__ act_off, const int* __restrict__ bias_off,
    const float* dz, float* grads, int batch, int ld, double* wstats, double* gradsq)
{
    __shared__ float part[THREADS / TILE][TILE];
    __shared__ double scratch[THREADS / 32];
    const int w = width[s], rs = ROW(ld, w);
    const int c = threadIdx.x % TILE, r = threadIdx.x / TILE, j = j0 + c;
    const float* D = dz + act_off[s];
    float sum = 0.f;
    if (j < w)
        for (int b = r; b < batch; b += THREADS / TILE) sum += __ldcg(D + b * rs + j);
    part[r][c] = sum;
    __syncthreads();
    double sq = 0.0;
    if (r == 0 && j < w) {
        float total = 0.f;
        for (int q = 0; q < THREADS / TILE; ++q) total += part[q][c];
        grads[bias_off[s] + j] = total;
        sq = (double)total * total;
    }
    sq = block_sum(sq, scratch);
    if (threadIdx.x == 0) { atomicAdd(wstats + s, sq); atomicAdd(gradsq, sq); }
}

extern "C" __global__ void bias_grad(const Net n, const int* __restrict__ tasks, int batch, int ld,
                                     double* __restrict__ gradsq)
{
    bias_grad_tile(tasks[2 * blockIdx.x], tasks[2 * blockIdx.x + 1], n.width, n.act_off, n.bias_off, n.dz, n.grads,
                   batch, ld, n.wstats, gradsq);
}

// activation_range: per-neuron min and max of h over the batch (for pruning constant groups),
// written at col_off[s] + j, and folded into the running range since the last growth check
// (run_lo, run_hi). Launch: grid n_tasks, THREADS; task t is (slot, j0) as in bias_grad.
extern "C" __global__ void activation_range(const Net n, const int* __restrict__ tasks, int batch, int ld)
{
    __shared__ float lo[THREADS / TILE][TILE], hi[THREADS / TILE][TILE];
    const int s = tasks[2 * blockIdx.x], j0 = tasks[2 * blockIdx.x + 1], w = n.width[s], rs = ROW(ld, w);
    const int c = threadIdx.x % TILE, r = threadIdx.x / TILE, j = j0 + c;
    const float* H = n.act + n.act_off[s];
    float mn = INFINITY, mx = -INFINITY;
    if (j < w)
        for (int b = r; b < batch; b += THREADS / TILE) {
            const float v = H[b * rs + j];
            mn = fminf(mn, v); mx = fmaxf(mx, v);
        }
    lo[r][c] = mn; hi[r][c] = mx;
    __syncthreads();
    if (r == 0 && j < w) {
        for (int q = 1; q < THREADS / TILE; ++q) { mn = fminf(mn, lo[q][c]); mx = fmaxf(mx, hi[q][c]); }
        const int c0 = n.col_off[s] + j;
        n.range_min[c0] = mn;
        n.range_max[c0] = mx;
        n.run_lo[c0] = fminf(n.run_lo[c0], mn);
        n.run_hi[c0] = fmaxf(n.run_hi[c0], mx);
    }
}
#endif  // GENLAB_BACKWARD_CU
