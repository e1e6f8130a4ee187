// rows.cu: the row-parallel persistent executor (dataflow_rows): one launch runs a whole training
// step, like dataflow.cu, but a work item is a group's CH neurons over the whole batch, one batch
// row per thread, so that a group of a few neurons is one item and its hand-off is one counter.
//
// Why rows: in a DAG of narrow groups (8-64 neurons, fan-in 4) a TILE x TILE tile is mostly
// empty and an item's time is its latency, not its arithmetic. Here a thread keeps CH running
// sums for its row; the item's weights (every in-edge's CH rows, or every out-edge's CH columns)
// are staged in shared memory once, before the item waits for its inputs, and read as broadcast
// float4s; the inputs are streamed as float4s, RQ of them in flight per thread. An item whose
// inputs fit one round does not wait for all of them: each warp takes every input whose group is
// complete (accumulate_as_ready), in level order, so the work left when the last one arrives is
// that input's share; the order of the sum is fixed by the topology, not by which finished first.
//
// rows_step: the grid holds as many blocks as fit at once; each takes the next item from a global
// counter. Items are numbered so that every item's inputs come from items with smaller numbers:
//   input                   the input group's rows are there (uploaded before the launch)
//   forward (task)          h_s[:, j0..j0+CH) = act(b + sum over in-edges h_src W^T); the forward
//                           tasks in level order (task lists built with chunk CH, topology.cu)
//   loss                    softmax cross-entropy of every row, the output group's dz and bias
//                           gradient
//   backward (task)         dz_s[:, k0..k0+CH) = (sum over out-edges dz_d W) * (h_s > 0), its
//                           statistics and bias gradient
//   weight (task)           the weight gradients of s's out-edges at columns k0..k0+CH (they need
//                           every consumer's dz, not dz_s); backward and weight items interleaved
//                           as bwd_order says: a level's weight items after the backward items of
//                           the levels LAG below it, so that they fill blocks the critical path
//                           leaves idle instead of holding the blocks it needs (genlab/engines/cuda.py)
//   input weight (k0, o0)   the weight gradients of the input group's out-edges o0..o0+EW-1
//   update (chunk)          update_chunk over CHUNK parameters, once every gradient is in
// Counters (genlab.cuh, zeroed before the launch), per slot s: fdone[s] forward items of s done (the last one
// adds 1 to fready of every consumer); fready[s] sources complete (s starts at its in-degree);
// bdone[s] backward items done (the last adds 1 to bready of every hidden source and to
// gready[s]); bready[s] consumers complete (s starts at its out-degree); ngrad: gradient items
// done. Publication as in dataflow.cu (genlab.cuh: wait_for, finish_item); data written inside
// the launch is read through L2 (__ldcg).
// trace (optional, else null): 4 words per item: item | SM << 32, and the times (globaltimer, ns)
// it was taken, its inputs were complete, it was done (CudaEngine.trace_step).
// Activations are group-major (ld = 0). Launch: grid (resident blocks), THREADS; counters, stats
// and scalars zeroed. A split output's forward items write their parts (forward.cu); the loss
// item adds them into the logits in part order first.
#include "genlab.cuh"
#include "loss.cu"
#include "backward.cu"
#include "optim.cu"

// CH (neurons per item: the running sums of a thread) and EW (out-edges of the input group per
// weight item) come from constants.cuh
// NQ, RQ and ROWS_BLOCKS may be set before this file (the variant harness,
// benchmarks/kernels/rows_variants.py, tries others)
#ifndef NQ
#define NQ 64          // quads (4 consecutive inputs of one edge) staged per round
#endif
#ifndef RQ
#define RQ 4           // quads of a row in flight at once
#endif
#ifndef ROWS_BLOCKS
#define ROWS_BLOCKS 2  // blocks an SM holds (__launch_bounds__)
#endif
static_assert(4 * NQ >= THREADS, "ws holds the weight-gradient pass's dz rows: THREADS x CH floats");
#define FULL 0xffffffffu

struct RowsShared {
    float ws[4 * NQ * CH];   // staged weights: row 4q+i holds the CH columns of input i of quad q;
                             // the weight-gradient pass reuses it for dz rows [THREADS][CH]
    float hs[THREADS * CH];  // h of the item's CH neurons, a row per thread (weight gradients)
    float red[4 * CH * CH];  // partial sums of the weight-gradient pass; bias sums per warp
    float bias[CH];
    int qx[NQ], qstride[NQ], qn[NQ], qw[NQ], qcs[NQ], qis[NQ];  // per quad: input offset, row length,
                                                                // inputs used, weight offset and strides
    int e_q0[NQ], e_slot[NQ], e_target[NQ];  // per edge that starts in the round: its first quad, the
                                             // other group's slot, the count at which it is complete,
    int e_key[NQ], e_order[NQ];              // when it is likely complete, the edges in that order
    int ne;                                  // edges that start in the round
    int us_start[33], us_count[33], us_pre[34];  // the fused update's spans (update_item_params)
    int nq, cur_e, cur_k, item, flag;
    unsigned long long t0, t1;  // when the item was taken, when its inputs were complete (trace)
    double scratch[THREADS / 32];
    double sums[THREADS / 32][3];  // per warp: sum of dL/dh, of its squares, of h dL/dh
};

__device__ __forceinline__ unsigned long long now_ns()
{
    unsigned long long t;
    asm volatile("mov.u64 %0, %%globaltimer;" : "=l"(t));
    return t;
}

