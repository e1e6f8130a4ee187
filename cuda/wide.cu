// wide.cu: wider groups in the level executor (cuda.py's tiers: groups of MID to WIDE - 1 neurons
// on 64 x 64 output tiles, WIDE or more on 128 x 128): the same forward, pull backward and weight
// gradients as forward.cu and backward.cu, for groups where a step is a few matrix products (a
// chain of 4096-wide groups is three GEMMs a layer) instead of many small tiles.
//
// A block of 256 threads (16 x 16) owns a T x T tile of C = A B^T (A: tile rows x k, B: tile
// columns x k), each thread R x R outputs, R = T / 16 (rows ty*4.. and, for R = 8, 64+ty*4..; the
// same for columns with tx: float4 shared-memory loads without bank conflicts). k advances WK at
// a time through two shared-memory stages: the next stage's global loads are in flight (in
// registers) while the current one is multiplied, then stored, one barrier a stage. An operand is
// read as float4s where its rows are 16-byte aligned (widths a multiple of 4), else element by
// element; out-of-range elements are 0. Plain loads through L1 are safe: these kernels run as
// launches of their own, after the writes they read.
//
// forward_<tier>: task (slot, j0, e0, e1) as forward_tile (the task covers every in-edge: no
//   split-K); C[b][j] = sum over in-edges of h_src[b][:] . W_e[j][:], then bias and ReLU (the
//   identity for the output group). Launch: grid (n_tasks, ceil(batch / T)), THREADS.
// backward_<tier>: task (slot, k0) as backward_tile: C[b][k] = sum over out-edges s->d of
//   dz_d[b][:] . W_e[:][k], then the ReLU mask and the group's statistics (finish_tile's).
//   Launch: as forward.
// weight_<tier>: task (edge, j0, k0) as weight_grad_tile: dW_e[j][k] = sum over the batch of
//   dz_dst[b][j] h_src[b][k]; wstats[dst] and *gradsq += its sum of squares. Launch: grid n_tasks.
// <tier> is mid (T = MT = 64) or wide (T = WT = 128).
// With tensor cores (a build of another precision, products.cuh), the 8 warps of a block tile the
// T x T outputs 2 x 4, each warp (T / 2) x (T / 4) as fragments of 16 x 8 (out_row, out_col).
#include "genlab.cuh"
#include "products.cuh"

#define WK 16   // k per shared-memory stage
#ifndef WIDE_BLOCKS
#define WIDE_BLOCKS 2  // resident blocks per SM the register budget is cut for (128 x 128 tiles)
#endif
#ifndef MID_BLOCKS
#define MID_BLOCKS 4   // the same for 64 x 64 tiles
#endif

// a stage's row padding: 4 keeps fp32's float4 rows apart; 8 puts a fragment's 4 k x 8 rows on 32 banks
#define SPAD (TENSOR_CORES ? 8 : 4)

template <int T>
struct Stage {
    float a[WK][T + SPAD];  // [k][tile row] (rows float4-aligned)
    float b[WK][T + SPAD];  // [k][tile column]
};

// One operand's part of a stage of a T x T tile: tile row r (< rows), k (< K). kc: contiguous
// along k (element at p[r * ld + k]), else contiguous along the rows (at p[k * ld + r]). Each
// thread moves N = T / 64 float4s: kc: rows t / 4 (+ 64) at k (t % 4) * 4; else row (t % (T/4)) * 4
// at k t / (T/4) (+ 1024 / T).
template <bool kc, int T>
struct Operand {
    static constexpr int N = T / 64;
    const float* q;  // this thread's first element at k = 0
    size_t ld;
    int K, kt, lim[N];  // elements that exist from this thread's float4s (kc: 0 or 4 by row; else by row end)
    bool vec;
    float4 v[N];

    __device__ __forceinline__ Operand(const float* p, int ld_, int rows, int K_) : ld(ld_), K(K_) {
        const int t = threadIdx.x;
        vec = ((reinterpret_cast<size_t>(p) & 15) == 0) && (ld_ & 3) == 0;
        if (kc) {
            const int r = t >> 2;
            kt = (t & 3) * 4;
            q = p + (size_t)r * ld + kt;
#pragma unroll
            for (int i = 0; i < N; ++i) lim[i] = r + 64 * i < rows ? 4 : 0;
        } else {
            const int r = (t % (T / 4)) * 4;
            kt = t / (T / 4);
            q = p + (size_t)kt * ld + r;
#pragma unroll
            for (int i = 0; i < N; ++i) lim[i] = max(0, min(4, rows - r));
        }
    }

