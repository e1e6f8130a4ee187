// genlab.cuh: what every genlab kernel shares. genlab's loader pastes this file in place of its
// #include line, so the compiled source has no #include (a cached load skips nvcc's preprocessor).
//
// Layout (all float32, structure of arrays indexed by a group's slot s or an edge's index e):
//   width[s]              neurons of group s
//   act_off[s]            where group s's activations start in `act` (and its gradients in `dz`):
//                         a row-major (batch x width[s]) block, batch-major inside the group
//   bias_off[s]           where its bias starts in `params`
//   in_ptr/in_src/in_woff CSR of in-edges: for s, edges in_ptr[s]..in_ptr[s+1]-1 come from slot
//                         in_src[e]; the weight block (width[s] x width[in_src[e]]) row-major at
//                         params + in_woff[e]
//   out_ptr/out_dst/out_woff  the same edges as CSR of out-edges (for the backward pass)
//
// Two activation layouts, told apart by `ld` (leading dimension): element (row b, neuron j) of
// group s sits at act[act_off[s] + b * ROW(ld, width[s]) + j].
//   ld == 0  group-major: each group's block is contiguous (batch x width[s]), act_off[s] =
//            col_off[s] * batch capacity;
//   ld > 0   batch-major: one row of every group's neurons per sample (ld = all neurons),
//            act_off[s] = col_off[s].
// Activations and their gradients are written by one block and read by others inside the
// persistent dataflow kernel, so every read of them goes through L2 (__ldcg), never the
// non-coherent L1 or read-only caches.
#pragma once
// The numbers shared with Python (generated from genlab/engines/cuda/constants.py): THREADS per
// block; TILE x TILE output tiles of the level kernels, HALF = TILE / 2 (256 threads as 16 x 16,
// each owning 2 x 2 outputs of a tile); wide.cu's MT x MT and WT x WT tiles; the row executor's CH
// neurons per item and EW input out-edges per weight item; CHUNK parameters per update item; the
// growth operation codes (OP_*), criteria (CRITERION_*) and fold sources (FOLD_*).
#include "constants.cuh"
// The device state's buffers as one struct (`const Net n`), the first parameter of every kernel that
// reads the state.
#include "net.cuh"

#define ROW(ld, w) ((ld) ? (ld) : (w))

// Chris Wellons' lowbias32 mixer; genlab/hashnoise.py computes the same numbers.
// finite_step: whether a step may be applied, from its scalars (guard[0] the loss, guard[2] the
// sum of squared gradients; genlab/guard.py's gradient_ok).
__device__ __forceinline__ bool finite_step(const double* guard) {
    const double gradsq = __ldcg(guard + 2);
    return isfinite(__ldcg(guard)) && isfinite(gradsq) && gradsq <= GRAD_LIMIT_SQ;
}

__device__ __forceinline__ unsigned int lowbias32(unsigned int x) {
    x ^= x >> 16; x *= 0x7feb352du; x ^= x >> 15; x *= 0x846ca68bu; x ^= x >> 16;
    return x;
}

__device__ __forceinline__ unsigned int hash_u32(unsigned int seed, unsigned int step, unsigned int group,
                                                 unsigned int consumer, unsigned int index) {
    unsigned int h = lowbias32(seed);
    h = lowbias32(h ^ step);
    h = lowbias32(h ^ group);
    h = lowbias32(h ^ consumer);
    return lowbias32(h ^ index);
}

// Uniform in [-1, 1): the hash's top 24 bits * 2^-23 - 1 (in double, as NumPy does).
__device__ __forceinline__ double hash_uniform(unsigned int seed, unsigned int step, unsigned int group,
                                               unsigned int consumer, unsigned int index) {
    return (double)(hash_u32(seed, step, group, consumer, index) >> 8) * (1.0 / 8388608.0) - 1.0;
}

// Sum of v over the block (THREADS threads); every thread gets the result. `scratch` holds 8 doubles.
__device__ __forceinline__ double block_sum(double v, double* scratch) {
    for (int o = 16; o > 0; o >>= 1) v += __shfl_down_sync(0xffffffffu, v, o);
    int warp = threadIdx.x >> 5, lane = threadIdx.x & 31;
    __syncthreads();
    if (lane == 0) scratch[warp] = v;
    __syncthreads();
    double total = 0.0;
    for (int w = 0; w < THREADS / 32; ++w) total += scratch[w];
    return total;
}

// dz = dL/dh masked by ReLU (h > 0), and one element's terms of its group's statistics of dL/dh:
// sum, sum of squares, sum of h * dL/dh (backward.cu's finish_tile, wide.cu's backward).
__device__ __forceinline__ void mask_and_count(float g, float hv, float* dz, double& s1, double& s2, double& s3)
{
    *dz = hv > 0.f ? g : 0.f;
    s1 += g; s2 += (double)g * g; s3 += (double)hv * g;
}

// The block's three sums of mask_and_count into stats[3s..3s+2]. `scratch` holds 8 doubles.
__device__ __forceinline__ void add_group_stats(double* stats, int s, double s1, double s2, double s3, double* scratch)
{
    s1 = block_sum(s1, scratch);
    s2 = block_sum(s2, scratch);
    s3 = block_sum(s3, scratch);
    if (threadIdx.x == 0) {
        atomicAdd(stats + 3 * s, s1);
        atomicAdd(stats + 3 * s + 1, s2);
        atomicAdd(stats + 3 * s + 2, s3);
    }
}