__device__ __forceinline__ unsigned int smid()
{
    unsigned int id;
    asm volatile("mov.u32 %0, %%smid;" : "=r"(id));
    return id;
}

struct RowsNet {  // the topology and buffers the item functions read
    const int *width, *act_off, *in_src, *out_dst, *in_woff, *out_woff, *level;
    const float* params;
    float *grads, *act, *dz;
    int batch, input_slot, output_slot;
};

// The count of its items done at which a group's h (back: its dz) is complete, as the item that
// reads it sees it: its CH-neuron chunks (one forward item each; one backward item each, or the
// one loss item for the output group); the input group is there before the launch (0).
__device__ __forceinline__ int complete_at(const RowsNet& N, bool back, int other, int width)
{
    if (back) return other == N.output_slot ? 1 : (width + CH - 1) / CH;
    return other == N.input_slot ? 0 : (width + CH - 1) / CH;
}

// Plan the next round of an item's inputs, from the cursor (cur_e, cur_k) over the edge list up to
// e_end: warp 0 lays out up to NQ quads, 32 edges at a time (a lane per edge, a scan of their quad
// counts), cutting an edge wider than what is left at a quad boundary. back: out-edges (the
// consumers' dz; weights W[j][col0 + c], column stride 1, row stride w_self), else in-edges (the
// sources' h; weights W[col0 + c][k], column stride n). Ends with __syncthreads.
__device__ void plan_round(RowsShared& S, const RowsNet& N, bool back, int e_end, int col0, int w_self)
{
    if (threadIdx.x < 32) {
        const int lane = threadIdx.x;
        int e = S.cur_e, k = S.cur_k, nq = 0, ne = 0;
        while (nq < NQ && e < e_end) {
            const int idx = e + lane;
            int n = 0, off = 0, woff = 0;
            if (idx < e_end) {
                const int other = back ? N.out_dst[idx] : N.in_src[idx];
                woff = back ? N.out_woff[idx] : N.in_woff[idx];
                n = N.width[other];
                off = N.act_off[other];
            }
            const int k0 = lane == 0 ? k : 0, cnt = idx < e_end ? (n - k0 + 3) / 4 : 0;
            int incl = cnt;
            for (int o = 1; o < 32; o <<= 1) {
                const int v = __shfl_up_sync(FULL, incl, o);
                if (lane >= o) incl += v;
            }
            const int pre = incl - cnt;
            const bool starts = idx < e_end && nq + pre < NQ && (lane > 0 || k == 0);  // the edge's first quad is here
            const unsigned started = __ballot_sync(FULL, starts);
            if (starts) {
                const int i = ne + __popc(started & ((1u << lane) - 1));
                S.e_q0[i] = nq + pre;
                S.e_slot[i] = back ? N.out_dst[idx] : N.in_src[idx];
                S.e_target[i] = complete_at(N, back, S.e_slot[i], n);
                // sources complete in level order, consumers' dz from the deepest level up
                S.e_key[i] = back ? -N.level[S.e_slot[i]] : N.level[S.e_slot[i]];
            }
            ne += __popc(started);
            for (int i = 0; i < cnt && nq + pre + i < NQ; ++i) {
                const int q = nq + pre + i, kk = k0 + 4 * i;
                S.qx[q] = off + kk;
                S.qstride[q] = n;
                S.qn[q] = min(4, n - kk);
                if (back) { S.qw[q] = woff + kk * w_self + col0; S.qcs[q] = 1; S.qis[q] = w_self; }
                else { S.qw[q] = woff + col0 * n + kk; S.qcs[q] = n; S.qis[q] = 1; }
            }
            const unsigned over = __ballot_sync(FULL, nq + incl > NQ);
            if (!over) {
                nq += __shfl_sync(FULL, incl, 31);
                e = min(e + 32, e_end);
                k = 0;
            } else {
                const int c = __ffs(over) - 1;
                const int pre_c = __shfl_sync(FULL, pre, c), k0_c = __shfl_sync(FULL, k0, c);
                k = k0_c + 4 * (NQ - nq - pre_c);
                e += c;
                nq = NQ;
            }
        }
        __syncwarp();  // every lane has read the cursor and written its quads
        if (lane == 0) { S.nq = nq; S.ne = ne; S.cur_e = e; S.cur_k = k; }
        if (e >= e_end) {  // the item's only round: its edges in the order they are likely complete
            __syncwarp();  // (by key, then edge: fixed by the topology, so the sum's order is too)
            for (int i = lane; i < ne; i += 32) {
                int rank = 0;
                for (int j = 0; j < ne; ++j) rank += S.e_key[j] < S.e_key[i] || (S.e_key[j] == S.e_key[i] && j < i);
                S.e_order[rank] = i;
            }
        }
    }
    __syncthreads();
}

// Stage the planned round's weights: ws[4q + i][c], zero past the quad's inputs or the item's
// ncols columns. Read through L2: the forward items update parameters inside the launch
// (update_item_params), and another SM's L1 may still hold their old values. No barrier (the
// caller's wait_for or __syncthreads follows).
__device__ __forceinline__ void stage_weights(RowsShared& S, const float* params, int ncols)
{
    const int rows = 4 * S.nq;
    for (int i = threadIdx.x; i < rows * CH; i += THREADS) {
        const int r = i / CH, c = i % CH, q = r >> 2, ii = r & 3;
        S.ws[i] = (ii < S.qn[q] && c < ncols) ? __ldcg(params + S.qw[q] + c * S.qcs[q] + ii * S.qis[q]) : 0.f;
    }
}

