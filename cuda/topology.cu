// topology.cu: everything the executors need that follows from the edge list, built on the GPU
// (at load, and after every growth step, which only sends the edges it adds or moves).
//
// The edge list: edge e goes from slot e_src[e] to slot e_dst[e], its weight block at
// params + e_woff[e]; it is input number e_inpos[e] of its destination and output number
// e_outpos[e] of its source, so the CSR keeps the network's connection order.
//
// topo_write_edges: write n edge records (edge, src, dst, woff, inpos, outpos). One thread each.
// topo_degrees: in_deg[dst] += 1, out_deg[src] += 1 for every edge (counts zeroed first).
// scan_exclusive: out[i] = sum of in[0..i-1] for i <= n (out[n] is the total). One block.
// topo_fill: scatter the edges into the in-CSR (in_src, in_dst, in_woff) and the out-CSR
//   (out_dst, out_woff) at ptr[slot] + position. One thread per edge.
// topo_levels: level[s] = longest path from the input, by relaxation to a fixed point
//   (a parallel topological sort; as many rounds as the network is deep). One block.
// topo_tasks: per level, the forward tasks (slot, j0, e0, e1) in ascending level order, and the
//   backward tasks (slot, k0) in descending level order (counted at depth - level: first the
//   output group's, alone on the deepest level, which only the push variant uses, then the
//   deepest hidden level, and so on; the dataflow executor takes the list as it is); the bias tasks (slot, j0) and the weight-gradient tasks
//   (edge, j0, k0). Counting first (so the host can size the lists), then filling at
//   atomically taken places (tasks of one level are independent, so their order is free).
#include "genlab.cuh"

extern "C" __global__ void topo_write_edges(
    const int* __restrict__ rec, int n, int* __restrict__ e_src, int* __restrict__ e_dst,
    int* __restrict__ e_woff, int* __restrict__ e_inpos, int* __restrict__ e_outpos)
{
    const int i = blockIdx.x * THREADS + threadIdx.x;
    if (i >= n) return;
    const int* r = rec + 6 * i;
    const int e = r[0];
    e_src[e] = r[1]; e_dst[e] = r[2]; e_woff[e] = r[3]; e_inpos[e] = r[4]; e_outpos[e] = r[5];
}

extern "C" __global__ void topo_degrees(
    const int* __restrict__ e_src, const int* __restrict__ e_dst, int n_edges,
    int* __restrict__ in_deg, int* __restrict__ out_deg)
{
    const int e = blockIdx.x * THREADS + threadIdx.x;
    if (e >= n_edges) return;
    atomicAdd(in_deg + e_dst[e], 1);
    atomicAdd(out_deg + e_src[e], 1);
}

extern "C" __global__ void scan_exclusive(const int* __restrict__ in, int* __restrict__ out, int n)
{
    __shared__ int part[THREADS];
    __shared__ int carry;
    if (threadIdx.x == 0) carry = 0;
    __syncthreads();
    for (int base = 0; base < n; base += THREADS) {
        const int i = base + threadIdx.x;
        const int v = i < n ? in[i] : 0;
        part[threadIdx.x] = v;
        __syncthreads();
        for (int o = 1; o < THREADS; o <<= 1) {  // Hillis-Steele inclusive scan of the chunk
            const int add = threadIdx.x >= o ? part[threadIdx.x - o] : 0;
            __syncthreads();
            part[threadIdx.x] += add;
            __syncthreads();
        }
        if (i < n) out[i] = carry + part[threadIdx.x] - v;
        __syncthreads();
        if (threadIdx.x == THREADS - 1) carry += part[THREADS - 1];
        __syncthreads();
    }
    if (threadIdx.x == 0) out[n] = carry;
}