// The persistent executors' hand-off (dataflow.cu, rows.cu): a block waits (thread 0 spins on
// one counter) until its item's inputs are complete.
__device__ __forceinline__ void wait_for(const int* counter, int target)
{
    if (threadIdx.x == 0) {
        while (*(volatile const int*)counter < target) __nanosleep(32);
        __threadfence();
    }
    __syncthreads();
}

// Thread 0 counts one finished item into *done (the block's writes made visible first) and
// tells the whole block whether it was the last of `total`.
__device__ __forceinline__ bool finish_item(int* done, int total, int* flag)
{
    __syncthreads();
    if (threadIdx.x == 0) {
        __threadfence();
        *flag = atomicAdd(done, 1) == total - 1;
    }
    __syncthreads();
    if (*flag) __threadfence();  // order this block's hand-off after everything counted in *done
    return *flag;
}

// Thread 0 counts one finished item into *done, the block's writes made visible first; nobody
// waits for the count's old value (a fire-and-forget reduction, no second barrier).
__device__ __forceinline__ void count_item(int* done)
{
    __syncthreads();
    if (threadIdx.x == 0) {
        __threadfence();
        atomicAdd(done, 1);
    }
}

// The counters a block adds 1 to when its group is complete (its consumers' fready, or its hidden
// sources' bready), read before the item waits for its inputs so that the hand-off after the work
// makes no dependent loads: thread i holds the i-th (`mine`, -1 for none); a group with more than
// THREADS of them hands the rest on in a loop from `rest` to `end`.
struct HandOn {
    int mine, rest, end;
};

// finish_item, then the hand-off: one more complete producer in each counter of `to` (a slot
// index into `counters`). A group of one item (total 1) needs no count of its items: its block
// makes its writes visible and hands on at once, without waiting for the count's old value.
// Returns whether the block handed on; `target(e)` maps a rest index to its slot or -1.
template <class Target>
__device__ __forceinline__ bool finish_and_hand_on(int* done, int total, int* flag, int* counters, const HandOn& to,
                                                   Target target)
{
    if (total == 1) {
        __syncthreads();
        if (threadIdx.x == 0) {
            __threadfence();
            atomicAdd(done, 1);
        }
        if (to.mine >= 0 || to.rest < to.end) __threadfence();  // each thread orders the block's writes
    } else if (!finish_item(done, total, flag)) {
        return false;
    }
    if (to.mine >= 0) atomicAdd(counters + to.mine, 1);
    for (int e = to.rest; e < to.end; e += THREADS) {
        const int t = target(e);
        if (t >= 0) atomicAdd(counters + t, 1);
    }
    return true;
}

// A counter's value, read with acquire semantics at GPU scope: what was written before its
// increments (each made after a __threadfence) is visible to this thread's later reads.
__device__ __forceinline__ int load_acquire(const int* p)
{
    int v;
    asm volatile("ld.acquire.gpu.global.s32 %0, [%1];" : "=r"(v) : "l"(p) : "memory");
    return v;
}

// The persistent executors' dependency counters (zeroed before the launch): the next item, the
// gradient items done, then fdone, fready, bdone and bready per (slot, batch tile) and gready per
// slot; `tiles` batch tiles a slot (1 for the row executor, whose items cover the whole batch).
struct Counters {
    int *next, *ngrad, *fdone, *fready, *bdone, *bready, *gready;
    int tiles;
    __device__ Counters(int* c, int n_slots, int tiles_)
        : next(c), ngrad(c + 1), fdone(c + 2), fready(fdone + n_slots * tiles_), bdone(fready + n_slots * tiles_),
          bready(bdone + n_slots * tiles_), gready(bready + n_slots * tiles_), tiles(tiles_) {}
    __device__ int at(int s, int bt) const { return s * tiles + bt; }
    // s's forward is complete at tile bt: one more complete source for each consumer (the block's
    // threads share the out-edges)
    __device__ void forward_complete(int s, int bt, const int* out_ptr, const int* out_dst) const {
        for (int e = out_ptr[s] + threadIdx.x; e < out_ptr[s + 1]; e += THREADS) atomicAdd(fready + at(out_dst[e], bt), 1);
    }
    // dz of s is complete at tile bt: one more complete consumer for each hidden source, one more
    // complete tile in gready[s]
    __device__ void backward_complete(int s, int bt, const int* in_ptr, const int* in_src, const int* hidden) const {
        for (int e = in_ptr[s] + threadIdx.x; e < in_ptr[s + 1]; e += THREADS)
            if (hidden[in_src[e]]) atomicAdd(bready + at(in_src[e], bt), 1);
        if (threadIdx.x == 0) atomicAdd(gready + s, 1);
    }
};

// Forward tasks of slot s (its fdone target): its chunks of `chunk` neurons, times, for the output
// group, the parts its in-edges are split into (split-K, `split` edges each).
__device__ __forceinline__ int forward_tasks_of(int s, int chunk, const int* width, const int* in_ptr, int output_slot,
                                                int split)
{
    const int deg = in_ptr[s + 1] - in_ptr[s];
    return (width[s] + chunk - 1) / chunk * (s == output_slot ? (deg + split - 1) / split : 1);
}
