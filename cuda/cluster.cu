// cluster.cu: the cluster executor: one launch of one thread-block cluster (CLUSTER blocks of
// CLUSTER_THREADS) runs a whole training step of a small network, phase by phase, with the
// cluster's hardware barrier (barrier.cluster, release/acquire) between phases.
//
// Why: in a classroom network (50 groups of 16, batch 32) a level is a few microseconds of
// latency and almost no arithmetic. The dependency-counter executors pay a hand-off, an item's
// setup and a chain of dependent reads of the topology per level; the level executor pays a
// kernel per level. Here the host writes every work item as one record of REC ints (what it
// reads and writes: column offsets, widths, weight offsets, its in- or out-edges inline), each
// warp copies its next item's record while it works on the current one, and an item copies all
// its inputs at once (cp.async through L2, into the warp's WARP_FLOATS of shared memory) before
// summing them. A phase costs the barrier (0.42 us on an H200) and its slowest item
// (benchmarks/NOTES.md: a classroom network's items are 4-8 us, mostly their copies).
//
// Phases (Phase in genlab/engines/cuda/constants.py; `phases`: kind, first record, count, weight
// records among them), their work dealt to the cluster's warps in turn:
//   FORWARD    record x 32 batch rows: h_s[b][j0..j0+nj) = act(b + sum over in-edges h_src W^T),
//              a lane per row keeping CQ running sums; the output group's in-edges may come in
//              parts (records side by side, each writing its sum into `parts`)
//   LOSS       32 rows a warp: the parts' sum in order (written as the output's h), softmax
//              cross-entropy, dL/dlogits, the loss, the correct count and the output group's
//              statistics (loss.cu's softmax_rows, a warp at a time)
//   BACKWARD   record x 32 rows: dz_s[b][k0..k0+nk) = (sum over out-edges dz_d W_e) * (h_s > 0),
//              and the group's statistics of dL/dh (genlab.cuh's mask_and_count)
//   GRADIENTS  weight records (an edge's dW over 16 rows x 32 columns, a lane per column, the batch
//              summed in order) then bias records (32 neurons, a lane each); each adds its sum of
//              squares to wstats, and each warp its records' sum to the step's gradsq
//   UPDATE     the guarded optimizer (optim.cu's update_four), 4 parameters a thread, skipped when
//              the step is not finite (finite_step); only when the executor fuses it (by
//              default the update is a kernel over the whole GPU after this launch)
// Records (genlab/engines/cuda/executors/cluster_plan.py writes them; columns are multiplied by
// the batch capacity: activations are group-major):
//   forward   col, width, j0, nj, bias offset (-1: none), mode (0 hidden: ReLU; 1 the output
//             group; 2 + p its part p), in-edges, overflow, then (col, width, weight offset) of
//             each in-edge (INLINE of them; the rest at plan[overflow..])
//   backward  col, width, k0, nk, slot, 0, out-edges, overflow, then (col, width, weight offset)
//   weight    src col, src width, dst col, dst width, weight offset, dst slot, j0, nj, k0, nk
//   bias      col, width, j0, nj, bias offset, slot
// Data written inside the launch (activations, dz, the scalars) is read through L2 (__ldcg,
// cp.async.cg); parameters are only read before the update phase writes them.
// trace (optional, else null): when each phase ended (block 0, globaltimer ns; word 0 the start),
// then 4 words an item, phase by phase: when it started, when a forward item's first inputs were
// staged and first summed (else 0), when it ended.
// Launch: grid CLUSTER (one cluster), CLUSTER_THREADS, dynamic shared memory (WARP_FLOATS floats +
// 2 records) a warp; stats, wstats and scalars zeroed, the counter word zeroed (the software
// barrier, below sm_90); `parts` holds n_parts x cap x classes floats when n_parts > 1.
#include "genlab.cuh"
#include "optim.cu"