extern "C" __global__ void topo_fill(
    const int* __restrict__ e_src, const int* __restrict__ e_dst, const int* __restrict__ e_woff,
    const int* __restrict__ e_inpos, const int* __restrict__ e_outpos, int n_edges,
    const int* __restrict__ in_ptr, const int* __restrict__ out_ptr,
    int* __restrict__ in_src, int* __restrict__ in_dst, int* __restrict__ in_woff,
    int* __restrict__ out_dst, int* __restrict__ out_woff)
{
    const int e = blockIdx.x * THREADS + threadIdx.x;
    if (e >= n_edges) return;
    const int i = in_ptr[e_dst[e]] + e_inpos[e], o = out_ptr[e_src[e]] + e_outpos[e];
    in_src[i] = e_src[e]; in_dst[i] = e_dst[e]; in_woff[i] = e_woff[e];
    out_dst[o] = e_dst[e]; out_woff[o] = e_woff[e];
}

extern "C" __global__ void topo_levels(
    const int* __restrict__ in_ptr, const int* __restrict__ in_src, int n_slots, int* __restrict__ level)
{
    __shared__ int changed;
    for (int s = threadIdx.x; s < n_slots; s += THREADS) level[s] = 0;
    do {
        __syncthreads();
        if (threadIdx.x == 0) changed = 0;
        __syncthreads();
        for (int s = threadIdx.x; s < n_slots; s += THREADS) {
            int l = 0;
            for (int e = in_ptr[s]; e < in_ptr[s + 1]; ++e) l = max(l, level[in_src[e]] + 1);
            if (l != level[s]) { level[s] = l; atomicExch(&changed, 1); }  // levels only rise: a fixed point is reached
        }
        __syncthreads();
    } while (changed);
}

// Parts a task of the MT tier cuts a tile's edges into (wide.cu's split-K): about SPLIT_TILES x MT
// values of k a part, at most SPLIT_PARTS; k is the sum of the other ends' widths over the edges.
// (The WT tier's tiles are not cut: a chain of wide groups has few tiles a level and long k, where
// parts cost their partial sums' traffic and gain no balance: W4 9% slower cut.)
__device__ __forceinline__ int split_parts(int e0, int e1, const int* __restrict__ other, const int* __restrict__ cols, int tile)
{
    int k = 0;
    for (int e = e0; e < e1; ++e) k += cols[other[e]];
    return max(1, min(SPLIT_PARTS, (k + SPLIT_TILES * tile - 1) / (SPLIT_TILES * tile)));
}