    __device__ __forceinline__ void fetch(int k0) {
#pragma unroll
        for (int i = 0; i < N; ++i) {
            // n: how many of the 4 consecutive elements exist
            const int n = kc ? min(lim[i], K - k0 - kt) : (k0 + kt + (1024 / T) * i < K ? lim[i] : 0);
            const float* a = kc ? q + k0 + (size_t)64 * i * ld : q + (size_t)(k0 + (1024 / T) * i) * ld;
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

    __device__ __forceinline__ void store(float (*s)[T + SPAD]) const {
        const int t = threadIdx.x;
#pragma unroll
        for (int i = 0; i < N; ++i) {
            if (kc) {
                const int r = (t >> 2) + 64 * i;
                s[kt][r] = v[i].x; s[kt + 1][r] = v[i].y; s[kt + 2][r] = v[i].z; s[kt + 3][r] = v[i].w;
            } else {
                *reinterpret_cast<float4*>(&s[kt + (1024 / T) * i][(t % (T / 4)) * 4]) = v[i];
            }
        }
    }
};

// acc += A B^T over one segment of k (0..K-1 of both operands). `stage` alternates between the two
// buffers across calls (the barrier at the end of each step keeps writes away from reads).
template <int T, bool akc, bool bkc>
__device__ __forceinline__ void tile_segment(float acc[T / 16][T / 16], Operand<akc, T>& A, Operand<bkc, T>& B,
                                             Stage<T>* st, int& stage)
{
    const int steps = (A.K + WK - 1) / WK;
    A.fetch(0); B.fetch(0);
    A.store(st[stage].a); B.store(st[stage].b);
    __syncthreads();
    for (int t = 0; t < steps; ++t) {
        const bool more = t + 1 < steps;
        if (more) { A.fetch((t + 1) * WK); B.fetch((t + 1) * WK); }
        const Stage<T>& s = st[stage];
#if TENSOR_CORES
        const int w = threadIdx.x >> 5;
#pragma unroll
        for (int k0 = 0; k0 < WK; k0 += KSTEP)
            warp_product<T / 32, T / 32>(&acc[0][0], [&](int r, int k) { return s.a[k][r]; },
                                         [&](int n, int k) { return s.b[k][n]; }, (w >> 2) * (T / 2), (w & 3) * (T / 4),
                                         k0);
#else
        constexpr int R = T / 16;
        const int tx = threadIdx.x % 16, ty = threadIdx.x / 16;
#pragma unroll
        for (int k = 0; k < WK; ++k) {
            float a[R], b[R];
#pragma unroll
            for (int h = 0; h < R / 4; ++h) {
                const float4 av = *reinterpret_cast<const float4*>(&s.a[k][64 * h + ty * 4]);
                const float4 bv = *reinterpret_cast<const float4*>(&s.b[k][64 * h + tx * 4]);
                a[4 * h] = av.x; a[4 * h + 1] = av.y; a[4 * h + 2] = av.z; a[4 * h + 3] = av.w;
                b[4 * h] = bv.x; b[4 * h + 1] = bv.y; b[4 * h + 2] = bv.z; b[4 * h + 3] = bv.w;
            }
#pragma unroll
            for (int i = 0; i < R; ++i)
#pragma unroll
                for (int j = 0; j < R; ++j) acc[i][j] = fmaf(a[i], b[j], acc[i][j]);
        }
#endif
        if (more) { A.store(st[stage ^ 1].a); B.store(st[stage ^ 1].b); }
        __syncthreads();
        stage ^= 1;
    }
}

// The tile row and column of a thread's output acc[i][c] (R = T / 16). fp32: rows ty * 4.. (and,
// for R = 8, 64 + ty * 4..), columns the same with tx. Tensor cores: acc's 4 (i R + c) + e is
// element e of the warp's fragment (mi, ni) = ((i R + c) / 4 / NI, ... % NI), NI = T / 32.
template <int R>
__device__ __forceinline__ int out_row(int i, int c)
{
#if TENSOR_CORES
    const int f = (i * R + c) >> 2, e = (i * R + c) & 3, w = threadIdx.x >> 5;
    return (w >> 2) * (8 * R) + (f / (R / 2)) * 16 + ((threadIdx.x & 31) >> 2) + 8 * (e >> 1);
#else
    return (i >> 2) * 64 + (threadIdx.x / 16) * 4 + (i & 3);
#endif
}

template <int R>
__device__ __forceinline__ int out_col(int i, int c)
{
#if TENSOR_CORES
    const int f = (i * R + c) >> 2, e = (i * R + c) & 3, w = threadIdx.x >> 5;
    return (w & 3) * (4 * R) + (f % (R / 2)) * 8 + 2 * (threadIdx.x & 3) + (e & 1);
#else
    return (c >> 2) * 64 + (threadIdx.x % 16) * 4 + (c & 3);
#endif
}

// f(acc, row, column) for each of the thread's R x R outputs that lies inside the matrix: rows
// r0 + tile rows below `rows`, columns c0 + tile columns below `cols`.
template <int R, typename F>
__device__ __forceinline__ void each_output(const float (&acc)[R][R], int r0, int rows, int c0, int cols, F f)
{
#pragma unroll
    for (int i = 0; i < R; ++i)
#pragma unroll
        for (int c = 0; c < R; ++c) {
            const int r = r0 + out_row<R>(i, c), col = c0 + out_col<R>(i, c);
            if (r < rows && col < cols) f(acc[i][c], r, col);
        }
}

template <int T>
__device__ __forceinline__ void forward_big(
    const int* __restrict__ tasks, const int* __restrict__ width, const int* __restrict__ act_off,
    const int* __restrict__ bias_off, const int* __restrict__ in_ptr, const int* __restrict__ in_src,
    const int* __restrict__ in_woff, const float* __restrict__ params, float* __restrict__ act,
    int batch, int ld, int output_slot)
{
    constexpr int R = T / 16;
    __shared__ __align__(16) Stage<T> st[2];
    const int* task = tasks + 4 * blockIdx.x;
    const int s = task[0], j0 = task[1], e0 = task[2], e1 = task[3], b0 = blockIdx.y * T;
    const int w = width[s];
    float acc[R][R] = {};
    int stage = 0;
    for (int e = e0; e < e1; ++e) {
        const int src = in_src[e], ws_ = width[src], rs = ROW(ld, ws_);
        Operand<true, T> A(act + act_off[src] + (size_t)b0 * rs, rs, batch - b0, ws_);
        Operand<true, T> B(params + in_woff[e] + (size_t)j0 * ws_, ws_, w - j0, ws_);
        tile_segment<T>(acc, A, B, st, stage);
    }
    const int rs = ROW(ld, w);
    float* h = act + act_off[s];
    const float* bias = params + bias_off[s];
    const bool hidden = s != output_slot;
    each_output<R>(acc, b0, batch, j0, w, [&](float a, int b, int j) {
        const float z = a + bias[j];
        h[(size_t)b * rs + j] = hidden ? fmaxf(z, 0.f) : z;
    });
}

template <int T>
__device__ __forceinline__ void backward_big(
    const int* __restrict__ tasks, const int* __restrict__ width, const int* __restrict__ act_off,
    const int* __restrict__ out_ptr, const int* __restrict__ out_dst, const int* __restrict__ out_woff,
    const float* __restrict__ params, const float* __restrict__ act, float* __restrict__ dz,
    int batch, int ld, double* __restrict__ stats)
{
    constexpr int R = T / 16;
    __shared__ __align__(16) Stage<T> st[2];
    __shared__ double scratch[THREADS / 32];
    const int s = tasks[2 * blockIdx.x], k0 = tasks[2 * blockIdx.x + 1], b0 = blockIdx.y * T;
    const int w = width[s];
    float acc[R][R] = {};
    int stage = 0;
    for (int e = out_ptr[s]; e < out_ptr[s + 1]; ++e) {
        const int d = out_dst[e], wd = width[d], rd = ROW(ld, wd);
        Operand<true, T> A(dz + act_off[d] + (size_t)b0 * rd, rd, batch - b0, wd);
        Operand<false, T> B(params + out_woff[e] + k0, w, w - k0, wd);  // W_e is (wd x w): element (k, j) at j * w + k
        tile_segment<T>(acc, A, B, st, stage);
    }
    const int rs = ROW(ld, w);
    const float* h = act + act_off[s];
    float* dzs = dz + act_off[s];
    double s1 = 0.0, s2 = 0.0, s3 = 0.0;
    each_output<R>(acc, b0, batch, k0, w, [&](float g, int b, int k) {
        mask_and_count(g, h[(size_t)b * rs + k], dzs + (size_t)b * rs + k, s1, s2, s3);
    });
    add_group_stats(stats, s, s1, s2, s3, scratch);
}

template <int T>
__device__ __forceinline__ void weight_big(
    const int* __restrict__ tasks, const int* __restrict__ in_src, const int* __restrict__ in_dst,
    const int* __restrict__ in_woff, const int* __restrict__ width, const int* __restrict__ act_off,
    const float* __restrict__ act, const float* __restrict__ dz, float* __restrict__ grads,
    int batch, int ld, double* __restrict__ wstats, double* __restrict__ gradsq)
{
    constexpr int R = T / 16;
    __shared__ __align__(16) Stage<T> st[2];
    __shared__ double scratch[THREADS / 32];
    const int* t = tasks + 3 * blockIdx.x;
    const int e = t[0], j0 = t[1], k0 = t[2];
    const int src = in_src[e], dst = in_dst[e], ws_ = width[src], wd = width[dst];
    const int rs = ROW(ld, ws_), rd = ROW(ld, wd);
    float acc[R][R] = {};
    int stage = 0;
    Operand<false, T> A(dz + act_off[dst] + j0, rd, wd - j0, batch);  // element (j, b) at b * rd + j
    Operand<false, T> B(act + act_off[src] + k0, rs, ws_ - k0, batch);
    tile_segment<T>(acc, A, B, st, stage);
    float* G = grads + in_woff[e];
    double sq = 0.0;
    each_output<R>(acc, j0, wd, k0, ws_, [&](float a, int j, int k) {
        G[(size_t)j * ws_ + k] = a;
        sq += (double)a * a;
    });
    sq = block_sum(sq, scratch);
    if (threadIdx.x == 0) { atomicAdd(wstats + dst, sq); atomicAdd(gradsq, sq); }
}

#define FORWARD_ARGS                                                                                               \
    const int *__restrict__ tasks, const int *__restrict__ width, const int *__restrict__ act_off,                 \
        const int *__restrict__ bias_off, const int *__restrict__ in_ptr, const int *__restrict__ in_src,          \
        const int *__restrict__ in_woff, const float *__restrict__ params, float *__restrict__ act, int batch,     \
        int ld, int output_slot
#define BACKWARD_ARGS                                                                                              \
    const int *__restrict__ tasks, const int *__restrict__ width, const int *__restrict__ act_off,                 \
        const int *__restrict__ out_ptr, const int *__restrict__ out_dst, const int *__restrict__ out_woff,        \
        const float *__restrict__ params, const float *__restrict__ act, float *__restrict__ dz, int batch, int ld, \
        double *__restrict__ stats
#define WEIGHT_ARGS                                                                                                \
    const int *__restrict__ tasks, const int *__restrict__ in_src, const int *__restrict__ in_dst,                 \
        const int *__restrict__ in_woff, const int *__restrict__ width, const int *__restrict__ act_off,           \
        const float *__restrict__ act, const float *__restrict__ dz, float *__restrict__ grads, int batch, int ld,  \
        double *__restrict__ wstats, double *__restrict__ gradsq

extern "C" __global__ void __launch_bounds__(THREADS, WIDE_BLOCKS) forward_wide(FORWARD_ARGS)
{
    forward_big<WT>(tasks, width, act_off, bias_off, in_ptr, in_src, in_woff, params, act, batch, ld, output_slot);
}

extern "C" __global__ void __launch_bounds__(THREADS, MID_BLOCKS) forward_mid(FORWARD_ARGS)
{
    forward_big<MT>(tasks, width, act_off, bias_off, in_ptr, in_src, in_woff, params, act, batch, ld, output_slot);
}

extern "C" __global__ void __launch_bounds__(THREADS, WIDE_BLOCKS) backward_wide(BACKWARD_ARGS)
{
    backward_big<WT>(tasks, width, act_off, out_ptr, out_dst, out_woff, params, act, dz, batch, ld, stats);
}

extern "C" __global__ void __launch_bounds__(THREADS, MID_BLOCKS) backward_mid(BACKWARD_ARGS)
{
    backward_big<MT>(tasks, width, act_off, out_ptr, out_dst, out_woff, params, act, dz, batch, ld, stats);
}

extern "C" __global__ void __launch_bounds__(THREADS, WIDE_BLOCKS) weight_wide(WEIGHT_ARGS)
{
    weight_big<WT>(tasks, in_src, in_dst, in_woff, width, act_off, act, dz, grads, batch, ld, wstats, gradsq);
}

extern "C" __global__ void __launch_bounds__(THREADS, MID_BLOCKS) weight_mid(WEIGHT_ARGS)
{
    weight_big<MT>(tasks, in_src, in_dst, in_woff, width, act_off, act, dz, grads, batch, ld, wstats, gradsq);
}