// CL_BLOCKS, CL_THREADS, WARP_FLOATS, CLUSTER_SOFT may be set before this file (the variant
// harness, benchmarks/kernels/cluster_variants.py, tries others)
#ifndef CL_BLOCKS
#define CL_BLOCKS CLUSTER
#endif
#ifndef CL_THREADS
#define CL_THREADS CLUSTER_THREADS
#endif
#ifndef WARP_FLOATS
#define WARP_FLOATS CLUSTER_WARP_FLOATS  // floats of shared memory a warp stages its inputs in
#endif
#define CQ CLUSTER_CHUNK    // neurons of a forward or backward record
#define REC CLUSTER_RECORD  // ints a record
#define INLINE ((REC - 8) / 3)
#define FULL_MASK 0xffffffffu
static_assert(CQ % 4 == 0, "a record's neurons are read as float4s");
static_assert(REC % 4 == 0, "records are copied as 16-byte pieces");
static_assert(WARP_FLOATS >= 32 * (16 + 32), "a weight record stages 32 rows of 16 dz and 32 h");

struct ClusterStep {
    const int *phases, *plan, *labels;
    float *params, *grads, *act, *dz, *state0, *state1, *state2;
    float* parts;  // the output group's logits in n_parts parts (cap x classes each), when n_parts > 1
    double *stats, *wstats, *scalars;
    unsigned *barrier;
    unsigned long long* trace;
    int n_phases, batch, cap, out_col, classes, output_slot, n_parts, optimizer, n_params;
    float lr, hyper1, hyper2, eps;
};

// Every block of the launch waits here until all have arrived; writes before are seen after.
__device__ __forceinline__ void phase_barrier(unsigned* counter, unsigned& target)
{
#if __CUDA_ARCH__ >= 900 && !defined(CLUSTER_SOFT)
    (void)counter; (void)target;
    asm volatile("barrier.cluster.arrive.release.aligned;\n\tbarrier.cluster.wait.acquire.aligned;" ::: "memory");
#else
    __syncthreads();
    target += gridDim.x;
    if (threadIdx.x == 0) {
        __threadfence();
        atomicAdd(counter, 1u);
        unsigned v;
        do {
            asm volatile("ld.acquire.gpu.global.u32 %0, [%1];" : "=r"(v) : "l"(counter) : "memory");
        } while (v < target);
    }
    __syncthreads();
#endif
}

__device__ __forceinline__ double warp_sum(double v)
{
    for (int o = 16; o > 0; o >>= 1) v += __shfl_down_sync(FULL_MASK, v, o);
    return v;
}

__device__ __forceinline__ unsigned long long globaltimer()
{
    unsigned long long t;
    asm volatile("mov.u64 %0, %%globaltimer;" : "=l"(t));
    return t;
}

// Asynchronous 16-byte copies global -> shared through L2 (cp.async.cg, sm_80+); copies_done
// waits for every copy the lane issued and lets the warp see them all.
__device__ __forceinline__ void copy16(void* dst, const void* src)
{
    const unsigned d = (unsigned)__cvta_generic_to_shared(dst);
    asm volatile("cp.async.cg.shared.global [%0], [%1], 16;" :: "r"(d), "l"(src) : "memory");
}

// A 4-byte asynchronous copy through L1 (cp.async.ca: 4-byte copies have no L2-only form). Used
// only for data no later phase of the launch writes (the loss's parts of the logits, the
// gradients phase's h and dz), so a line it brings into L1 cannot go stale; L1 starts each launch
// empty.
__device__ __forceinline__ void copy4(void* dst, const void* src)
{
    const unsigned d = (unsigned)__cvta_generic_to_shared(dst);
    asm volatile("cp.async.ca.shared.global [%0], [%1], 4;" :: "r"(d), "l"(src) : "memory");
}

__device__ __forceinline__ void copies_done()
{
    asm volatile("cp.async.wait_all;" ::: "memory");
    __syncwarp();
}

// n floats (a multiple of 4, on 16 bytes at both ends) copied by the warp's lanes.
__device__ __forceinline__ void copy_span(float* dst, const float* src, int n, int lane)
{
    for (int c = 4 * lane; c < n; c += 128) copy16(dst + c, src + c);
}

// Rows of w floats (a multiple of 4) as they are staged: `stride` floats apart, an odd number of
// 16-byte pieces, so that a lane per row reading float4s meets no bank conflict.
__device__ __forceinline__ int staged_stride(int w) { return (w >> 2) & 1 ? w : w + 4; }

// rows x w floats (rows of w contiguous in global memory) copied to rows `stride` apart.
__device__ __forceinline__ void copy_rows(float* dst, const float* src, int rows, int w, int stride, int lane)
{
    const int q = w >> 2;
    for (int c = lane; c < rows * q; c += 32) copy16(dst + (c / q) * stride + 4 * (c % q), src + 4 * c);
}