__device__ __forceinline__ float4 load_quad(const RowsShared& S, const float* buf, int q, int b)
{
    const int n = S.qn[q], stride = S.qstride[q], off = S.qx[q];
    const float* p = buf + off + (long long)b * stride;
    if (n == 4 && ((off | stride) & 3) == 0) return __ldcg(reinterpret_cast<const float4*>(p));
    float4 v = make_float4(__ldcg(p), 0.f, 0.f, 0.f);
    if (n > 1) v.y = __ldcg(p + 1);
    if (n > 2) v.z = __ldcg(p + 2);
    if (n > 3) v.w = __ldcg(p + 3);
    return v;
}

__device__ __forceinline__ void fma_row(float acc[CH], float x, const float* w)
{
    const float4* w4 = reinterpret_cast<const float4*>(w);
#pragma unroll
    for (int c = 0; c < CH / 4; ++c) {
        const float4 v = w4[c];
        acc[4 * c] += x * v.x; acc[4 * c + 1] += x * v.y; acc[4 * c + 2] += x * v.z; acc[4 * c + 3] += x * v.w;
    }
}

// acc[c] += sum over the round's quads q_begin..nq-1 of row b's inputs times ws.
__device__ __forceinline__ void accumulate(float acc[CH], const RowsShared& S, const float* buf, int b, bool active,
                                           int q_begin = 0, int nq = -1)
{
    if (nq < 0) nq = S.nq;
    for (int q0 = q_begin; q0 < nq; q0 += RQ) {
        float4 v[RQ];
#pragma unroll
        for (int u = 0; u < RQ; ++u)
            v[u] = (active && q0 + u < nq) ? load_quad(S, buf, q0 + u, b) : make_float4(0.f, 0.f, 0.f, 0.f);
#pragma unroll
        for (int u = 0; u < RQ; ++u)
            if (q0 + u < nq) {
                const float* w = S.ws + 4 * (q0 + u) * CH;
                fma_row(acc, v[u].x, w);
                fma_row(acc, v[u].y, w + CH);
                fma_row(acc, v[u].z, w + 2 * CH);
                fma_row(acc, v[u].w, w + 3 * CH);
            }
    }
}

// acc = the round's sum, each edge's quads taken as soon as the other group is complete (its count
// in done[slot] reached e_target), edge after edge in e_order (the order they are likely complete:
// by level): each warp waits on its own (every lane reads the count with acquire, one request a
// warp; no block barrier), so the item works on the inputs that are there while the others are
// still being made. The order of the sum is fixed by the topology: a step's result does not depend
// on which source finished first (the edges taken as they complete made W2's step 25% shorter but
// its results vary from run to run). For a round that holds every edge of the item. `*ready`
// (thread 0, when tracing): when its warp found the last edges complete.
__device__ __forceinline__ void accumulate_as_ready(float acc[CH], const RowsShared& S, const float* buf, int b,
                                                    bool active, const int* done, unsigned long long* ready)
{
#pragma unroll
    for (int c = 0; c < CH; ++c) acc[c] = 0.f;
    const int ne = S.ne;
    // the lanes read the counts of the next 32 edges at once; every complete edge up to the first
    // incomplete one is taken, with one round trip for all their counts
    const int lane = threadIdx.x & 31;
    for (int k = 0; k < ne;) {
        const int i = k + lane < ne ? S.e_order[k + lane] : -1;
        const bool complete = i < 0 || load_acquire(done + S.e_slot[i]) >= S.e_target[i];
        const unsigned waiting = __ballot_sync(FULL, !complete);
        const int upto = min(waiting ? __ffs(waiting) - 1 : 32, ne - k);
        if (upto == 0) {
            __nanosleep(20);
            continue;
        }
        __syncwarp();  // the lanes that read the counts order every lane's reads after them
        if (k + upto == ne && ready && threadIdx.x == 0) *ready = now_ns();
        for (const int end = k + upto; k < end; ++k) {
            const int e = S.e_order[k];
            accumulate(acc, S, buf, b, active, S.e_q0[e], e + 1 < ne ? S.e_q0[e + 1] : S.nq);
        }
    }
}

// Every round of the item's inputs for one pass of rows: acc = sum over edges e_begin..e_end-1.
// The first round is planned and staged by the caller (before it waits); with one round only it
// stays staged for every pass.
__device__ __forceinline__ void gather_rows(RowsShared& S, const RowsNet& N, bool back, int e_begin, int e_end, int col0,
                            int w_self, int ncols, const float* buf, int b, bool active, bool restage,
                            float acc[CH])
{
#pragma unroll
    for (int c = 0; c < CH; ++c) acc[c] = 0.f;
    if (restage) {
        __syncthreads();
        if (threadIdx.x == 0) { S.cur_e = e_begin; S.cur_k = 0; }
        __syncthreads();
        plan_round(S, N, back, e_end, col0, w_self);
        stage_weights(S, N.params, ncols);
        __syncthreads();
    }
    for (;;) {
        accumulate(acc, S, buf, b, active);
        if (S.cur_e >= e_end) break;
        __syncthreads();
        plan_round(S, N, back, e_end, col0, w_self);
        stage_weights(S, N.params, ncols);
        __syncthreads();
    }
}

