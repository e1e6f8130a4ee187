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
// forward_<tier>: task (slot, j0, part, parts): C[b][j] = sum over the part's in-edges (all of them
//   with one part) of h_src[b][:] . W_e[j][:], then bias and ReLU (the identity for the output
//   group). Launch: grid (n_tasks, ceil(batch / T)), THREADS.
// backward_<tier>: task (slot, k0, part, parts): C[b][k] = sum over the part's out-edges s->d of
//   dz_d[b][:] . W_e[:][k], then the ReLU mask and the group's statistics (finish_tile's).
//   Launch: as forward. Both: a tile cut into parts (split-K, executors/split.py) is finished by
//   the last of its parts' blocks, from every part's sums in `partials` (gather_parts).
// weight_<tier>: task (edge, j0, k0) as weight_grad_tile: dW_e[j][k] = sum over the batch of
//   dz_dst[b][j] h_src[b][k]; wstats[dst] and *gradsq += its sum of squares. Launch: grid n_tasks.
// <tier> is mid (T = MT = 64) or wide (T = WT = 128).
// With tensor cores (a build of another precision, products.cuh), the 8 warps of a block tile the
// T x T outputs 2 x 4, each warp (T / 2) x (T / 4) as fragments of 16 x 8 (out_row, out_col).
#include "genlab.cuh"
#include "products.cuh"

// k per shared-memory stage: 16, or MID_WK in the 64 x 64 tier (32: half the stages and barriers of
// a tile, twice the loads in flight; the 128 x 128 tier's two stages of 32 would not fit 48 KB)
#ifndef MID_WK
#define MID_WK 16
#endif
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
    static constexpr int WK = T == MT ? MID_WK : 16;
    float a[WK][T + SPAD];  // [k][tile row] (rows float4-aligned)
    float b[WK][T + SPAD];  // [k][tile column]
};

// One operand's part of a stage of a T x T tile: tile row r (< rows), k (< K). kc: contiguous
// along k (element at p[r * ld + k]), else contiguous along the rows (at p[k * ld + r]). Each
// thread moves N = T WK / 1024 float4s: kc: rows t / 4 (+ 64) at k (t % 4) * 4 (+ 16); else row
// (t % (T/4)) * 4 at k t / (T/4) (+ 1024 / T).
template <bool kc, int T>
struct Operand {
    static constexpr int WK = Stage<T>::WK, N = T * WK / 1024, RN = T / 64;  // RN: float4s a k chunk (kc)
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
            for (int i = 0; i < N; ++i) lim[i] = r + 64 * (i % RN) < rows ? 4 : 0;
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
            const int n = kc ? min(lim[i], K - k0 - kt - 16 * (i / RN)) : (k0 + kt + (1024 / T) * i < K ? lim[i] : 0);
            const float* a = kc ? q + k0 + 16 * (i / RN) + (size_t)64 * (i % RN) * ld : q + (size_t)(k0 + (1024 / T) * i) * ld;
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
                const int r = (t >> 2) + 64 * (i % RN), k = kt + 16 * (i / RN);
                s[k][r] = v[i].x; s[k + 1][r] = v[i].y; s[k + 2][r] = v[i].z; s[k + 3][r] = v[i].w;
            } else {
                *reinterpret_cast<float4*>(&s[kt + (1024 / T) * i][(t % (T / 4)) * 4]) = v[i];
            }
        }
    }
};

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