// The (col, width, weight offset) of a record's i-th edge.
__device__ __forceinline__ const int* edge_of(const ClusterStep& a, const int* rec, int i)
{
    return i < INLINE ? rec + 8 + 3 * i : a.plan + rec[7] + 3 * (i - INLINE);
}

// h_s[b][j0..j0+nj) for rows b0..b0+31 (a lane each). In rounds: as many in-edges as the warp's
// buffer holds (their rows of h_src and the record's nj rows of W_e) are copied at once, then
// summed from shared memory; an edge whose rows are not on 16 bytes, or too wide for the buffer,
// is read straight from global memory.
__device__ __forceinline__ void forward_warp(const ClusterStep& a, const int* rec, int b0, int lane, float* buf,
                                             unsigned long long* stamp)
{
    const int w = rec[1], j0 = rec[2], nj = rec[3], n_e = rec[6], nr = min(32, a.batch - b0);
    const bool row = lane < nr;
    float acc[CQ];
#pragma unroll
    for (int q = 0; q < CQ; ++q) acc[q] = 0.f;
    for (int i = 0; i < n_e;) {
        int used = 0, end = i;
        for (; end < n_e; ++end) {
            const int* ed = edge_of(a, rec, end);
            const int ws = ed[1];
            const int need = 32 * staged_stride(ws) + CQ * ws;
            if (((ed[0] | ws | ed[2]) & 3) || used + need > WARP_FLOATS) break;
            used += need;
        }
        if (end == i) {  // straight from global memory
            const int* ed = edge_of(a, rec, i++);
            const int ws = ed[1];
            const float* x = a.act + (size_t)ed[0] * a.cap + (size_t)(b0 + (row ? lane : 0)) * ws;
            const float* W = a.params + ed[2] + (size_t)j0 * ws;
#pragma unroll 4
            for (int k = 0; k < ws; ++k) {
                const float v = row ? __ldcg(x + k) : 0.f;
#pragma unroll
                for (int q = 0; q < CQ; ++q)
                    if (q < nj) acc[q] += v * W[(size_t)q * ws + k];
            }
            continue;
        }
        for (int f = i, off = 0; f < end; ++f) {
            const int* ed = edge_of(a, rec, f);
            const int ws = ed[1];
            const int st = staged_stride(ws);
            copy_rows(buf + off, a.act + (size_t)ed[0] * a.cap + (size_t)b0 * ws, nr, ws, st, lane);
            copy_span(buf + off + 32 * st, a.params + ed[2] + (size_t)j0 * ws, nj * ws, lane);
            off += 32 * st + CQ * ws;
        }
        copies_done();
        if (stamp != nullptr && lane == 0 && i == 0) stamp[1] = globaltimer();
        for (int f = i, off = 0; f < end; ++f) {
            const int ws = edge_of(a, rec, f)[1], st = staged_stride(ws);
            const float* xs = buf + off + lane * st;
            const float* W = buf + off + 32 * st;
            if (row)
                for (int k = 0; k < ws; k += 4) {
                    const float4 v = *reinterpret_cast<const float4*>(xs + k);
#pragma unroll
                    for (int q = 0; q < CQ; ++q)
                        if (q < nj) {
                            const float4 u = *reinterpret_cast<const float4*>(W + q * ws + k);
                            acc[q] += v.x * u.x + v.y * u.y + v.z * u.z + v.w * u.w;
                        }
                }
            off += 32 * st + CQ * ws;
        }
        __syncwarp();  // the buffer is free for the next round
        if (stamp != nullptr && lane == 0 && i == 0) stamp[2] = globaltimer();
        i = end;
    }
    if (!row) return;
    const int mode = rec[5];  // 0 hidden (ReLU), 1 the output group, 2 + p its part p
    float* h = mode < 2 ? a.act + (size_t)rec[0] * a.cap + (size_t)(b0 + lane) * w + j0
                        : a.parts + ((size_t)(mode - 2) * a.cap + b0 + lane) * w + j0;
#pragma unroll
    for (int q = 0; q < CQ; ++q)
        if (q < nj) {
            const float z = acc[q] + (rec[4] >= 0 ? a.params[rec[4] + j0 + q] : 0.f);
            h[q] = mode ? z : fmaxf(z, 0.f);
        }
}

