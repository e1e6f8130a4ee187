// wavefront.cu: a recurrent network of dense groups trained through time: the forward and the
// backward passes over every step in one persistent launch (wavefront_step), then the weight and
// bias gradients summed over time as GEMMs (wavefront_weight_grad, wavefront_reduce).
//
// Layout. Slots s = 0..n_slots-1 are the network's groups but the input, in the topological order
// of its edges without a delay; the output group is the last slot. Slot s's activations over the
// whole sequence are one row-major block of steps x batch rows of width[s] floats at act +
// act_off[s], step t's rows from t * batch (its dL/dz the same in dz). The input is read where it
// lies: x of shape (batch, steps, n_inputs). The parameters are the recurrent network's own, once
// (no copy per step): edge e's weight block (width[dst] x width[src], row-major) at params +
// woff, slot s's bias at params + bias_off[s].
//   in_ptr/in_src/in_delay/in_woff    in-edges of slot s (CSR); in_src -1 is the input group
//   out_ptr/out_dst/out_delay/out_woff its out-edges to other slots (the same weight blocks)
// An edge of delay k makes slot d at step t read its source at step t - k, zeros before step k.
//
// wavefront_step: block b = s * n_rb + r owns slot s's batch rows r * rows .. r * rows + rows - 1
// at every step (n_rb = ceil(batch / rows)). Every block of the grid must be resident at once
// (the caller sizes rows from the occupancy): a block waits for blocks of other slots.
//   Forward, t = 0 .. steps - 1: for each in-edge, the source's rows at step t - k (zeros before
//     step k) from the edge's chunk buffer in shared memory; where they are not there, wait until
//     the source's block of the same rows has done step t - k (fwd[src][r] > t - k) and stage its
//     rows of the steps from t - k on that it has done, up to `chunk` steps (the input: every step
//     is there): a producer running ahead is read once a chunk, not once a step. z += h W^T.
//     h = relu(z + b) (the output group: z + b, computed only at the steps it is read). Publish:
//     the block's writes, a release, fwd[s][r] = t + 1, every `release_every` steps (and the
//     last; a block that waits first releases what it holds back). At each step the output is
//     read, the output block computes the softmax cross-entropy of its rows and writes dL/dlogits
//     into dz.
//   Backward, t = steps - 1 .. 0 (after the block's whole forward): for each out-edge to slot c of
//     delay k with t + k read, c's dz(t + k) from the edge's chunk buffer, or after waiting until
//     c's block has done its backward at step t + k (bwd[c][r] >= steps - t - k), staged with the
//     steps below it that c has done (up to `chunk`); dh += dz_c(t + k) W. dz = dh where h > 0,
//     else 0; the statistics of dL/dh (sum, sum of squares, sum of h dL/dh) and each neuron's
//     range of h (hmin/hmax, a partial per row block) accumulate over every step. Publish
//     bwd[s][r] = steps - t. Blocks only wait for cells of earlier stages (forward: the same or
//     earlier steps, earlier slots; backward: the same or later steps, later slots), so the
//     launch cannot deadlock while every block is resident.
//   Weights: with `stage`, each block copies its in-edges' blocks (transposed) into shared memory
//     once before the forward, and its out-edges' blocks once before the backward, and reads them
//     there at every step; without it (they do not fit), it reads them from global memory (L1/L2).
//   Chunk buffers: `chunk` steps x rows x the source's width per edge, edge after edge (`region`
//     floats in all, the largest slot's); a buffer is only overwritten at a later step than it was
//     read, and every step ends with the publish's barrier, so a step that finds its rows there
//     passes no barrier before its product.
// The hand-off: the producer's threads finish (__syncthreads), one thread adds to the flag with
// release semantics (publish); the consumer's thread 0 spins on it with acquire loads, then the
// block proceeds. Data written inside the launch by other blocks is read through L2 (__ldcg). A
// wait longer than WF_WAIT_LIMIT_NS (a block that is not resident) sets the int at byte WF_GAVE_UP
// of `scalars` and the loss to NaN, and every waiting block returns: the update is refused and
// the host raises an error instead of hanging.
#include "genlab.cuh"
#include "loss.cu"

// Build variants (benchmarks/kernels/recurrence.py times them): WF_MIN_BLOCKS resident blocks an
// SM the register budget is cut for; WF_SELF_SMEM 1 (the default) keeps a block's own last output
// (forward) and last dL/dz (backward) in shared memory for its edge to itself of delay 1, instead
// of waiting for its own flag and reading it back through L2 (0: a harness variant): a stacked
// RNN's layers pace the wavefront with that edge.
#ifndef WF_MIN_BLOCKS
#define WF_MIN_BLOCKS 1
#endif
#ifndef WF_SELF_SMEM
#define WF_SELF_SMEM 1
#endif

