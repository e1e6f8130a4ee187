// wide.cu: wide groups in the level executor (groups of WIDE neurons or more, cuda.py): the same
// forward, pull backward and weight gradients as forward.cu and backward.cu, over 128 x 128
// output tiles instead of 32 x 32, for groups where a step is a few large matrix products
// (a chain of 4096-wide groups is three GEMMs a layer).
//
// A block of 256 threads owns a WT x WT tile of C = A B^T (A: tile rows x k, B: tile columns x k),
// each thread 8 x 8 outputs (rows ty*4.. and 64+ty*4.., columns tx*4.. and 64+tx*4..: float4
// shared-memory loads without bank conflicts). k advances WK at a time through two shared-memory
// stages: the next stage's global loads are in flight (in registers) while the current one is
// multiplied, then stored, one barrier a stage. An operand is read as float4s where its rows are
// 16-byte aligned (widths a multiple of 4), else element by element; out-of-range elements are 0.
// Plain loads through L1 are safe: these kernels run as launches of their own, after the writes
// they read.
//
// forward_wide: task (slot, j0, e0, e1) as forward_tile (the task covers every in-edge: no
//   split-K); C[b][j] = sum over in-edges of h_src[b][:] . W_e[j][:], then bias and ReLU (the
//   identity for the output group). Launch: grid (n_tasks, ceil(batch / WT)), THREADS.
// backward_wide: task (slot, k0) as backward_tile: C[b][k] = sum over out-edges s->d of
//   dz_d[b][:] . W_e[:][k], then the ReLU mask and the group's statistics (finish_tile's).
//   Launch: as forward_wide.
// weight_wide: task (edge, j0, k0) as weight_grad_tile: dW_e[j][k] = sum over the batch of
//   dz_dst[b][j] h_src[b][k]; wstats[dst] and *gradsq += its sum of squares. Launch: grid n_tasks.
#include "genlab.cuh"

#define WK 16   // k per shared-memory stage
#define WS (WT + 4)  // row stride of a stage (float4-aligned)
#ifndef WIDE_BLOCKS
#define WIDE_BLOCKS 2  // resident blocks per SM the register budget is cut for
#endif

struct WideStage {
    float a[WK][WS];  // [k][tile row]
    float b[WK][WS];  // [k][tile column]
};

// One operand's part of a stage: tile row r (< rows), k (< K). kc: contiguous along k (element at
// p[r * ld + k]), else contiguous along the rows (at p[k * ld + r]). Each thread moves 2 float4s:
// kc: rows t / 4 and 64 + t / 4 at k (t % 4) * 4; else k t / 32 and 8 + t / 32 at row (t % 32) * 4.
template <bool kc>
struct Operand {
    const float* q;  // this thread's first element at k = 0
    size_t step;     // from its first float4 to its second
    int K, lim0, lim1, kt;  // kc: elements left in rows 0/1 (0 or 4), its k; else elements left in its row, its k
    bool vec;
    float4 v[2];

    __device__ __forceinline__ Operand(const float* p, int ld, int rows, int K_) : K(K_) {
        const int t = threadIdx.x;
        vec = ((reinterpret_cast<size_t>(p) & 15) == 0) && (ld & 3) == 0;
        if (kc) {
            const int r = t >> 2;
            kt = (t & 3) * 4;
            q = p + (size_t)r * ld + kt;
            step = (size_t)64 * ld;
            lim0 = r < rows ? 4 : 0;
            lim1 = r + 64 < rows ? 4 : 0;
        } else {
            const int r = (t & 31) * 4;
            kt = t >> 5;
            q = p + (size_t)kt * ld + r;
            step = (size_t)8 * ld;
            lim0 = lim1 = max(0, min(4, rows - r));
        }
    }

    __device__ __forceinline__ void fetch(int k0) {
#pragma unroll
        for (int i = 0; i < 2; ++i) {
            // n: how many of the 4 consecutive elements exist
            const int n = kc ? min(i ? lim1 : lim0, K - k0 - kt) : (k0 + kt + 8 * i < K ? lim0 : 0);
            const float* a = (kc ? q + k0 : q + (size_t)k0 * (step >> 3)) + (i ? step : 0);
            if (vec && n >= 4) {
                v[i] = *reinterpret_cast<const float4*>(a);
            } else {
                v[i].x = n > 0 ? a[0] : 0.f;
                v[i].y = n > 1 ? a[1] : 0.f;
                v[i].z = n > 2 ? a[2] : 0.f;
                v[i].w = n > 3 ? a[3] : 0.f;
            }
        }
    }