// Softmax cross-entropy of rows b0..b0+31 (loss.cu's softmax_rows, a lane a row), the rows'
// logits staged first where they fit the buffer (else read one by one).
__device__ __forceinline__ void loss_warp(const ClusterStep& a, int b0, int lane, float* buf)
{
    const int s = a.output_slot, classes = a.classes, b = b0 + lane, nr = min(32, a.batch - b0);
    const size_t at = (size_t)a.out_col * a.cap + (size_t)b0 * classes;
    const bool parts = a.n_parts > 1;  // the host keeps (n_parts + 1) * 32 * classes <= WARP_FLOATS
    const bool staged = parts || (((a.out_col * a.cap + b0 * classes) & 3) == 0 && 32 * classes <= WARP_FLOATS);
    const float* l = staged ? buf + lane * classes : a.act + at + (size_t)lane * classes;
    if (parts) {  // the logits are the parts' sum, in order; written where the output's h lives
        for (int p = 0; p < a.n_parts; ++p)
            for (int c = lane; c < nr * classes; c += 32)
                copy4(buf + (1 + p) * 32 * classes + c, a.parts + ((size_t)p * a.cap + b0) * classes + c);
        copies_done();
        if (lane < nr)
            for (int c = 0; c < classes; ++c) {
                float z = 0.f;
                for (int p = 0; p < a.n_parts; ++p) z += buf[(1 + p) * 32 * classes + lane * classes + c];
                buf[lane * classes + c] = z;
                a.act[at + (size_t)lane * classes + c] = z;
            }
        __syncwarp();
    } else if (staged) {
        const float* src = a.act + at;
        for (int c = 4 * lane; c < nr * classes; c += 128) {
            if (c + 4 <= nr * classes) copy16(buf + c, src + c);
            else for (int t = c; t < nr * classes; ++t) buf[t] = __ldcg(src + t);
        }
        copies_done();
    }
    double s1 = 0.0, s2 = 0.0, s3 = 0.0, loss = 0.0, right = 0.0;
    if (lane < nr) {
        float* g = a.dz + at + (size_t)lane * classes;
        const int y = a.labels[b];
        auto at_ = [&](int c) { return staged ? l[c] : __ldcg(l + c); };
        float m = at_(0);
        int best = 0;
        for (int c = 1; c < classes; ++c) {
            const float v = at_(c);
            if (v > m) { m = v; best = c; }
        }
        float total = 0.f;
        for (int c = 0; c < classes; ++c) total += expf(at_(c) - m);
        loss = (double)(logf(total) - (at_(y) - m)) / a.batch;
        right = best == y;
        for (int c = 0; c < classes; ++c) {
            const float v = at_(c);
            const float d = (expf(v - m) / total - (c == y ? 1.f : 0.f)) / a.batch;
            g[c] = d;
            s1 += d; s2 += (double)d * d; s3 += (double)v * d;
        }
    }
    __syncwarp();
    loss = warp_sum(loss); s1 = warp_sum(s1); s2 = warp_sum(s2); s3 = warp_sum(s3); right = warp_sum(right);
    if (lane == 0) {
        atomicAdd(a.scalars, loss);
        atomicAdd((int*)(a.scalars + 1), (int)right);
        atomicAdd(a.stats + 3 * s, s1);
        atomicAdd(a.stats + 3 * s + 1, s2);
        atomicAdd(a.stats + 3 * s + 2, s3);
    }
}