// The outputs of a rows x w cell one thread computes: columns j0 + c * cstep (c < nc) of rows
// r0 + q * rstep (q < nr). For w <= THREADS, THREADS / w row groups of w threads each take a
// column; wider groups give every thread up to WF_COLS columns of every row. The caller keeps
// nr <= WF_ROWS and nc <= WF_COLS (wavefront.py chooses rows so).
// WF_SPLIT_K 1: where the row groups outnumber the rows (a narrow cell of few rows), the spare
// groups share the sums instead of idling: `parts` = groups / rows threads take each output, part
// p summing the p-th of `parts` slices of k, and the slices are added in part order through
// shared memory (reduce_parts) before the output is written by part 0 (output_share).
#ifndef WF_SPLIT_K
#define WF_SPLIT_K 0
#endif
struct Share {
    int j0, cstep, nc, r0, rstep, nr;
    int part, parts;  // the thread's slice of k, of `parts` (1: the whole sum)
};

__device__ __forceinline__ Share share_of(int w, int rows)
{
    Share c;
    c.part = 0; c.parts = 1;
    if (w <= THREADS) {
        const int groups = THREADS / w, g = threadIdx.x / w;
        c.j0 = threadIdx.x % w; c.cstep = w; c.nc = (int)threadIdx.x < groups * w ? 1 : 0;
        c.r0 = g; c.rstep = groups;
        if (WF_SPLIT_K && rows > 0 && groups >= 2 * rows) {  // each output in groups / rows parts
            c.parts = groups / rows;
            c.r0 = g % rows; c.part = g / rows; c.rstep = groups;
            if (c.part >= c.parts) c.nc = 0;
        }
    } else {
        c.j0 = threadIdx.x; c.cstep = THREADS; c.nc = (w - (int)threadIdx.x + THREADS - 1) / THREADS;
        c.r0 = 0; c.rstep = 1;
    }
    c.nr = (c.nc > 0 && c.r0 < rows) ? (rows - c.r0 + c.rstep - 1) / c.rstep : 0;
    return c;
}

// The share whose outputs the thread writes: none for a part past the first.
__device__ __forceinline__ Share output_share(Share c)
{
    if (c.part > 0) c.nr = 0;
    return c;
}

// A split cell's sums (c.parts > 1, the same in every thread): each part's slice into red, then
// part 0 adds the slices in part order (deterministic). The caller's next barrier frees red.
__device__ __forceinline__ void reduce_parts(float (&acc)[WF_ROWS][WF_COLS], const Share& c, int n, int w, float* red)
{
    if (c.parts <= 1) return;
    if (c.nr > 0) red[(c.part * n + c.r0) * w + c.j0] = acc[0][0];
    __syncthreads();
    if (c.nr > 0 && c.part == 0) {
        float sum = red[c.r0 * w + c.j0];
        for (int p = 1; p < c.parts; ++p) sum += red[(p * n + c.r0) * w + c.j0];
        acc[0][0] = sum;
    }
}

#ifndef WF_UNROLL  // the product loops' unrolling (a harness variant may set it)
#define WF_UNROLL 4
#endif
#ifndef WF_FULL_TILE
#define WF_FULL_TILE 0
#endif
constexpr int wf_unroll = WF_UNROLL;  // (a pragma's argument is not macro-expanded)

// acc[q][c] += sum over k < K of A[row q][k] * B(k, column c): A in shared memory (row stride K),
// B(k, j) at B[k * sk + j * sj] (shared or global memory: a generic pointer). R rows and C column
// strides at most (compile-time), so that a thread with one row and one column (the common cell:
// a few batch rows, a group no wider than the block) spends its loop on its one product, not on
// the predicates of WF_ROWS x WF_COLS accumulators; k unrolled for loads in flight.
template <int R, int C>
__device__ __forceinline__ void accumulate_tile(float (&acc)[WF_ROWS][WF_COLS], const Share& c, const float* A,
                                                int K, const float* B, int sk, int sj)
{
#pragma unroll wf_unroll
    for (int k = 0; k < K; ++k) {
        float b[C];
#pragma unroll
        for (int cc = 0; cc < C; ++cc) b[cc] = cc < c.nc ? B[k * sk + (c.j0 + cc * c.cstep) * sj] : 0.f;
#pragma unroll
        for (int q = 0; q < R; ++q) {
            if (R == 1 || q < c.nr) {
                const float a = A[(c.r0 + q * c.rstep) * K + k];
#pragma unroll
                for (int cc = 0; cc < C; ++cc) acc[q][cc] = fmaf(a, b[cc], acc[q][cc]);
            }
        }
    }
}