// Row b's CH values of a group-major block (row length w) from column col0, zero past ncols.
__device__ __forceinline__ void load_row(float v[CH], const float* base, int b, int w, int col0, int ncols,
                                         bool active)
{
    const float* p = base + (long long)b * w + col0;
    if (active && ncols == CH && ((reinterpret_cast<unsigned long long>(p) & 15) == 0)) {
#pragma unroll
        for (int c = 0; c < CH; c += 4) {
            const float4 x = __ldcg(reinterpret_cast<const float4*>(p + c));
            v[c] = x.x; v[c + 1] = x.y; v[c + 2] = x.z; v[c + 3] = x.w;
        }
        return;
    }
#pragma unroll
    for (int c = 0; c < CH; ++c) v[c] = (active && c < ncols) ? __ldcg(p + c) : 0.f;
}

__device__ __forceinline__ void store_row(const float v[CH], float* base, int b, int w, int col0, int ncols,
                                          bool active)
{
    if (!active) return;
    float* p = base + (long long)b * w + col0;
    if (ncols == CH && ((reinterpret_cast<unsigned long long>(p) & 15) == 0)) {
#pragma unroll
        for (int c = 0; c < CH; c += 4)
            *reinterpret_cast<float4*>(p + c) = make_float4(v[c], v[c + 1], v[c + 2], v[c + 3]);
        return;
    }
#pragma unroll
    for (int c = 0; c < CH; ++c)
        if (c < ncols) p[c] = v[c];
}

// One halving step of warp_column_sums: lanes with `bit` set keep columns half.., the others ..half.
template <int half, int bit>
__device__ __forceinline__ void fold_columns(float v[CH], bool upper)
{
#pragma unroll
    for (int i = 0; i < half; ++i) {  // both halves are sent: a select of array elements would put
        const float a = v[i], b = v[i + half];  // the array in local memory
        const float ra = __shfl_xor_sync(FULL, a, bit), rb = __shfl_xor_sync(FULL, b, bit);
        v[i] = upper ? b + rb : a + ra;
    }
}

// Sum of v[c] over the warp for CH = 16 columns: afterwards lane l holds column (l >> 1) & 15's total.
__device__ __forceinline__ float warp_column_sums(float v[CH])
{
    const int lane = threadIdx.x & 31;
    fold_columns<8, 16>(v, lane & 16);
    fold_columns<4, 8>(v, lane & 8);
    fold_columns<2, 4>(v, lane & 4);
    fold_columns<1, 2>(v, lane & 2);
    return v[0] + __shfl_xor_sync(FULL, v[0], 1);
}

// Weight gradients of out-edges o0..o1-1 of slot s at its columns k0..k0+ncols-1:
// dW_e[j][k0 + k] = sum over rows of dz_d[b][j] h_s[b][k0 + k], in CH x CH blocks; a thread sums a
// 2 x 2 block over a quarter of the rows (staged in shared memory), the quarters are added at the
// end. Each warp adds its sum of squares into wstats of the consumer; returns the warp's total
// (in lane 0; the caller adds it to the whole gradient's).
__device__ double weight_grads(RowsShared& S, const RowsNet& N, int s, int k0, int o0, int o1, double* wstats)
{
    const int w = N.width[s], ncols = min(CH, w - k0), passes = (N.batch + THREADS - 1) / THREADS;
    const float* H = N.act + N.act_off[s];
    const int t = threadIdx.x, rg = t >> 6, q = t & 63, jp = q >> 3, kp = q & 7, lane = t & 31;
    auto stage_h = [&](int pass) {
        float v[CH];
        const int b = pass * THREADS + t;
        load_row(v, H, b, w, k0, ncols, b < N.batch);
#pragma unroll
        for (int c = 0; c < CH; ++c) S.hs[t * CH + c] = v[c];
    };
    if (passes == 1) stage_h(0);  // seen after the first barrier below
    double total = 0.0;
    for (int o = o0; o < o1; ++o) {
        const int d = N.out_dst[o], wd = N.width[d], woff = N.out_woff[o];
        const float* D = N.dz + N.act_off[d];
        for (int j0 = 0; j0 < wd; j0 += CH) {
            float a00 = 0.f, a01 = 0.f, a10 = 0.f, a11 = 0.f;
            for (int pass = 0; pass < passes; ++pass) {
                const int b = pass * THREADS + t;
                float v[CH];
                load_row(v, D, b, wd, j0, min(CH, wd - j0), b < N.batch);  // in flight across the barrier
                __syncthreads();  // ws, hs and red are free
#pragma unroll
                for (int c = 0; c < CH; ++c) S.ws[t * CH + c] = v[c];
                if (passes > 1) stage_h(pass);
                __syncthreads();
#pragma unroll 8
                for (int r = rg * 64; r < rg * 64 + 64; ++r) {
                    const float2 dd = *reinterpret_cast<const float2*>(S.ws + r * CH + 2 * jp);
                    const float2 hh = *reinterpret_cast<const float2*>(S.hs + r * CH + 2 * kp);
                    a00 += dd.x * hh.x; a01 += dd.x * hh.y; a10 += dd.y * hh.x; a11 += dd.y * hh.y;
                }
            }
            float* part = S.red + rg * CH * CH;
            part[(2 * jp) * CH + 2 * kp] = a00; part[(2 * jp) * CH + 2 * kp + 1] = a01;
            part[(2 * jp + 1) * CH + 2 * kp] = a10; part[(2 * jp + 1) * CH + 2 * kp + 1] = a11;
            __syncthreads();
            const int j = t / CH, k = t % CH;
            const float g = S.red[t] + S.red[CH * CH + t] + S.red[2 * CH * CH + t] + S.red[3 * CH * CH + t];
            double sq = 0.0;
            if (j0 + j < wd && k < ncols) {
                N.grads[woff + (j0 + j) * w + k0 + k] = g;
                sq = (double)g * g;
            }
            for (int off = 16; off > 0; off >>= 1) sq += __shfl_xor_sync(FULL, sq, off);
            if (lane == 0) {
                atomicAdd(wstats + d, sq);
                total += sq;
            }
        }
    }
    return total;
}