// dz_s[b][k0..k0+nk) for rows b0..b0+31: dL/dh pulled from every consumer d (dz_d W_e), masked;
// in rounds as forward_warp (each consumer's rows of dz_d and the CQ columns of W_e).
__device__ __forceinline__ void backward_warp(const ClusterStep& a, const int* rec, int b0, int lane, float* buf)
{
    const int w = rec[1], k0 = rec[2], nk = rec[3], s = rec[4], n_e = rec[6], nr = min(32, a.batch - b0);
    const bool row = lane < nr;
    float acc[CQ];
#pragma unroll
    for (int q = 0; q < CQ; ++q) acc[q] = 0.f;
    for (int i = 0; i < n_e;) {
        int used = 0, end = i;
        for (; end < n_e; ++end) {
            const int* ed = edge_of(a, rec, end);
            const int wd = ed[1];
            const int need = 32 * staged_stride(wd) + CQ * wd;
            if (nk < CQ || ((ed[0] | wd | ed[2] | k0 | w) & 3) || used + need > WARP_FLOATS) break;
            used += need;
        }
        if (end == i) {  // straight from global memory
            const int* ed = edge_of(a, rec, i++);
            const int wd = ed[1];
            const float* D = a.dz + (size_t)ed[0] * a.cap + (size_t)(b0 + (row ? lane : 0)) * wd;
            const float* W = a.params + ed[2] + k0;  // W_e[j][k0 + q] at W[j * w + q]
#pragma unroll 4
            for (int j = 0; j < wd; ++j) {
                const float v = row ? __ldcg(D + j) : 0.f;
#pragma unroll
                for (int q = 0; q < CQ; ++q)
                    if (q < nk) acc[q] += v * W[(size_t)j * w + q];
            }
            continue;
        }
        for (int f = i, off = 0; f < end; ++f) {
            const int* ed = edge_of(a, rec, f);
            const int wd = ed[1];
            const int st = staged_stride(wd);
            copy_rows(buf + off, a.dz + (size_t)ed[0] * a.cap + (size_t)b0 * wd, nr, wd, st, lane);
            const float* W = a.params + ed[2] + k0;
            for (int c = lane; c < wd * (CQ / 4); c += 32)  // row j's CQ columns: CQ / 4 pieces
                copy16(buf + off + 32 * st + 4 * c, W + (size_t)(c / (CQ / 4)) * w + 4 * (c % (CQ / 4)));
            off += 32 * st + CQ * wd;
        }
        copies_done();
        for (int f = i, off = 0; f < end; ++f) {
            const int wd = edge_of(a, rec, f)[1], st = staged_stride(wd);
            const float* ds = buf + off + lane * st;
            const float* W = buf + off + 32 * st;  // [j][q]
            if (row)
                for (int j = 0; j < wd; j += 4) {
                    const float4 v = *reinterpret_cast<const float4*>(ds + j);
                    const float vj[4] = {v.x, v.y, v.z, v.w};
#pragma unroll
                    for (int t = 0; t < 4; ++t)
#pragma unroll
                        for (int q = 0; q < CQ; q += 4) {
                            const float4 u = *reinterpret_cast<const float4*>(W + (j + t) * CQ + q);
                            acc[q] += vj[t] * u.x; acc[q + 1] += vj[t] * u.y;
                            acc[q + 2] += vj[t] * u.z; acc[q + 3] += vj[t] * u.w;
                        }
                }
            off += 32 * st + CQ * wd;
        }
        __syncwarp();
        i = end;
    }
    double s1 = 0.0, s2 = 0.0, s3 = 0.0;
    if (row) {
        const size_t at = (size_t)rec[0] * a.cap + (size_t)(b0 + lane) * w + k0;
#pragma unroll
        for (int q = 0; q < CQ; ++q)
            if (q < nk) mask_and_count(acc[q], __ldcg(a.act + at + q), a.dz + at + q, s1, s2, s3);
    }
    s1 = warp_sum(s1); s2 = warp_sum(s2); s3 = warp_sum(s3);
    if (lane == 0) {
        atomicAdd(a.stats + 3 * s, s1);
        atomicAdd(a.stats + 3 * s + 1, s2);
        atomicAdd(a.stats + 3 * s + 2, s3);
    }
}