// The same for a thread of R (1 or 2) rows and one column, with k dealt round 4 / R independent
// sums a row: the product's chain of dependent multiply-adds is what a step of a narrow cell
// waits for (one or two warps working, the others at the barrier), and independent sums let the
// loads and multiply-adds of several k overlap: 10-15% off a pass on an H100 (benchmarks/NOTES.md,
// recurrence v2, fifth round), so the default. WF_CHAINS 0 keeps one sum (harness variant 25).
#ifndef WF_CHAINS
#define WF_CHAINS 1
#endif
template <int R>
__device__ __forceinline__ void accumulate_chains(float (&acc)[WF_ROWS][WF_COLS], const Share& c, const float* A,
                                                  int K, const float* B, int sk, int sj)
{
    constexpr int S = 4 / R;
    float part[R][S];
#pragma unroll
    for (int q = 0; q < R; ++q)
#pragma unroll
        for (int p = 0; p < S; ++p) part[q][p] = 0.f;
    const float* b = B + c.j0 * sj;
    const float* a0 = A + c.r0 * K;
    const float* a1 = A + (c.r0 + c.rstep) * K;  // read only where the thread has two rows (R == 2, nr == 2)
    const bool two = R == 2 && c.nr > 1;
    int k = 0;
#pragma unroll 2
    for (; k + S <= K; k += S) {
#pragma unroll
        for (int p = 0; p < S; ++p) {
            const float w = b[(k + p) * sk];
            part[0][p] = fmaf(a0[k + p], w, part[0][p]);
            if (two) part[R - 1][p] = fmaf(a1[k + p], w, part[R - 1][p]);
        }
    }
    for (; k < K; ++k) {
        const float w = b[k * sk];
        part[0][0] = fmaf(a0[k], w, part[0][0]);
        if (two) part[R - 1][0] = fmaf(a1[k], w, part[R - 1][0]);
    }
#pragma unroll
    for (int q = 0; q < R; ++q) {
        float sum = 0.f;
#pragma unroll
        for (int p = 0; p < S; ++p) sum += part[q][p];
        if (q == 0 || two) acc[q][0] += sum;
    }
}

__device__ __forceinline__ void accumulate(float (&acc)[WF_ROWS][WF_COLS], const Share& c, const float* A, int K,
                                           const float* B, int sk, int sj)
{
    if (c.nr == 0) return;
    if (c.parts > 1) {  // one row, one column, the part's slice of k (WF_SPLIT_K)
        const int k0 = c.part * K / c.parts, k1 = (c.part + 1) * K / c.parts;
        const float* a = A + c.r0 * K;
        const float* b = B + c.j0 * sj;
        float s0 = 0.f, s1 = 0.f;  // two chains
        int k = k0;
#pragma unroll 2
        for (; k + 2 <= k1; k += 2) {
            s0 = fmaf(a[k], b[k * sk], s0);
            s1 = fmaf(a[k + 1], b[(k + 1) * sk], s1);
        }
        if (k < k1) s0 = fmaf(a[k], b[k * sk], s0);
        acc[0][0] += s0 + s1;
        return;
    }
    if (WF_FULL_TILE) {  // the first version's loop (a harness variant: the baseline)
        accumulate_tile<WF_ROWS, WF_COLS>(acc, c, A, K, B, sk, sj);
    } else if (c.nc <= 1) {
        if (WF_CHAINS && c.nr == 1) accumulate_chains<1>(acc, c, A, K, B, sk, sj);
        else if (WF_CHAINS && c.nr == 2) accumulate_chains<2>(acc, c, A, K, B, sk, sj);
        else if (c.nr == 1) accumulate_tile<1, 1>(acc, c, A, K, B, sk, sj);
        else if (c.nr <= 2) accumulate_tile<2, 1>(acc, c, A, K, B, sk, sj);
        else accumulate_tile<WF_ROWS, 1>(acc, c, A, K, B, sk, sj);
    } else {
        accumulate_tile<WF_ROWS, WF_COLS>(acc, c, A, K, B, sk, sj);
    }
}

// How long a block waits for another before the launch gives up: only a block that is not
// resident (the grid larger than the GPU holds, or SMs held by other work that waits too) waits
// that long, and giving up turns a hang into an error the host reports.
#ifndef WF_WAIT_LIMIT_NS
#define WF_WAIT_LIMIT_NS 10000000000ull
#endif

__device__ __forceinline__ unsigned long long wf_now_ns()
{
    unsigned long long t;
    asm volatile("mov.u64 %0, %%globaltimer;" : "=l"(t));
    return t;
}