// The optimizer's arguments (optim.cu's update_four): the kind, three state buffers, lr, three
// hyper-parameters and Adam's logs of beta1 and beta2.
struct RowsOpt {
    int optimizer;
    float *state0, *state1, *state2;
    float lr, hyper1, hyper2, eps;
    double log_beta1, log_beta2;
};

// Update `count` (<= 4) parameters from i: as a float4 where i is 16-byte aligned and count 4,
// else one by one.
__device__ __forceinline__ void update_unit(int i, int count, const RowsOpt& O, float* params, const float* grads,
                                            AdamCorrection& corr)
{
    if (count == 4 && (i & 3) == 0) {
        update_four(i, O.optimizer, params, grads, O.state0, O.state1, O.state2, O.lr, O.hyper1, O.hyper2, O.eps,
                    O.log_beta1, O.log_beta2, corr);
        return;
    }
    for (int j = i; j < i + count; ++j) {
        if (O.optimizer == OPTIMIZER_SGD) sgd_one(j, params, grads, O.state0, O.lr, O.hyper1);
        else adam_one(j, params, grads, O.state0, O.state1, O.state2, O.lr, O.hyper1, O.hyper2, O.eps,
                      O.log_beta1, O.log_beta2, corr);
    }
}

// The fused update (deferred from the previous step): before a forward item stages its weights it
// applies the previous step's optimizer update to exactly the parameters it reads, rows j0..j0+ncols
// of the weight block of each in-edge e0..e1-1 (contiguous: ncols x width of the source) and, for
// the item that adds the bias, bias[j0..j0+ncols). Every parameter is read by exactly one forward
// item, so each is updated once. Spans are laid out 32 at a time by warp 0 (a lane per span, a scan
// of their units of 4 parameters); the block's threads then take units across all of them, so
// that an item's parameters make one round trip to memory. Ends with __syncthreads.
__device__ void update_item_params(RowsShared& S, const RowsNet& N, const RowsOpt& O, float* params,
                                   const float* grads, int e0, int e1, int j0, int ncols, int bias_at)
{
    AdamCorrection corr;
    const int n_spans = e1 - e0 + (bias_at >= 0);
    for (int first = 0; first < n_spans; first += 32) {
        if (threadIdx.x < 32) {
            const int lane = threadIdx.x, i = first + lane;
            int start = 0, count = 0;
            if (i < n_spans) {
                if (e0 + i < e1) {
                    const int n = N.width[N.in_src[e0 + i]];
                    start = N.in_woff[e0 + i] + j0 * n;
                    count = ncols * n;
                } else {
                    start = bias_at;
                    count = ncols;
                }
            }
            const int units = (count + 3) / 4;
            int incl = units;
            for (int o = 1; o < 32; o <<= 1) {
                const int v = __shfl_up_sync(FULL, incl, o);
                if (lane >= o) incl += v;
            }
            S.us_start[lane] = start;
            S.us_count[lane] = count;
            S.us_pre[lane + 1] = incl;
            if (lane == 0) S.us_pre[0] = 0;
        }
        __syncthreads();
        const int spans = min(32, n_spans - first), total = S.us_pre[spans];
        int k = 0;
        for (int u = threadIdx.x; u < total; u += THREADS) {
            while (S.us_pre[k + 1] <= u) ++k;  // u rises with the loop: the span only moves forward
            const int v = u - S.us_pre[k], i = S.us_start[k] + 4 * v;
            update_unit(i, min(4, S.us_count[k] - 4 * v), O, params, grads, corr);
        }
        __syncthreads();
    }
}

// rows_step's arguments, passed by value (the engine fills a NumPy record of this layout, derived
// from this definition: genlab/engines/cuda/runtime.py).
struct RowsStep {
    const int *width, *act_off, *bias_off, *in_ptr, *in_src, *in_woff, *out_ptr, *out_dst, *out_woff, *hidden, *level;
    const int *fwd_tasks, *bwd_tasks, *bwd_order, *labels;
    float *params, *grads, *act, *dz, *state0, *state1, *state2;
    double *stats, *wstats, *scalars;
    int *counters;
    unsigned long long *trace;
    float *parts;  // a split output's parts (forward.cu): n_parts blocks of cap rows x its width
    int n_fwd, n_bwd, batch, n_slots, input_slot, output_slot, split, optimizer, n_params, pending, defer;
    int n_parts, cap;
    float lr, hyper1, hyper2, eps;
};