// dW_e[j][k] = sum over the batch of dz_dst[b][j] h_src[b][k], j in j0..j0+nj (nj <= 16), k = k0 +
// lane (nk <= 32); 32 rows at a time, their dz and h staged at once (16-byte pieces where the rows
// allow, else 4-byte ones). The batch is summed in order.
__device__ __forceinline__ double weight_warp(const ClusterStep& a, const int* rec, int lane, float* buf)
{
    const int ws = rec[1], wd = rec[3], woff = rec[4], dst = rec[5], j0 = rec[6], nj = rec[7], k0 = rec[8], nk = rec[9];
    const bool col = lane < nk;
    const float* H = a.act + (size_t)rec[0] * a.cap + k0;
    const float* D = a.dz + (size_t)rec[2] * a.cap + j0;
    const bool wide_d = nj == 16 && ((rec[2] | wd | j0) & 3) == 0, wide_h = ((rec[0] | ws | nk) & 3) == 0;
    float* Ds = buf;            // [32 rows][16]
    float* Hs = buf + 32 * 16;  // [32 rows][32]
    float acc[16];
#pragma unroll
    for (int i = 0; i < 16; ++i) acc[i] = 0.f;
    for (int b0 = 0; b0 < a.batch; b0 += 32) {
        const int nr = min(32, a.batch - b0);
        if (wide_d)
            for (int c = lane; c < 4 * nr; c += 32) copy16(Ds + 4 * c, D + (size_t)(b0 + c / 4) * wd + 4 * (c % 4));
        else
            for (int c = lane; c < nj * nr; c += 32) copy4(Ds + 16 * (c / nj) + c % nj, D + (size_t)(b0 + c / nj) * wd + c % nj);
        if (wide_h) {
            const int nq = nk / 4;
            for (int c = lane; c < nq * nr; c += 32)
                copy16(Hs + 32 * (c / nq) + 4 * (c % nq), H + (size_t)(b0 + c / nq) * ws + 4 * (c % nq));
        } else {
            for (int c = lane; c < nk * nr; c += 32) copy4(Hs + 32 * (c / nk) + c % nk, H + (size_t)(b0 + c / nk) * ws + c % nk);
        }
        copies_done();
        for (int r = 0; r < nr; ++r) {
            const float hv = col ? Hs[32 * r + lane] : 0.f;
#pragma unroll
            for (int i = 0; i < 16; i += 4) {
                const float4 v = *reinterpret_cast<const float4*>(Ds + 16 * r + i);  // beyond nj: unused
                acc[i] += v.x * hv; acc[i + 1] += v.y * hv; acc[i + 2] += v.z * hv; acc[i + 3] += v.w * hv;
            }
        }
        __syncwarp();
    }
    double sq = 0.0;
    if (col) {
        float* g = a.grads + woff + (size_t)j0 * ws + k0 + lane;
#pragma unroll
        for (int i = 0; i < 16; ++i)
            if (i < nj) {
                g[(size_t)i * ws] = acc[i];
                sq += (double)acc[i] * acc[i];
            }
    }
    sq = warp_sum(sq);
    if (lane == 0) atomicAdd(a.wstats + dst, sq);
    return sq;
}

// db_s[j] = sum over the batch of dz_s[b][j], j = j0 + lane (nj <= 32).
__device__ __forceinline__ double bias_warp(const ClusterStep& a, const int* rec, int lane)
{
    const int w = rec[1], j = rec[2] + lane;
    double sq = 0.0;
    if (lane < rec[3]) {
        const float* D = a.dz + (size_t)rec[0] * a.cap + j;
        float total = 0.f;
#pragma unroll 8
        for (int b = 0; b < a.batch; ++b) total += __ldcg(D + (size_t)b * w);
        a.grads[rec[4] + j] = total;
        sq = (double)total * total;
    }
    sq = warp_sum(sq);
    if (lane == 0) atomicAdd(a.wstats + rec[5], sq);
    return sq;
}

__device__ __forceinline__ void update_all(const ClusterStep& a)
{
    if (!finite_step(a.scalars)) return;
    const int opt = a.optimizer;
    const double log_beta1 = opt ? log((double)a.hyper1) : 0.0, log_beta2 = opt ? log((double)a.hyper2) : 0.0;
    AdamCorrection corr;
    const int stride = 4 * gridDim.x * blockDim.x;
    for (int i = 4 * (blockIdx.x * blockDim.x + threadIdx.x); i < a.n_params; i += stride) {
        if (i + 4 > a.n_params)
            update_tail(i, a.n_params, opt, a.params, a.grads, a.state0, a.state1, a.state2, a.lr, a.hyper1,
                        a.hyper2, a.eps, log_beta1, log_beta2, corr);
        else
            update_four(i, opt, a.params, a.grads, a.state0, a.state1, a.state2, a.lr, a.hyper1, a.hyper2, a.eps,
                        log_beta1, log_beta2, corr);
    }
}

// A warp's items, phase by phase (v = warp, warp + warps, ...): how many phase p has, and the
// record of item v (-1: none).
__device__ __forceinline__ int items_of(const ClusterStep& a, int p, int rows)
{
    const int* ph = a.phases + 4 * p;
    return ph[0] == PHASE_FORWARD || ph[0] == PHASE_BACKWARD ? ph[2] * rows
         : ph[0] == PHASE_LOSS ? rows : ph[0] == PHASE_GRADIENTS ? ph[2] : 0;
}