// Thread 0 waits until *flag >= target (acquire), then the block proceeds with the value it saw
// (>= target: the producer may be steps ahead, and one wait then covers them all). -1 for every
// thread of the block when the launch gave up (the give-up word, the int at byte WF_GAVE_UP of
// scalars, set by this block after WF_WAIT_LIMIT_NS or by another); the block then returns.
// Giving up also makes the loss NaN, so the guarded update after the launch refuses the step on
// the device. Between two calls the block passes a barrier.
__device__ __forceinline__ int wait_until(const int* flag, int target, double* scalars)
{
    __shared__ int seen;
    if (threadIdx.x == 0) {
        int* abort = (int*)((char*)scalars + WF_GAVE_UP);
        unsigned long long start = 0;
        int v;
        while ((v = load_acquire(flag)) < target) {
            const unsigned long long now = wf_now_ns();
            if (start == 0) start = now;
            if (*(volatile int*)abort != 0 || now - start > WF_WAIT_LIMIT_NS) {
                atomicExch((unsigned long long*)scalars, 0x7ff8000000000000ull);  // the loss: a quiet NaN
                atomicExch(abort, 1);
                v = -1;
                break;
            }
            __nanosleep(20);
        }
        seen = v;
    }
    __syncthreads();
    return seen;
}

// The block's writes made visible, then *flag += 1: after the barrier, one thread's release (one
// add with release semantics; WF_RELEASE_ADD 0: a fence then the add, a harness variant). The
// last thread releases (WF_PUBLISH_LAST 1; 0: thread 0): in a cell narrower than the block its
// warp has no outputs, so the release's latency runs beside the next step's products.
#ifndef WF_RELEASE_ADD
#define WF_RELEASE_ADD 1
#endif
#ifndef WF_PUBLISH_LAST
#define WF_PUBLISH_LAST 1
#endif
__device__ __forceinline__ void release_add(int* flag, int v)
{
#if WF_RELEASE_ADD
    asm volatile("red.release.gpu.global.add.s32 [%0], %1;" ::"l"(flag), "r"(v) : "memory");
#else
    __threadfence();
    atomicAdd(flag, v);
#endif
}

constexpr unsigned WF_PUBLISHER = WF_PUBLISH_LAST ? THREADS - 1 : 0;

// The end of a step: a barrier (the step's writes done, its chunk and `own` reads too), then the
// steps done since the last release (pending, the same in every thread) released where they are
// `release_every` or this is the last step. A block that holds steps back releases them before it waits
// (flush), so no block waits for steps that are done: the launch cannot deadlock for it.
__device__ __forceinline__ void publish(int* flag, int& pending, int release_every, bool last)
{
    __syncthreads();
    if (++pending >= release_every || last) {
        if (threadIdx.x == WF_PUBLISHER) release_add(flag, pending);
        pending = 0;
    }
}

__device__ __forceinline__ void flush(int* flag, int& pending)
{
    if (pending > 0) {
        if (threadIdx.x == WF_PUBLISHER) release_add(flag, pending);  // ordered after the steps' barriers
        pending = 0;
    }
}

// Steps u0 .. u0 + m - 1 of `n` rows of `w` floats into the chunk buffer (step j's rows at
// buf + j * n * w, row stride w), through L2: element (j, row, col) at src + j * sstep + row *
// srow + col.
__device__ __forceinline__ void stage_steps(float* buf, const float* src, int m, int n, int w, size_t sstep,
                                            int srow)
{
    const int per = n * w;
    for (int i = threadIdx.x; i < m * per; i += THREADS) {
        const int j = i / per, row = (i % per) / w, col = i % w;
        buf[i] = __ldcg(src + j * sstep + (size_t)row * srow + col);
    }
}

// f(q, cc, row, j) for each output of a cell the thread owns (its Share), q and cc the indices of
// its registers (compile-time after unrolling), row and j the output's place in the cell.
template <class F> __device__ __forceinline__ void each_output(const Share& c, F f)
{
#pragma unroll
    for (int q = 0; q < WF_ROWS; ++q) {
        if (q >= c.nr) continue;
#pragma unroll
        for (int cc = 0; cc < WF_COLS; ++cc)
            if (cc < c.nc) f(q, cc, c.r0 + q * c.rstep, c.j0 + cc * c.cstep);
    }
}

// acc = 0, every register
__device__ __forceinline__ void zero(float (&acc)[WF_ROWS][WF_COLS])
{
#pragma unroll
    for (int q = 0; q < WF_ROWS; ++q)
#pragma unroll
        for (int cc = 0; cc < WF_COLS; ++cc) acc[q][cc] = 0.f;
}