// A pass builds the forward and backward lists of one tier of widths, lo <= width < hi (cuda.py's
// tiers: forward.cu and backward.cu with tasks of `chunk` neurons and split-K of the output group,
// then wide.cu's tiers, tasks of MT or WT neurons); the pass with lo == 0 also lists every group's
// bias tasks.
// mode 0: count per level into fwd_count / bwd_count (at depth - level), and each slot's bias tiles
// into bias_count;
// mode 1: fill at fwd_ptr / bwd_ptr / bias_ptr (exclusive scans of the counts), taking places in
// a level with the cursors. A forward or backward task covers `chunk` neurons (j0 or k0: TILE,
// or CH for the row executor; a bias task always TILE). The first tier (lo == 0): a forward task
// (s, j0, e0, e1) covers in-edges e0..e1-1, for the linear output group `split` of them (split-K),
// else all; a backward task is (s, k0). The wider tiers: a forward task (s, j0, part, parts) and a
// backward task (s, k0, part, parts), the parts of a tile one after another (split_parts over the
// in-edges' sources or the out-edges' consumers, `cols` every group's columns); every group but
// the input has one in-edge at least (a validated network).
extern "C" __global__ void topo_tasks(
    int mode, const int* __restrict__ width, const int* __restrict__ cols, const int* __restrict__ level,
    const int* __restrict__ in_ptr, const int* __restrict__ in_src, const int* __restrict__ out_ptr,
    const int* __restrict__ out_dst, int n_slots, int input_slot, int output_slot, int split, int chunk, int lo, int hi,
    int* __restrict__ fwd_count, int* __restrict__ bwd_count, int* __restrict__ bias_count,
    const int* __restrict__ fwd_ptr, const int* __restrict__ bwd_ptr, const int* __restrict__ bias_ptr,
    int* __restrict__ fwd_cursor, int* __restrict__ bwd_cursor,
    int* __restrict__ fwd_tasks, int* __restrict__ bwd_tasks, int* __restrict__ bias_tasks)
{
    const int s = blockIdx.x * THREADS + threadIdx.x;
    if (s >= n_slots || s == input_slot) return;
    const bool mine = lo <= width[s] && width[s] < hi, bias = lo == 0;
    const int tiles = mine ? (width[s] + chunk - 1) / chunk : 0, bias_tiles = (width[s] + TILE - 1) / TILE;
    const int lv = level[s], down = level[output_slot] - lv;
    const int e0 = in_ptr[s], e1 = in_ptr[s + 1];
    // forward tasks a tile: the first tier's edge chunks, a wider tier's parts; backward: 1 or parts
    const int step = s == output_slot && !lo ? min(split, e1 - e0) : e1 - e0;
    const bool cut = lo && chunk == MT;
    const int fparts = !mine ? 0 : !lo ? (e1 - e0 + step - 1) / step : cut ? split_parts(e0, e1, in_src, cols, chunk) : 1;
    const int bparts = !mine || !cut || s == output_slot ? 1 : split_parts(out_ptr[s], out_ptr[s + 1], out_dst, cols, chunk);
    if (mode == 0) {
        atomicAdd(fwd_count + lv, tiles * fparts);
        atomicAdd(bwd_count + down, tiles * bparts);
        if (bias) bias_count[s] = bias_tiles;
        return;
    }
    int f = fwd_ptr[lv] + atomicAdd(fwd_cursor + lv, tiles * fparts);
    for (int t = 0; t < tiles; ++t)
        for (int q = 0; q < fparts; ++q, ++f) {
            int* task = fwd_tasks + 4 * f;
            task[0] = s; task[1] = t * chunk;
            if (lo) { task[2] = q; task[3] = fparts; }
            else { task[2] = e0 + q * step; task[3] = min(e0 + (q + 1) * step, e1); }
        }
    int b = bwd_ptr[down] + atomicAdd(bwd_cursor + down, tiles * bparts);
    for (int t = 0; t < tiles; ++t)
        for (int q = 0; q < bparts; ++q, ++b) {
            if (lo) {
                int* task = bwd_tasks + 4 * b;
                task[0] = s; task[1] = t * chunk; task[2] = q; task[3] = bparts;
            } else {
                bwd_tasks[2 * b] = s; bwd_tasks[2 * b + 1] = t * chunk;
            }
        }
    for (int t = 0; t < bias_tiles * bias; ++t) {
        bias_tasks[2 * (bias_ptr[s] + t)] = s;
        bias_tasks[2 * (bias_ptr[s] + t) + 1] = t * TILE;
    }
}

// Weight-gradient tasks: tiles(width dst) x tiles(src_width src) per edge of the in-CSR, at ptr[i],
// of the edges whose narrower end is in a tier of widths (lo <= width < hi): `tile` x `tile` tasks.
// `width` is the task lists' (0 for a group of another kind: its edges get none), src_width every
// group's columns (a dense group reading a conv group reads all of its values).
extern "C" __global__ void topo_weight_tasks(
    int mode, const int* __restrict__ in_src, const int* __restrict__ in_dst, const int* __restrict__ width,
    const int* __restrict__ src_width, int n_edges, int lo, int hi, int tile, int* __restrict__ count,
    const int* __restrict__ ptr, int* __restrict__ tasks)
{
    const int i = blockIdx.x * THREADS + threadIdx.x;
    if (i >= n_edges) return;
    const int wd = width[in_dst[i]], ws = src_width[in_src[i]];
    const bool mine = lo <= min(wd, ws) && min(wd, ws) < hi;
    const int tj = (wd + tile - 1) / tile, tk = (ws + tile - 1) / tile;
    if (mode == 0) { count[i] = mine ? tj * tk : 0; return; }
    if (!mine) return;
    int t = ptr[i];
    for (int a = 0; a < tj; ++a)
        for (int b = 0; b < tk; ++b, ++t) {
            tasks[3 * t] = i; tasks[3 * t + 1] = a * tile; tasks[3 * t + 2] = b * tile;
        }
}