    __device__ __forceinline__ void store(float (*s)[WS]) const {
        const int t = threadIdx.x;
#pragma unroll
        for (int i = 0; i < 2; ++i) {
            if (kc) {
                const int r = (t >> 2) + 64 * i;
                s[kt][r] = v[i].x; s[kt + 1][r] = v[i].y; s[kt + 2][r] = v[i].z; s[kt + 3][r] = v[i].w;
            } else {
                *reinterpret_cast<float4*>(&s[kt + 8 * i][(t & 31) * 4]) = v[i];
            }
        }
    }
};

// acc += A B^T over one segment of k (0..K-1 of both operands). `stage` alternates between the two
// buffers across calls (the barrier at the end of each step keeps writes away from reads).
template <bool akc, bool bkc>
__device__ __forceinline__ void wide_segment(float acc[8][8], Operand<akc>& A, Operand<bkc>& B, WideStage* st,
                                             int& stage)
{
    const int tx = threadIdx.x % 16, ty = threadIdx.x / 16;
    const int steps = (A.K + WK - 1) / WK;
    A.fetch(0); B.fetch(0);
    A.store(st[stage].a); B.store(st[stage].b);
    __syncthreads();
    for (int t = 0; t < steps; ++t) {
        const bool more = t + 1 < steps;
        if (more) { A.fetch((t + 1) * WK); B.fetch((t + 1) * WK); }
        const WideStage& s = st[stage];
#pragma unroll
        for (int k = 0; k < WK; ++k) {
            const float4 a0 = *reinterpret_cast<const float4*>(&s.a[k][ty * 4]);
            const float4 a1 = *reinterpret_cast<const float4*>(&s.a[k][64 + ty * 4]);
            const float4 b0 = *reinterpret_cast<const float4*>(&s.b[k][tx * 4]);
            const float4 b1 = *reinterpret_cast<const float4*>(&s.b[k][64 + tx * 4]);
            const float a[8] = {a0.x, a0.y, a0.z, a0.w, a1.x, a1.y, a1.z, a1.w};
            const float b[8] = {b0.x, b0.y, b0.z, b0.w, b1.x, b1.y, b1.z, b1.w};
#pragma unroll
            for (int i = 0; i < 8; ++i)
#pragma unroll
                for (int j = 0; j < 8; ++j) acc[i][j] = fmaf(a[i], b[j], acc[i][j]);
        }
        if (more) { A.store(st[stage ^ 1].a); B.store(st[stage ^ 1].b); }
        __syncthreads();
        stage ^= 1;
    }
}

// The tile row (or column) of a thread's i-th accumulator row (or column).
__device__ __forceinline__ int wide_row(int i, int t16) { return (i < 4 ? 0 : 64) + t16 * 4 + (i & 3); }

extern "C" __global__ void __launch_bounds__(THREADS, WIDE_BLOCKS) forward_wide(
    const int* __restrict__ tasks, const int* __restrict__ width, const int* __restrict__ act_off,
    const int* __restrict__ bias_off, const int* __restrict__ in_ptr, const int* __restrict__ in_src,
    const int* __restrict__ in_woff, const float* __restrict__ params, float* __restrict__ act,
    int batch, int ld, int output_slot)
{
    __shared__ __align__(16) WideStage st[2];
    const int* task = tasks + 4 * blockIdx.x;
    const int s = task[0], j0 = task[1], e0 = task[2], e1 = task[3], b0 = blockIdx.y * WT;
    const int w = width[s];
    float acc[8][8] = {};
    int stage = 0;
    for (int e = e0; e < e1; ++e) {
        const int src = in_src[e], ws_ = width[src], rs = ROW(ld, ws_);
        Operand<true> A(act + act_off[src] + (size_t)b0 * rs, rs, batch - b0, ws_);
        Operand<true> B(params + in_woff[e] + (size_t)j0 * ws_, ws_, w - j0, ws_);
        wide_segment(acc, A, B, st, stage);
    }
    const int tx = threadIdx.x % 16, ty = threadIdx.x / 16, rs = ROW(ld, w);
    float* h = act + act_off[s];
    const bool hidden = s != output_slot;
#pragma unroll
    for (int i = 0; i < 8; ++i) {
        const int b = b0 + wide_row(i, ty);
        if (b >= batch) continue;
#pragma unroll
        for (int c = 0; c < 8; ++c) {
            const int j = j0 + wide_row(c, tx);
            if (j < w) {
                const float z = acc[i][c] + params[bias_off[s] + j];
                h[(size_t)b * rs + j] = hidden ? fmaxf(z, 0.f) : z;
            }
        }
    }
}