__device__ __forceinline__ int record_of(const ClusterStep& a, int p, int v, int rows)
{
    const int* ph = a.phases + 4 * p;
    return ph[0] == PHASE_FORWARD || ph[0] == PHASE_BACKWARD ? ph[1] + v / rows
         : ph[0] == PHASE_GRADIENTS ? ph[1] + v : -1;
}

// The warp's item after (p, v) (p == n_phases: none), and a copy of its record started into dst.
__device__ __forceinline__ void prefetch_next(const ClusterStep& a, int p, int v, int warp, int warps, int rows,
                                              int* dst, int lane)
{
    v += warps;
    while (p < a.n_phases && v >= items_of(a, p, rows)) {
        ++p;
        v = warp;
    }
    if (p == a.n_phases) return;
    const int r = record_of(a, p, v, rows);
    if (r >= 0 && lane < REC / 4) copy16(dst + 4 * lane, a.plan + (size_t)r * REC + 4 * lane);
}

#if __CUDA_ARCH__ >= 900 && !defined(CLUSTER_SOFT)
#define CLUSTER_SHAPE __cluster_dims__(CL_BLOCKS, 1, 1)
#else
#define CLUSTER_SHAPE
#endif

extern "C" __global__ void __launch_bounds__(CL_THREADS, 1) CLUSTER_SHAPE cluster_step(
    const __grid_constant__ ClusterStep a)
{
    extern __shared__ float4 shared4[];
    // the warp's part: WARP_FLOATS floats of staged inputs, then two records
    float* buf = reinterpret_cast<float*>(shared4) + (size_t)(threadIdx.x >> 5) * (WARP_FLOATS + 2 * REC);
    int* recs = reinterpret_cast<int*>(buf + WARP_FLOATS);
    const int lane = threadIdx.x & 31, warps = gridDim.x * (blockDim.x >> 5);
    const int warp = (threadIdx.x >> 5) * gridDim.x + blockIdx.x;  // consecutive items on different SMs
    const int rows = (a.batch + 31) >> 5;
    const bool tracing = a.trace != nullptr && blockIdx.x == 0 && threadIdx.x == 0;
    unsigned target = 0;
    int cur = 0, before = 0;  // items of the phases before this one (the trace's item stamps)
    if (tracing) a.trace[0] = globaltimer();
    prefetch_next(a, 0, warp - warps, warp, warps, rows, recs, lane);  // the warp's first item
    for (int p = 0; p < a.n_phases; ++p) {
        const int kind = a.phases[4 * p], n_weight = a.phases[4 * p + 3], n = items_of(a, p, rows);
        double gradsq = 0.0;  // the warp's share of the step's sum of squared gradients
        for (int v = warp; v < n; v += warps) {
            unsigned long long* stamp = a.trace ? a.trace + a.n_phases + 1 + 4 * (before + v) : nullptr;
            if (stamp != nullptr && lane == 0) stamp[0] = globaltimer();
            copies_done();  // this item's record
            const int* rec = recs + cur * REC;
            prefetch_next(a, p, v, warp, warps, rows, recs + (cur ^ 1) * REC, lane);
            if (kind == PHASE_FORWARD) forward_warp(a, rec, 32 * (v % rows), lane, buf, stamp);
            else if (kind == PHASE_BACKWARD) backward_warp(a, rec, 32 * (v % rows), lane, buf);
            else if (kind == PHASE_LOSS) loss_warp(a, 32 * v, lane, buf);
            else if (v < n_weight) gradsq += weight_warp(a, rec, lane, buf);
            else gradsq += bias_warp(a, rec, lane);
            __syncwarp();
            if (stamp != nullptr && lane == 0) stamp[3] = globaltimer();
            cur ^= 1;
        }
        before += n;
        if (gradsq != 0.0 && lane == 0) atomicAdd(a.scalars + 2, gradsq);  // one atomic a warp
        if (kind == PHASE_UPDATE) update_all(a);
        if (p + 1 < a.n_phases) phase_barrier(a.barrier, target);
        if (tracing) a.trace[p + 1] = globaltimer();
    }
}