extern "C" __global__ void __launch_bounds__(THREADS, WF_MIN_BLOCKS) wavefront_step(
    const int* __restrict__ width, const int* __restrict__ act_off, const int* __restrict__ bias_off,
    const int* __restrict__ col_off, const int* __restrict__ in_ptr, const int* __restrict__ in_src,
    const int* __restrict__ in_delay, const int* __restrict__ in_woff, const int* __restrict__ out_ptr,
    const int* __restrict__ out_dst, const int* __restrict__ out_delay, const int* __restrict__ out_woff,
    int n_slots, int steps, int batch, int rows, int n_inputs, int n_cols, int every_step, int train, int stage,
    int chunk, int region, int release_every, const float* __restrict__ x, const int* __restrict__ labels,
    const float* __restrict__ params, float* act, float* dz, double* stats, float* hmin, float* hmax, double* scalars,
    int* flags)
{
    extern __shared__ float shared[];
    __shared__ double scratch[THREADS / 32];
    __shared__ float lo_s[THREADS * WF_COLS], hi_s[THREADS * WF_COLS];
    const int n_rb = (batch + rows - 1) / rows;
    const int s = blockIdx.x / n_rb, r = blockIdx.x % n_rb;
    if (s >= n_slots) return;
    const int b0 = r * rows, n = min(rows, batch - b0), w = width[s], out = n_slots - 1;
    const int n_out = out_ptr[s + 1] - out_ptr[s];
    int* fwd = flags;
    int* bwd = flags + n_slots * n_rb;
    int max_in = n_inputs, max_deg = 1;
    for (int i = 0; i < n_slots; ++i) {
        max_in = max(max_in, width[i]);
        max_deg = max(max_deg, max(in_ptr[i + 1] - in_ptr[i], out_ptr[i + 1] - out_ptr[i]));
    }
    // dynamic shared memory (wavefront_plan.py's shared_bytes): the block's edges (forward: its
    // in-edges, backward: its out-edges), WF_EDGE ints each: the slot at the other end (-1: the
    // input), the delay, the weights' offset, the other end's width, the first and last + 1 step
    // its chunk buffer holds; the block's own last two outputs (forward) or dL/dz (backward),
    // WF_SELF_SMEM; the chunk buffers, `region` floats; the staged weight blocks
    int* edges = (int*)shared;
    float* own = shared + WF_EDGE * max_deg;   // 2 x rows x max_in: step t's at own + (t & 1) * rows * max_in
    float* chunks = own + 2 * rows * max_in;
    float* wsm = chunks + region;
    const Share c = share_of(w, n), o = output_share(c);
    __shared__ float red[THREADS];  // a split cell's slices (reduce_parts)
    float lo[WF_ROWS][WF_COLS], hi[WF_ROWS][WF_COLS];
#pragma unroll
    for (int q = 0; q < WF_ROWS; ++q)
#pragma unroll
        for (int cc = 0; cc < WF_COLS; ++cc) { lo[q][cc] = INFINITY; hi[q][cc] = -INFINITY; }
    double s1 = 0.0, s2 = 0.0, s3 = 0.0, loss = 0.0;
    int right = 0, pending = 0;  // pending: steps done and not yet released (publish)

    // ---- forward
    const int n_in = in_ptr[s + 1] - in_ptr[s];
    for (int i = threadIdx.x; i < n_in; i += THREADS) {
        int* ed = edges + WF_EDGE * i;
        const int e = in_ptr[s] + i;
        ed[0] = in_src[e]; ed[1] = in_delay[e]; ed[2] = in_woff[e];
        ed[3] = in_src[e] < 0 ? n_inputs : width[in_src[e]];
        ed[4] = ed[5] = 0;  // the chunk empty
    }
    float bias[WF_COLS];  // the thread's columns' biases
#pragma unroll
    for (int cc = 0; cc < WF_COLS; ++cc) bias[cc] = cc < c.nc ? params[bias_off[s] + c.j0 + cc * c.cstep] : 0.f;
    if (stage) {  // in-edge blocks transposed: edge e's (width[src] x w) at its running offset
        int off = 0;
        for (int e = in_ptr[s]; e < in_ptr[s + 1]; ++e) {
            const int ws = in_src[e] < 0 ? n_inputs : width[in_src[e]];
            for (int i = threadIdx.x; i < w * ws; i += THREADS)
                wsm[off + (i % ws) * w + i / ws] = params[in_woff[e] + i];
            off += w * ws;
        }
    }
    __syncthreads();
    for (int t = 0; t < steps; ++t) {
        const bool read = s != out || every_step || t == steps - 1;
        if (read) {
            float acc[WF_ROWS][WF_COLS];
            zero(acc);
            int off = 0, boff = 0;
            for (int i = 0; i < n_in; ++i) {
                int* ed = edges + WF_EDGE * i;
                const int src = ed[0], k = ed[1], ws = ed[3];
                float* buf = chunks + boff;
                if (t >= k) {
                    const int u = t - k;  // the source's step this cell reads
                    const bool self = WF_SELF_SMEM && src == s && k == 1 && s != out;
                    const float* rows_in;
                    if (self) {
                        rows_in = own + ((t - 1) & 1) * rows * max_in;  // written before the last publish's barrier
                    } else {
                        int first = ed[4];
                        if (u < first || u >= ed[5]) {  // not in the edge's chunk: wait, stage steps from u on
                            int ready = steps;  // the input: every step
                            if (src >= 0) {
                                flush(fwd + s * n_rb + r, pending);
                                if ((ready = wait_until(fwd + src * n_rb + r, u + 1, scalars)) < 0) return;
                            }
                            const int m = min(chunk, ready - u);
                            if (src < 0) stage_steps(buf, x + ((size_t)b0 * steps + u) * n_inputs, m, n, ws, ws,
                                                     steps * n_inputs);
                            else stage_steps(buf, act + act_off[src] + ((size_t)u * batch + b0) * ws, m, n, ws,
                                             (size_t)batch * ws, ws);
                            __syncthreads();  // the chunk is there (every thread read ed[4], ed[5] before it)
                            if (threadIdx.x == 0) { ed[4] = u; ed[5] = u + m; }
                            first = u;
                        }
                        rows_in = buf + (u - first) * n * ws;
                    }
                    if (stage) accumulate(acc, c, rows_in, ws, wsm + off, w, 1);
                    else accumulate(acc, c, rows_in, ws, params + ed[2], 1, ws);
                }
                off += w * ws;
                boff += chunk * rows * ws;
            }
            reduce_parts(acc, c, n, w, red);
            float* h = act + act_off[s] + ((size_t)t * batch + b0) * w;
            float* mine = own + (t & 1) * rows * max_in;
            each_output(o, [&](int q, int cc, int row, int j) {
                float v = acc[q][cc] + bias[cc];
                if (s != out) {
                    v = fmaxf(v, 0.f);
                    lo[q][cc] = fminf(lo[q][cc], v);
                    hi[q][cc] = fmaxf(hi[q][cc], v);
                }
                h[row * w + j] = v;
                if (WF_SELF_SMEM) mine[row * w + j] = v;
            });
            if (s == out && train) {
                __syncthreads();  // the block's logits are written
                const float count = every_step ? (float)batch * steps : (float)batch;  // the mean's rows
                const int* y = labels + (every_step ? (size_t)b0 * steps + t : (size_t)b0);
                float* dl = dz + act_off[s] + ((size_t)t * batch + b0) * w;
                for (int row = threadIdx.x; row < n; row += THREADS)
                    softmax_row(h + row * w, y[row * (every_step ? steps : 1)], w, count, dl + row * w, loss, right,
                                s1, s2, s3);
            }
        }
        publish(fwd + s * n_rb + r, pending, release_every, t == steps - 1);  // also frees the buffers read at step t
    }
    if (s != out) {  // each neuron's range over the block's rows and every step: a partial per row block
        for (int i = threadIdx.x; i < THREADS * WF_COLS; i += THREADS) { lo_s[i] = INFINITY; hi_s[i] = -INFINITY; }
        __syncthreads();
        const int groups = w <= THREADS ? THREADS / w : 1;
#pragma unroll
        for (int cc = 0; cc < WF_COLS; ++cc) {
            if (cc >= c.nc) continue;
            float l = INFINITY, u = -INFINITY;
#pragma unroll
            for (int q = 0; q < WF_ROWS; ++q) if (q < o.nr) { l = fminf(l, lo[q][cc]); u = fmaxf(u, hi[q][cc]); }
            const int slot = w <= THREADS ? (int)threadIdx.x : c.j0 + cc * c.cstep;  // the thread's own
            lo_s[slot] = l; hi_s[slot] = u;
        }
        __syncthreads();
        for (int j = threadIdx.x; j < w; j += THREADS) {
            float l = INFINITY, u = -INFINITY;
            for (int g = 0; g < groups; ++g) { l = fminf(l, lo_s[g * w + j]); u = fmaxf(u, hi_s[g * w + j]); }
            hmin[(size_t)r * n_cols + col_off[s] + j] = l;
            hmax[(size_t)r * n_cols + col_off[s] + j] = u;
        }
    }
    if (!train) return;

    // ---- backward through time
    if (s == out) {
        __syncthreads();  // dL/dlogits is there at every step it is read: done at every step at once
        if (threadIdx.x == 0) release_add(bwd + s * n_rb + r, steps);
    } else {
        __syncthreads();  // the forward's reads of the chunks, the weights and the edges are done
        for (int i = threadIdx.x; i < n_out; i += THREADS) {
            int* ed = edges + WF_EDGE * i;
            const int e = out_ptr[s] + i;
            ed[0] = out_dst[e]; ed[1] = out_delay[e]; ed[2] = out_woff[e]; ed[3] = width[out_dst[e]];
            ed[4] = ed[5] = 0;
        }
        if (stage) {  // out-edge blocks as they are: edge e's (width[dst] x w)
            int off = 0;
            for (int e = out_ptr[s]; e < out_ptr[s + 1]; ++e) {
                const int size = width[out_dst[e]] * w;
                for (int i = threadIdx.x; i < size; i += THREADS) wsm[off + i] = params[out_woff[e] + i];
                off += size;
            }
        }
        __syncthreads();
        for (int t = steps - 1; t >= 0; --t) {
            const float* h = act + act_off[s] + ((size_t)t * batch + b0) * w;
            // the thread's first output's h(t), loaded before the edges so its latency hides behind them
            const float h_first = o.nr > 0 && o.nc > 0 ? __ldcg(h + o.r0 * w + o.j0) : 0.f;
            float acc[WF_ROWS][WF_COLS];
            zero(acc);
            int off = 0, boff = 0;
            for (int i = 0; i < n_out; ++i) {
                int* ed = edges + WF_EDGE * i;
                const int d = ed[0], tt = t + ed[1], wd = ed[3];
                float* buf = chunks + boff;
                if (tt < steps && (d != out || every_step || tt == steps - 1)) {
                    const bool self = WF_SELF_SMEM && d == s && ed[1] == 1;
                    const float* rows_in;
                    if (self) {
                        rows_in = own + (tt & 1) * rows * max_in;  // dz(t + 1), written before the last barrier
                    } else {
                        int first = ed[4];
                        if (tt < first || tt >= ed[5]) {  // wait, then stage steps down to tt - chunk + 1
                            flush(bwd + s * n_rb + r, pending);
                            const int done = wait_until(bwd + d * n_rb + r, steps - tt, scalars);
                            if (done < 0) return;
                            first = max(tt - chunk + 1, steps - done);  // the consumer did steps - done .. steps - 1
                            if (d == out && !every_step) first = tt;    // the output's dz is there at its last step only
                            stage_steps(buf, dz + act_off[d] + ((size_t)first * batch + b0) * wd, tt - first + 1, n,
                                        wd, (size_t)batch * wd, wd);
                            __syncthreads();
                            if (threadIdx.x == 0) { ed[4] = first; ed[5] = tt + 1; }
                        }
                        rows_in = buf + (tt - first) * n * wd;
                    }
                    if (stage) accumulate(acc, c, rows_in, wd, wsm + off, w, 1);
                    else accumulate(acc, c, rows_in, wd, params + ed[2], w, 1);
                }
                off += wd * w;
                boff += chunk * rows * wd;
            }
            reduce_parts(acc, c, n, w, red);
            float* g = dz + act_off[s] + ((size_t)t * batch + b0) * w;
            float* mine = own + (t & 1) * rows * max_in;
            each_output(o, [&](int q, int cc, int row, int j) {
                const float hv = q == 0 && cc == 0 ? h_first : __ldcg(h + row * w + j);
                mask_and_count(acc[q][cc], hv, g + row * w + j, s1, s2, s3);
                if (WF_SELF_SMEM) mine[row * w + j] = hv > 0.f ? acc[q][cc] : 0.f;
            });
            publish(bwd + s * n_rb + r, pending, release_every, t == 0);
        }
    }
    add_group_stats(stats, s, s1, s2, s3, scratch);
    loss = block_sum(loss, scratch);
    const double correct = block_sum((double)right, scratch);
    if (threadIdx.x == 0 && s == out) {
        atomicAdd(scalars, loss);
        atomicAdd((int*)scalars + 2, (int)correct);
    }
}