extern "C" __global__ void __launch_bounds__(THREADS, WIDE_BLOCKS) backward_wide(
    const int* __restrict__ tasks, const int* __restrict__ width, const int* __restrict__ act_off,
    const int* __restrict__ out_ptr, const int* __restrict__ out_dst, const int* __restrict__ out_woff,
    const float* __restrict__ params, const float* __restrict__ act, float* __restrict__ dz,
    int batch, int ld, double* __restrict__ stats)
{
    __shared__ __align__(16) WideStage st[2];
    __shared__ double scratch[THREADS / 32];
    const int s = tasks[2 * blockIdx.x], k0 = tasks[2 * blockIdx.x + 1], b0 = blockIdx.y * WT;
    const int w = width[s];
    float acc[8][8] = {};
    int stage = 0;
    for (int e = out_ptr[s]; e < out_ptr[s + 1]; ++e) {
        const int d = out_dst[e], wd = width[d], rd = ROW(ld, wd);
        Operand<true> A(dz + act_off[d] + (size_t)b0 * rd, rd, batch - b0, wd);
        Operand<false> B(params + out_woff[e] + k0, w, w - k0, wd);  // W_e is (wd x w): element (k, j) at j * w + k
        wide_segment(acc, A, B, st, stage);
    }
    const int tx = threadIdx.x % 16, ty = threadIdx.x / 16, rs = ROW(ld, w);
    const float* h = act + act_off[s];
    float* dzs = dz + act_off[s];
    double s1 = 0.0, s2 = 0.0, s3 = 0.0;
#pragma unroll
    for (int i = 0; i < 8; ++i) {
        const int b = b0 + wide_row(i, ty);
        if (b >= batch) continue;
#pragma unroll
        for (int c = 0; c < 8; ++c) {
            const int k = k0 + wide_row(c, tx);
            if (k < w) {
                const float g = acc[i][c], hv = h[(size_t)b * rs + k];
                dzs[(size_t)b * rs + k] = hv > 0.f ? g : 0.f;
                s1 += g; s2 += (double)g * g; s3 += (double)hv * g;
            }
        }
    }
    s1 = block_sum(s1, scratch);
    s2 = block_sum(s2, scratch);
    s3 = block_sum(s3, scratch);
    if (threadIdx.x == 0) {
        atomicAdd(stats + 3 * s, s1);
        atomicAdd(stats + 3 * s + 1, s2);
        atomicAdd(stats + 3 * s + 2, s3);
    }
}

extern "C" __global__ void __launch_bounds__(THREADS, WIDE_BLOCKS) weight_wide(
    const int* __restrict__ tasks, const int* __restrict__ in_src, const int* __restrict__ in_dst,
    const int* __restrict__ in_woff, const int* __restrict__ width, const int* __restrict__ act_off,
    const float* __restrict__ act, const float* __restrict__ dz, float* __restrict__ grads,
    int batch, int ld, double* __restrict__ wstats, double* __restrict__ gradsq)
{
    __shared__ __align__(16) WideStage st[2];
    __shared__ double scratch[THREADS / 32];
    const int* t = tasks + 3 * blockIdx.x;
    const int e = t[0], j0 = t[1], k0 = t[2];
    const int src = in_src[e], dst = in_dst[e], ws_ = width[src], wd = width[dst];
    const int rs = ROW(ld, ws_), rd = ROW(ld, wd);
    float acc[8][8] = {};
    int stage = 0;
    Operand<false> A(dz + act_off[dst] + j0, rd, wd - j0, batch);  // element (j, b) at b * rd + j
    Operand<false> B(act + act_off[src] + k0, rs, ws_ - k0, batch);
    wide_segment(acc, A, B, st, stage);
    const int tx = threadIdx.x % 16, ty = threadIdx.x / 16;
    float* G = grads + in_woff[e];
    double sq = 0.0;
#pragma unroll
    for (int i = 0; i < 8; ++i) {
        const int j = j0 + wide_row(i, ty);
        if (j >= wd) continue;
#pragma unroll
        for (int c = 0; c < 8; ++c) {
            const int k = k0 + wide_row(c, tx);
            if (k < ws_) {
                G[(size_t)j * ws_ + k] = acc[i][c];
                sq += (double)acc[i][c] * acc[i][c];
            }
        }
    }
    sq = block_sum(sq, scratch);
    if (threadIdx.x == 0) { atomicAdd(wstats + dst, sq); atomicAdd(gradsq, sq); }
}