// acc += the products of one stage (WK values of k) of shared memory.
template <int T>
__device__ __forceinline__ void stage_product(float acc[T / 16][T / 16], const Stage<T>& s)
{
#if TENSOR_CORES
    const int w = threadIdx.x >> 5;
#pragma unroll
    for (int k0 = 0; k0 < Stage<T>::WK; k0 += KSTEP)
        warp_product<T / 32, T / 32>(&acc[0][0], [&](int r, int k) { return s.a[k][r]; },
                                     [&](int n, int k) { return s.b[k][n]; }, (w >> 2) * (T / 2), (w & 3) * (T / 4), k0);
#else
    constexpr int R = T / 16;
    const int tx = threadIdx.x % 16, ty = threadIdx.x / 16;
#pragma unroll
    for (int k = 0; k < Stage<T>::WK; ++k) {
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
}

// Whether a tile's pipeline runs on from one edge into the next (fetching the next edge's first
// stage during the last stage of the one before) or starts afresh at each edge (a stage fetched,
// stored and waited for): the first keeps more registers live, which the 128 x 128 tiles, capped
// at 128 registers (WIDE_BLOCKS), pay for in spills.
#ifndef MID_ACROSS
#define MID_ACROSS 1
#endif
#ifndef WIDE_ACROSS
#define WIDE_ACROSS 0
#endif

// acc += sum over segments i = 0..n-1 of A_i B_i^T (segment i's operands from a(i) and b(i): an
// edge each): the next stage's global loads are in flight (in registers) while the current one is
// multiplied, one barrier a stage, two buffers; across segment boundaries too where `across`.
template <int T, bool akc, bool bkc, typename FA, typename FB>
__device__ __forceinline__ void tile_segments(float acc[T / 16][T / 16], int n, FA a, FB b, Stage<T>* st)
{
    constexpr bool across = T == MT ? MID_ACROSS : WIDE_ACROSS;
    constexpr int WK = Stage<T>::WK;
    int stage = 0;
    for (int i = 0; i < n; ++i) {
        if (across && i > 0) break;  // (the first segment's loop runs the rest)
        Operand<akc, T> A = a(i);
        Operand<bkc, T> B = b(i);
        int steps = (A.K + WK - 1) / WK, t = 0, seg = i;
        A.fetch(0); B.fetch(0);
        A.store(st[stage].a); B.store(st[stage].b);
        __syncthreads();
        for (;;) {
            bool more = true;
            if (t + 1 < steps) {
                ++t;
                A.fetch(t * WK); B.fetch(t * WK);
            } else if (across && seg + 1 < n) {
                ++seg;
                A = a(seg); B = b(seg);
                steps = (A.K + WK - 1) / WK; t = 0;
                A.fetch(0); B.fetch(0);
            } else {
                more = false;
            }
            stage_product<T>(acc, st[stage]);
            if (more) { A.store(st[stage ^ 1].a); B.store(st[stage ^ 1].b); }
            __syncthreads();
            stage ^= 1;
            if (!more) break;
        }
    }
}

// A tile's edges (in-edges of its group for the forward, out-edges for the backward): the other
// group's block offset and width and the edge's weight offset, staged in shared memory once
// (the first SEGMENTS of them; any beyond are read from global memory when reached), so that the
// pipeline moves from one edge to the next without a dependent load.
#define SEGMENTS 32
#ifndef EDGE_TABLE
#define EDGE_TABLE 1  // 0: every edge's ends read from global memory when reached (a harness variant)
#endif
struct Edges {
    int off[SEGMENTS], width[SEGMENTS], woff[SEGMENTS];
};

__device__ __forceinline__ void stage_edges(Edges& ed, int e0, int n, const int* other, const int* woff,
                                            const int* width, const int* act_off)
{
    if (!EDGE_TABLE) return;
    for (int i = threadIdx.x; i < min(n, SEGMENTS); i += THREADS) {
        const int g = other[e0 + i];
        ed.off[i] = act_off[g]; ed.width[i] = width[g]; ed.woff[i] = woff[e0 + i];
    }
    __syncthreads();
}

__device__ __forceinline__ int3 edge_at(const Edges& ed, int e0, int i, const int* other, const int* woff,
                                        const int* width, const int* act_off)
{
    if (EDGE_TABLE && i < SEGMENTS) return make_int3(ed.off[i], ed.width[i], ed.woff[i]);
    const int g = other[e0 + i];
    return make_int3(act_off[g], width[g], woff[e0 + i]);
}

// The edges of part `part` of `parts` (the task's: topology.cu's split_parts cut a tile's edges
// so), cut where the running sum of their widths crosses part / parts of the total: edge i is in
// part floor(k before i x parts / k).
struct Split {
    int first, count;  // this part's edges: first..first+count-1 of the tile's
};

__device__ __forceinline__ Split split_edges(const Edges& ed, int e0, int n, const int* other, const int* woff,
                                             const int* width, const int* act_off, int part, int parts)
{
    if (parts == 1) return {0, n};
    int k = 0;
    for (int i = 0; i < n; ++i) k += edge_at(ed, e0, i, other, woff, width, act_off).y;
    int first = n, last = n, before = 0;
    for (int i = 0; i < n; ++i) {
        const int p = (int)((long long)before * parts / max(k, 1));
        if (p == part && first == n) first = i;
        if (p > part) { last = i; break; }
        before += edge_at(ed, e0, i, other, woff, width, act_off).y;
    }
    return {first, last - min(first, last)};
}

// Whether this block finishes its tile: with one part, yes (acc holds the sums); otherwise acc is
// written as this part's partial sums, and the last part's block to arrive reads every part's
// back into acc, in part order.
template <int T>
__device__ __forceinline__ bool gather_parts(float acc[T / 16][T / 16], int part, int parts, float* __restrict__ partials,
                                             int* __restrict__ tickets)
{
    constexpr int R = T / 16;
    if (parts == 1) return true;
    __shared__ int last;
    const size_t slot = (size_t)blockIdx.x * gridDim.y + blockIdx.y;  // this task's; its tile's first part's:
    const size_t first = slot - (size_t)part * gridDim.y;             // the parts' tasks are consecutive
    float* mine = partials + slot * T * T;
#pragma unroll
    for (int i = 0; i < R; ++i)
#pragma unroll
        for (int c = 0; c < R; ++c) mine[out_row<R>(i, c) * T + out_col<R>(i, c)] = acc[i][c];
    __threadfence();
    __syncthreads();
    if (threadIdx.x == 0) last = atomicAdd(tickets + first, 1) == parts - 1;
    __syncthreads();
    if (!last) return false;
    __threadfence();
#pragma unroll
    for (int i = 0; i < R; ++i)
#pragma unroll
        for (int c = 0; c < R; ++c) {
            const int at = out_row<R>(i, c) * T + out_col<R>(i, c);
            float v = __ldcg(partials + first * T * T + at);
            for (int p = 1; p < parts; ++p) v += __ldcg(partials + (first + (size_t)p * gridDim.y) * T * T + at);
            acc[i][c] = v;
        }
    if (threadIdx.x == 0) tickets[first] = 0;  // every part has arrived: ready for the next launch
    return true;
}

template <int T>
__device__ __forceinline__ void forward_big(
    const int* __restrict__ tasks, const int* __restrict__ width, const int* __restrict__ act_off,
    const int* __restrict__ bias_off, const int* __restrict__ in_ptr, const int* __restrict__ in_src,
    const int* __restrict__ in_woff, const float* __restrict__ params, float* __restrict__ act,
    int batch, int ld, int output_slot, float* __restrict__ partials, int* __restrict__ tickets)
{
    constexpr int R = T / 16;
    __shared__ __align__(16) Stage<T> st[2];
    __shared__ Edges ed;
    const int* task = tasks + 4 * blockIdx.x;
    const int s = task[0], j0 = task[1], q = task[2], parts = task[3], b0 = blockIdx.y * T;
    const int w = width[s], e0 = in_ptr[s], e1 = in_ptr[s + 1];
    stage_edges(ed, e0, e1 - e0, in_src, in_woff, width, act_off);
    const Split part = split_edges(ed, e0, e1 - e0, in_src, in_woff, width, act_off, q, parts);
    float acc[R][R] = {};
    tile_segments<T, true, true>(acc, part.count, [&](int i) {
        const int3 g = edge_at(ed, e0, part.first + i, in_src, in_woff, width, act_off);
        const int rs = ROW(ld, g.y);
        return Operand<true, T>(act + g.x + (size_t)b0 * rs, rs, batch - b0, g.y);
    }, [&](int i) {
        const int3 g = edge_at(ed, e0, part.first + i, in_src, in_woff, width, act_off);
        return Operand<true, T>(params + g.z + (size_t)j0 * g.y, g.y, w - j0, g.y);
    }, st);
    if (!gather_parts<T>(acc, q, parts, partials, tickets)) return;
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
    int batch, int ld, double* __restrict__ stats, float* __restrict__ partials, int* __restrict__ tickets)
{
    constexpr int R = T / 16;
    __shared__ __align__(16) Stage<T> st[2];
    __shared__ double scratch[THREADS / 32];
    __shared__ Edges ed;
    const int* task = tasks + 4 * blockIdx.x;
    const int s = task[0], k0 = task[1], q = task[2], parts = task[3], b0 = blockIdx.y * T;
    const int w = width[s], e0 = out_ptr[s], n = out_ptr[s + 1] - e0;
    stage_edges(ed, e0, n, out_dst, out_woff, width, act_off);
    const Split part = split_edges(ed, e0, n, out_dst, out_woff, width, act_off, q, parts);
    float acc[R][R] = {};
    tile_segments<T, true, false>(acc, part.count, [&](int i) {
        const int3 g = edge_at(ed, e0, part.first + i, out_dst, out_woff, width, act_off);
        const int rd = ROW(ld, g.y);
        return Operand<true, T>(dz + g.x + (size_t)b0 * rd, rd, batch - b0, g.y);
    }, [&](int i) {  // W_e is (wd x w): element (k, j) at j * w + k
        const int3 g = edge_at(ed, e0, part.first + i, out_dst, out_woff, width, act_off);
        return Operand<false, T>(params + g.z + k0, w, w - k0, g.y);
    }, st);
    if (!gather_parts<T>(acc, q, parts, partials, tickets)) return;
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
    tile_segments<T, false, false>(acc, 1, [&](int) {  // element (j, b) at b * rd + j
        return Operand<false, T>(dz + act_off[dst] + j0, rd, wd - j0, batch);
    }, [&](int) { return Operand<false, T>(act + act_off[src] + k0, rs, ws_ - k0, batch); }, st);
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
        int ld, int output_slot, float *__restrict__ partials, int *__restrict__ tickets
#define BACKWARD_ARGS                                                                                              \
    const int *__restrict__ tasks, const int *__restrict__ width, const int *__restrict__ act_off,                 \
        const int *__restrict__ out_ptr, const int *__restrict__ out_dst, const int *__restrict__ out_woff,        \
        const float *__restrict__ params, const float *__restrict__ act, float *__restrict__ dz, int batch, int ld, \
        double *__restrict__ stats, float *__restrict__ partials, int *__restrict__ tickets
#define WEIGHT_ARGS                                                                                                \
    const int *__restrict__ tasks, const int *__restrict__ in_src, const int *__restrict__ in_dst,                 \
        const int *__restrict__ in_woff, const int *__restrict__ width, const int *__restrict__ act_off,           \
        const float *__restrict__ act, const float *__restrict__ dz, float *__restrict__ grads, int batch, int ld,  \
        double *__restrict__ wstats, double *__restrict__ gradsq

extern "C" __global__ void __launch_bounds__(THREADS, WIDE_BLOCKS) forward_wide(FORWARD_ARGS)
{
    forward_big<WT>(tasks, width, act_off, bias_off, in_ptr, in_src, in_woff, params, act, batch, ld, output_slot, partials, tickets);
}

extern "C" __global__ void __launch_bounds__(THREADS, MID_BLOCKS) forward_mid(FORWARD_ARGS)
{
    forward_big<MT>(tasks, width, act_off, bias_off, in_ptr, in_src, in_woff, params, act, batch, ld, output_slot, partials, tickets);
}

extern "C" __global__ void __launch_bounds__(THREADS, WIDE_BLOCKS) backward_wide(BACKWARD_ARGS)
{
    backward_big<WT>(tasks, width, act_off, out_ptr, out_dst, out_woff, params, act, dz, batch, ld, stats, partials, tickets);
}

extern "C" __global__ void __launch_bounds__(THREADS, MID_BLOCKS) backward_mid(BACKWARD_ARGS)
{
    backward_big<MT>(tasks, width, act_off, out_ptr, out_dst, out_woff, params, act, dz, batch, ld, stats, partials, tickets);
}

extern "C" __global__ void __launch_bounds__(THREADS, WIDE_BLOCKS) weight_wide(WEIGHT_ARGS)
{
    weight_big<WT>(tasks, in_src, in_dst, in_woff, width, act_off, act, dz, grads, batch, ld, wstats, gradsq);
}

extern "C" __global__ void __launch_bounds__(THREADS, MID_BLOCKS) weight_mid(WEIGHT_ARGS)
{
    weight_big<MT>(tasks, in_src, in_dst, in_woff, width, act_off, act, dz, grads, batch, ld, wstats, gradsq);
}