// What every item function reads: the arguments and what follows from them.
struct RowsCtx {
    const RowsStep& a;
    RowsNet N;
    RowsOpt O;
    Counters C;
    int passes, in_groups, n_grad_items;
    __device__ int chunks(int s) const { return (a.width[s] + CH - 1) / CH; }
    __device__ int forward_tasks(int s) const {
        return forward_tasks_of(s, CH, a.width, a.in_ptr, a.output_slot, a.split);
    }
    __device__ void forward_complete(int s) const { C.forward_complete(s, 0, a.out_ptr, a.out_dst); }
    // The fready counters of s's consumers (HandOn), read before an item of s waits.
    __device__ HandOn forward_targets(int s) const {
        const int e = a.out_ptr[s] + threadIdx.x, end = a.out_ptr[s + 1];
        return {e < end ? forward_target(e) : -1, e + THREADS, end};
    }
    __device__ int forward_target(int e) const { return a.out_dst[e]; }
    // The bready counters of s's hidden sources.
    __device__ int backward_target(int e) const { const int src = a.in_src[e]; return a.hidden[src] ? src : -1; }
    __device__ HandOn backward_targets(int s) const {
        const int e = a.in_ptr[s] + threadIdx.x, end = a.in_ptr[s + 1];
        return {e < end ? backward_target(e) : -1, e + THREADS, end};
    }
    // An item of s is done: when it was s's last forward item, s's consumers have one more
    // complete source.
    __device__ void forward_done(int s, int total, int* flag, const HandOn& to) const {
        finish_and_hand_on(C.fdone + s, total, flag, C.fready, to, [this](int e) { return forward_target(e); });
    }
    // When it was s's last backward item, s's hidden sources have one more complete consumer and
    // s's weight items may start (gready).
    __device__ void backward_done(int s, int total, int* flag, const HandOn& to) const {
        if (finish_and_hand_on(C.bdone + s, total, flag, C.bready, to, [this](int e) { return backward_target(e); })
            && threadIdx.x == 0)
            atomicAdd(C.gready + s, 1);
    }
};

__device__ __forceinline__ void mark_ready(RowsShared& S, const RowsStep& a)
{
    if (a.trace && threadIdx.x == 0) S.t1 = now_ns();
}

// Forward task t: h_s[:, j0..j0+ncols) of its group from the in-edges e0..e1-1 (the previous
// step's update of exactly these weights applied first, when one is pending).
__device__ void forward_item(RowsShared& S, const RowsCtx& X, int t)
{
    const RowsStep& a = X.a;
    const int* task = a.fwd_tasks + 4 * t;
    const int s = task[0], j0 = task[1], e0 = task[2], e1 = task[3], w = a.width[s];
    const int ncols = min(CH, w - j0);
    const bool out = s == a.output_slot, split_k = out && (e0 != a.in_ptr[s] || e1 != a.in_ptr[s + 1]);
    if (a.pending)
        update_item_params(S, X.N, X.O, a.params, a.grads, e0, e1, j0, ncols, e0 == a.in_ptr[s] ? a.bias_off[s] + j0 : -1);
    const int total = X.forward_tasks(s);  // read before the wait: the hand-off loads nothing
    const HandOn to = X.forward_targets(s);
    if (threadIdx.x == 0) { S.cur_e = e0; S.cur_k = 0; }
    if (threadIdx.x < CH)
        S.bias[threadIdx.x] = (e0 == a.in_ptr[s] && (int)threadIdx.x < ncols) ? __ldcg(a.params + a.bias_off[s] + j0 + threadIdx.x)
                                                                              : 0.f;
    __syncthreads();
    plan_round(S, X.N, false, e1, j0, w);  // the weights go up while the sources may still run
    stage_weights(S, a.params, ncols);
    // one round of quads: each source's share as soon as it is complete; else every source
    // complete first
    const bool single = S.cur_e >= e1, as_ready = single;
    if (as_ready) {
        __syncthreads();
    } else {
        wait_for(X.C.fready + s, a.in_ptr[s + 1] - a.in_ptr[s]);
        mark_ready(S, a);
    }
    for (int pass = 0; pass < X.passes; ++pass) {
        const int b = pass * THREADS + threadIdx.x;
        float acc[CH];
        if (pass == 0 && as_ready)
            accumulate_as_ready(acc, S, a.act, b, b < a.batch, X.C.fdone, a.trace ? &S.t1 : nullptr);
        else
            gather_rows(S, X.N, false, e0, e1, j0, w, ncols, a.act, b, b < a.batch, pass > 0 && !single, acc);
#pragma unroll
        for (int c = 0; c < CH; ++c) acc[c] = out ? acc[c] + S.bias[c] : fmaxf(acc[c] + S.bias[c], 0.f);
        float* block = split_k ? a.parts + (size_t)((e0 - a.in_ptr[s]) / a.split) * a.cap * w : a.act + a.act_off[s];
        store_row(acc, block, b, w, j0, ncols, b < a.batch);
    }
    X.forward_done(s, total, &S.flag, to);
}