// wavefront_weight_grad: one block per item (items[5 i..5 i + 4] = edge, j0, q0, chunk, slot): the
// WF_TILE x WF_TILE tile at (j0, q0) of in-edge `edge`'s gradient (edge -1: the slot's bias, a
// source of one constant 1), summed over batch rows and the steps of time chunk `chunk` (steps
// chunk * steps / n_chunks .. (chunk + 1) * steps / n_chunks - 1, from the edge's delay on, and
// for the output only the steps it is read), written to partials + chunk * n_params at the
// parameter's own offset. 256 threads as 16 x 16, each 2 x 2 outputs; rows staged WF_TILE at a time.
extern "C" __global__ void __launch_bounds__(THREADS) wavefront_weight_grad(
    const int* __restrict__ items, const int* __restrict__ width, const int* __restrict__ act_off,
    const int* __restrict__ bias_off, const int* __restrict__ in_src, const int* __restrict__ in_delay,
    const int* __restrict__ in_woff, int n_slots, int steps, int batch, int n_inputs, int n_chunks, int n_params,
    int every_step, const float* __restrict__ x, const float* __restrict__ act, const float* __restrict__ dz,
    float* __restrict__ partials)
{
    __shared__ float dz_s[WF_TILE][WF_TILE + 1], src_s[WF_TILE][WF_TILE + 1];
    const int* item = items + 5 * blockIdx.x;
    const int e = item[0], j0 = item[1], q0 = item[2], chunk = item[3], s = item[4];
    const int w = width[s];
    const int src = e < 0 ? -2 : in_src[e], k = e < 0 ? 0 : in_delay[e];
    const int ws = src == -2 ? 1 : src < 0 ? n_inputs : width[src];
    int t_lo = max(chunk * steps / n_chunks, k), t_hi = (chunk + 1) * steps / n_chunks;
    if (s == n_slots - 1 && !every_step) t_lo = max(t_lo, steps - 1);
    const int tx = threadIdx.x % HALF, ty = threadIdx.x / HALF;
    float acc[2][2] = {{0.f, 0.f}, {0.f, 0.f}};
    const int total = max(t_hi - t_lo, 0) * batch;  // rows (t, b) of this chunk
    for (int base = 0; base < total; base += WF_TILE) {
        for (int i = threadIdx.x; i < WF_TILE * WF_TILE; i += THREADS) {
            const int row = i / WF_TILE, col = i % WF_TILE, kk = base + row;
            float g = 0.f, v = 0.f;
            if (kk < total) {
                const int t = t_lo + kk / batch, b = kk % batch;
                if (j0 + col < w) g = __ldcg(dz + act_off[s] + ((size_t)t * batch + b) * w + j0 + col);
                if (q0 + col < ws) {
                    if (src == -2) v = 1.f;
                    else if (src < 0) v = x[((size_t)b * steps + (t - k)) * n_inputs + q0 + col];
                    else v = __ldcg(act + act_off[src] + ((size_t)(t - k) * batch + b) * ws + q0 + col);
                }
            }
            dz_s[row][col] = g;
            src_s[row][col] = v;
        }
        __syncthreads();
#pragma unroll 8
        for (int kk = 0; kk < WF_TILE; ++kk) {
            const float g0 = dz_s[kk][ty], g1 = dz_s[kk][ty + HALF];
            const float v0 = src_s[kk][tx], v1 = src_s[kk][tx + HALF];
            acc[0][0] = fmaf(g0, v0, acc[0][0]); acc[0][1] = fmaf(g0, v1, acc[0][1]);
            acc[1][0] = fmaf(g1, v0, acc[1][0]); acc[1][1] = fmaf(g1, v1, acc[1][1]);
        }
        __syncthreads();
    }
    float* part = partials + (size_t)chunk * n_params + (e < 0 ? bias_off[s] : in_woff[e]);
#pragma unroll
    for (int a = 0; a < 2; ++a)
#pragma unroll
        for (int b = 0; b < 2; ++b) {
            const int j = j0 + ty + a * HALF, q = q0 + tx + b * HALF;
            if (j < w && q < ws) part[(size_t)j * ws + q] = acc[a][b];
        }
}

// wavefront_reduce: grads[i] = the sum over the n_chunks partials of parameter i, in chunk order;
// the sum of their squares into scalars[2] (the step guard's). Launch: grid ceil(n / THREADS).
extern "C" __global__ void wavefront_reduce(const float* __restrict__ partials, int n_chunks, int n_params,
                                            float* __restrict__ grads, double* scalars)
{
    __shared__ double scratch[THREADS / 32];
    const int i = blockIdx.x * THREADS + threadIdx.x;
    double sq = 0.0;
    if (i < n_params) {
        float g = 0.f;
        for (int c = 0; c < n_chunks; ++c) g += partials[(size_t)c * n_params + i];
        grads[i] = g;
        sq = (double)g * g;
    }
    sq = block_sum(sq, scratch);
    if (threadIdx.x == 0) atomicAdd(scalars + 2, sq);
}