// The loss: softmax cross-entropy of every row, the output group's dz and bias gradient.
__device__ void loss_item(RowsShared& S, const RowsCtx& X)
{
    const RowsStep& a = X.a;
    const int s = a.output_slot, w = a.width[s];
    const HandOn to = X.backward_targets(s);
    wait_for(X.C.fdone + s, X.forward_tasks(s));
    mark_ready(S, a);
    if (a.n_parts > 1) {  // a split output: its parts into the logits, in part order (loss.cu)
        sum_output_parts(a.parts, a.n_parts, a.cap, 0, a.batch, w, a.act + a.act_off[s], 0);
        __syncthreads();
    }
    for (int b0 = 0; b0 < a.batch; b0 += THREADS)
        softmax_rows(b0, min(THREADS, a.batch - b0), a.act + a.act_off[s], a.labels, a.batch, w, 0, a.dz + a.act_off[s],
                     a.scalars, (int*)(a.scalars + 1), a.stats, s);
    for (int j0 = 0; j0 < w; j0 += TILE)
        bias_grad_tile(s, j0, a.width, a.act_off, a.bias_off, a.dz, a.grads, a.batch, 0, a.wstats, a.scalars + 2);
    X.backward_done(s, 1, &S.flag, to);
    count_item(X.C.ngrad);
}

// The weight gradients of s's out-edges at columns k0..: every consumer's dz is final.
__device__ void weight_item(RowsShared& S, const RowsCtx& X, int s, int k0)
{
    const RowsStep& a = X.a;
    const int o0 = a.out_ptr[s], o1 = a.out_ptr[s + 1];
    wait_for(X.C.bready + s, o1 - o0);
    mark_ready(S, a);
    const double sq = weight_grads(S, X.N, s, k0, o0, o1, a.wstats);
    if ((threadIdx.x & 31) == 0) atomicAdd(a.scalars + 2, sq);
    count_item(X.C.ngrad);
}

// The bias gradient of s at k0..k0+ncols (from the warps' column sums in S.red) and the
// statistics of dL/dh (s1, s2, s3, per thread), added into their sums.
__device__ void backward_sums(RowsShared& S, const RowsStep& a, int s, int k0, int ncols, double s1, double s2,
                              double s3, float colsum)
{
    const int lane = threadIdx.x & 31, warp = threadIdx.x >> 5;
    for (int off = 16; off > 0; off >>= 1) {
        s1 += __shfl_xor_sync(FULL, s1, off);
        s2 += __shfl_xor_sync(FULL, s2, off);
        s3 += __shfl_xor_sync(FULL, s3, off);
    }
    if (lane == 0) { S.sums[warp][0] = s1; S.sums[warp][1] = s2; S.sums[warp][2] = s3; }
    if ((lane & 1) == 0) S.red[warp * CH + ((lane >> 1) & 15)] = colsum;
    __syncthreads();
    double sq = 0.0;
    if ((int)threadIdx.x < ncols) {
        float db = 0.f;
        for (int v = 0; v < THREADS / 32; ++v) db += S.red[v * CH + threadIdx.x];
        a.grads[a.bias_off[s] + k0 + threadIdx.x] = db;
        sq = (double)db * db;
    }
    sq = block_sum(sq, S.scratch);
    if (threadIdx.x < 3) {
        double total = 0.0;
        for (int v = 0; v < THREADS / 32; ++v) total += S.sums[v][threadIdx.x];
        atomicAdd(a.stats + 3 * s + threadIdx.x, total);
    }
    if (threadIdx.x == 0) {
        atomicAdd(a.wstats + s, sq);
        atomicAdd(a.scalars + 2, sq);
    }
}

// Backward task: dz_s[:, k0..k0+CH) = (sum over out-edges dz_d W) * (h_s > 0), handed on first;
// then its statistics and bias gradient.
__device__ void backward_item(RowsShared& S, const RowsCtx& X, int s, int k0)
{
    const RowsStep& a = X.a;
    const int w = a.width[s], ncols = min(CH, w - k0), o0 = a.out_ptr[s], o1 = a.out_ptr[s + 1];
    const int total = X.chunks(s);
    const HandOn to = X.backward_targets(s);
    if (threadIdx.x == 0) { S.cur_e = o0; S.cur_k = 0; }
    __syncthreads();
    plan_round(S, X.N, true, o1, k0, w);
    // the consumers' forward items are done: they updated the weights staged here
    // (update_item_params), and h_s, their input, is final (mostly long since, but an item
    // taken early in the backward pass may find the deepest levels' forward still running)
    if (threadIdx.x == 0) {
        for (int e = o0; e < o1; ++e) {
            const int d = a.out_dst[e], target = X.forward_tasks(d);
            while (*(volatile const int*)(X.C.fdone + d) < target) __nanosleep(32);
        }
        __threadfence();
    }
    __syncthreads();
    stage_weights(S, a.params, ncols);
    float h[CH];  // the first pass's h goes up while the consumers' backward may still run
    load_row(h, a.act + a.act_off[s], threadIdx.x, w, k0, ncols, (int)threadIdx.x < a.batch);
    const bool single = S.cur_e >= o1, as_ready = single;  // as in forward_item
    if (as_ready) {
        __syncthreads();
    } else {
        wait_for(X.C.bready + s, o1 - o0);
        mark_ready(S, a);
    }
    double s1 = 0.0, s2 = 0.0, s3 = 0.0;
    float colsum = 0.f;
    for (int pass = 0; pass < X.passes; ++pass) {
        const int b = pass * THREADS + threadIdx.x;
        const bool active = b < a.batch;
        float g[CH];
        if (pass == 0 && as_ready)
            accumulate_as_ready(g, S, a.dz, b, active, X.C.bdone, a.trace ? &S.t1 : nullptr);
        else
            gather_rows(S, X.N, true, o0, o1, k0, w, ncols, a.dz, b, active, pass > 0 && !single, g);
        if (pass) load_row(h, a.act + a.act_off[s], b, w, k0, ncols, active);
#pragma unroll
        for (int c = 0; c < CH; ++c) {
            s1 += g[c]; s2 += (double)g[c] * g[c]; s3 += (double)h[c] * g[c];
            g[c] = h[c] > 0.f ? g[c] : 0.f;
        }
        store_row(g, a.dz + a.act_off[s], b, w, k0, ncols, active);
        colsum += warp_column_sums(g);
    }
    // hand dz_s on first (the critical path needs nothing else); then the statistics and the
    // bias gradient, read after the launch or, once ngrad counts this item, by the update
    X.backward_done(s, total, &S.flag, to);
    backward_sums(S, a, s, k0, ncols, s1, s2, s3, colsum);
    count_item(X.C.ngrad);  // the bias gradient and gradsq's share are in
}

// Input weight item i: the weight gradients of the input group's out-edges o0..o0+EW-1 at
// columns k0..k0+CH.
__device__ void input_weight_item(RowsShared& S, const RowsCtx& X, int i)
{
    const RowsStep& a = X.a;
    const int k0 = (i / X.in_groups) * CH, in = a.input_slot;
    const int o0 = a.out_ptr[in] + (i % X.in_groups) * EW, o1 = min(o0 + EW, a.out_ptr[in + 1]);
    for (int o = o0; o < o1; ++o) wait_for(X.C.gready + a.out_dst[o], 1);
    mark_ready(S, a);
    const double sq = weight_grads(S, X.N, in, k0, o0, o1, a.wstats);
    if ((threadIdx.x & 31) == 0) atomicAdd(a.scalars + 2, sq);
    count_item(X.C.ngrad);
}

// Update chunk c, once every gradient is in (refused, like every update, if the step is not finite).
__device__ void update_item(RowsShared& S, const RowsCtx& X, int c)
{
    const RowsStep& a = X.a;
    wait_for(X.C.ngrad, X.n_grad_items);
    mark_ready(S, a);
    if (!finite_step(a.scalars)) return;
    update_chunk(c, a.n_params, a.optimizer, a.params, a.grads, a.state0, a.state1, a.state2, a.lr, a.hyper1,
                 a.hyper2, a.eps);
}

// Take the next item from the global counter (recording the previous one's times when tracing);
// every thread gets its number.
__device__ int take_item(RowsShared& S, const RowsStep& a, const Counters& C, bool taken)
{
    __syncthreads();  // the previous item's shared memory is free
    if (threadIdx.x == 0) {
        if (a.trace && taken) {  // item, SM, taken, inputs complete, done (ns)
            unsigned long long* r = a.trace + 4 * S.item;
            r[0] = S.item | ((unsigned long long)smid() << 32); r[1] = S.t0; r[2] = S.t1; r[3] = now_ns();
        }
        S.item = atomicAdd(C.next, 1);
        S.t0 = S.t1 = a.trace ? now_ns() : 0;
    }
    __syncthreads();
    return S.item;
}

extern "C" __global__ void __launch_bounds__(THREADS, ROWS_BLOCKS) rows_step(const __grid_constant__ RowsStep a)
{
    __shared__ __align__(16) RowsShared S;
    const int in_chunks = (a.width[a.input_slot] + CH - 1) / CH;
    const int in_groups = (a.out_ptr[a.input_slot + 1] - a.out_ptr[a.input_slot] + EW - 1) / EW;
    const int n_inw = in_chunks * in_groups, n_update = a.defer ? 0 : (a.n_params + CHUNK - 1) / CHUNK;
    const RowsCtx X = {
        a,
        {a.width, a.act_off, a.in_src, a.out_dst, a.in_woff, a.out_woff, a.level, a.params, a.grads, a.act, a.dz, a.batch,
         a.input_slot, a.output_slot},
        {a.optimizer, a.state0, a.state1, a.state2, a.lr, a.hyper1, a.hyper2, a.eps,
         a.optimizer ? log((double)a.hyper1) : 0.0, a.optimizer ? log((double)a.hyper2) : 0.0},
        Counters(a.counters, a.n_slots, 1),  // an item covers the whole batch: one tile
        (a.batch + THREADS - 1) / THREADS, in_groups, 2 * a.n_bwd + 1 + n_inw};
    // items, numbered so that every item's inputs come from items with smaller numbers
    const int a_fwd = 1, a_loss = a_fwd + a.n_fwd, a_bwd = a_loss + 1, a_inw = a_bwd + 2 * a.n_bwd;
    const int a_update = a_inw + n_inw, total = a_update + n_update;
    for (bool taken = false;; taken = true) {
        const int item = take_item(S, a, X.C, taken);
        if (item >= total) return;
        if (item < a_fwd) {  // the input group's rows are there (uploaded before the launch)
            __threadfence();
            X.forward_complete(a.input_slot);
        } else if (item < a_loss) {
            forward_item(S, X, item - a_fwd);
        } else if (item < a_bwd) {
            loss_item(S, X);
        } else if (item < a_inw) {
            const int order = a.bwd_order[item - a_bwd], t = order >> 1;
            const int s = a.bwd_tasks[2 * t], k0 = a.bwd_tasks[2 * t + 1];
            if (order & 1) weight_item(S, X, s, k0);
            else backward_item(S, X, s, k0);
        } else if (item < a_update) {
            input_weight_item(S, X, item - a_inw);
        } else {
            update_item(S, X, item - a_update);
        }
    }
}
