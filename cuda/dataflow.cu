// dataflow.cu: the persistent dataflow executor: one launch runs a whole training step
// (forward, loss, backward, gradients and the optimizer update), with per-group dependency
// counters in place of level barriers.
//
// dataflow_step: the grid holds as many blocks as fit on the device at once; each block takes
// the next work item from a global counter until none is left. Items are numbered so that every
// item's inputs come from items with smaller numbers (bt: a tile of TILE batch rows):
//   input (bt)              the input group's rows are there (uploaded before the launch)
//   forward (task, bt)      forward_tile; the forward tasks in level order
//   loss (bt)               softmax_rows over the tile's rows
//   backward (task, bt)     backward_tile; the backward tasks in descending level order
//   weight (task)           weight_grad_tile: needs dz of the edge's destination at every bt
//   bias (task)             bias_grad_tile: needs dz of the group at every bt
//   update (chunk)          sgd_one / adam_one over CHUNK parameters: needs every gradient (and
//                           the whole gradient's norm, which guards the update)
// A block waits (thread 0 spins on one counter) until its item's inputs are complete. It only
// ever waits for items taken earlier by blocks that are running, so the step cannot deadlock,
// whatever the grid size. The counters (zeroed before the launch), per slot s and tile bt:
//   fdone[s][bt]   forward tasks of s done at bt; the block that finishes the last one adds 1
//                  to fready[d][bt] of every consumer d (the hand-off)
//   fready[s][bt]  sources of s complete at bt: s may start at in-degree(s)
//   bdone[s][bt]   backward tasks of s done at bt; the last one adds 1 to bready[src][bt] of
//                  every hidden source and to gready[s]
//   bready[s][bt]  consumers of s whose dz is complete at bt: s may start at out-degree(s)
//   gready[s]      batch tiles of dz_s complete; ngrad: gradient items done
// Publication: the producing block's threads finish (__syncthreads), then a fence and the
// atomic; the waiting thread fences after its spin, then the block proceeds. Every read of
// data written inside the launch goes through L2 (__ldcg), see genlab.cuh.
// Launch: grid (resident blocks), THREADS; counters zeroed, stats and scalars zeroed, the
// output block zeroed when its in-edges are split (as for the level executor).
#include "genlab.cuh"
#include "forward.cu"
#include "loss.cu"
#include "backward.cu"
#include "optim.cu"

// dataflow_step's arguments, passed by value (the engine fills a NumPy record of this layout,
// derived from this definition: genlab/engines/cuda/runtime.py).
struct DataflowStep {
    const int *width, *act_off, *bias_off, *in_ptr, *in_src, *in_dst, *in_woff, *out_ptr, *out_dst, *out_woff;
    const int *hidden, *fwd_tasks, *bwd_tasks, *weight_tasks, *bias_tasks, *labels;
    float *params, *grads, *act, *dz, *state0, *state1, *state2;
    double *stats, *wstats, *scalars;
    int *counters;
    int n_fwd, n_bwd, n_weight, n_bias, batch, ld, n_slots, input_slot, output_slot, split, optimizer, n_params;
    float lr, hyper1, hyper2, eps;
};

extern "C" __global__ void __launch_bounds__(THREADS, 4) dataflow_step(const __grid_constant__ DataflowStep a)
{
    __shared__ int item_s, flag_s;
    const int nbt = (a.batch + TILE - 1) / TILE;
    const Counters C(a.counters, a.n_slots, nbt);
    const int n_update = (a.n_params + CHUNK - 1) / CHUNK;
    const int a_fwd = nbt, a_loss = a_fwd + a.n_fwd * nbt, a_bwd = a_loss + nbt;
    const int a_weight = a_bwd + a.n_bwd * nbt, a_bias = a_weight + a.n_weight, a_update = a_bias + a.n_bias;
    const int total = a_update + n_update;
    auto tiles = [&](int s) { return (a.width[s] + TILE - 1) / TILE; };
    auto forward_tasks = [&](int s) { return forward_tasks_of(s, TILE, a.width, a.in_ptr, a.output_slot, a.split); };

    for (;;) {
        __syncthreads();  // the previous item's shared memory is free
        if (threadIdx.x == 0) item_s = atomicAdd(C.next, 1);
        __syncthreads();
        const int item = item_s;
        if (item >= total) return;
        if (item < a_fwd) {
            __threadfence();
            C.forward_complete(a.input_slot, item, a.out_ptr, a.out_dst);
        } else if (item < a_loss) {
            const int f = (item - a_fwd) / nbt, bt = (item - a_fwd) % nbt;
            const int* task = a.fwd_tasks + 4 * f;
            const int s = task[0];
            wait_for(C.fready + C.at(s, bt), a.in_ptr[s + 1] - a.in_ptr[s]);
            forward_tile(task, bt * TILE, a.width, a.act_off, a.bias_off, a.in_ptr, a.in_src, a.in_woff, a.params,
                         a.act, a.batch, a.ld, a.output_slot, TILE);
            if (finish_item(C.fdone + C.at(s, bt), forward_tasks(s), &flag_s))
                C.forward_complete(s, bt, a.out_ptr, a.out_dst);
        } else if (item < a_bwd) {
            const int bt = item - a_loss, s = a.output_slot, w = a.width[s];
            wait_for(C.fdone + C.at(s, bt), forward_tasks(s));
            softmax_rows(bt * TILE, min(TILE, a.batch - bt * TILE), a.act + a.act_off[s], a.labels, a.batch, w,
                         a.ld, a.dz + a.act_off[s], a.scalars, (int*)(a.scalars + 1), a.stats, s);
            if (finish_item(C.bdone + C.at(s, bt), 1, &flag_s))
                C.backward_complete(s, bt, a.in_ptr, a.in_src, a.hidden);
        } else if (item < a_weight) {
            const int t = (item - a_bwd) / nbt, bt = (item - a_bwd) % nbt;
            const int s = a.bwd_tasks[2 * t], k0 = a.bwd_tasks[2 * t + 1];
            wait_for(C.bready + C.at(s, bt), a.out_ptr[s + 1] - a.out_ptr[s]);
            backward_tile(s, k0, bt * TILE, a.width, a.act_off, a.out_ptr, a.out_dst, a.out_woff, a.params, a.act,
                          a.dz, a.batch, a.ld, a.stats, TILE);
            if (finish_item(C.bdone + C.at(s, bt), tiles(s), &flag_s))
                C.backward_complete(s, bt, a.in_ptr, a.in_src, a.hidden);
        } else if (item < a_bias) {
            const int* t = a.weight_tasks + 3 * (item - a_weight);
            wait_for(C.gready + a.in_dst[t[0]], nbt);
            weight_grad_tile(t[0], t[1], t[2], a.in_src, a.in_dst, a.in_woff, a.width, a.act_off, a.act, a.dz,
                             a.grads, a.batch, a.ld, a.wstats, a.scalars + 2);
            finish_item(C.ngrad, 0, &flag_s);
        } else if (item < a_update) {
            const int* t = a.bias_tasks + 2 * (item - a_bias);
            wait_for(C.gready + t[0], nbt);
            bias_grad_tile(t[0], t[1], a.width, a.act_off, a.bias_off, a.dz, a.grads, a.batch, a.ld, a.wstats,
                           a.scalars + 2);
            finish_item(C.ngrad, 0, &flag_s);
        } else {
            wait_for(C.ngrad, a.n_weight + a.n_bias);
            if (!finite_step(a.scalars)) continue;
            update_chunk(item - a_update, a.n_params, a.optimizer, a.params, a.grads, a.state0, a.state1, a.state2,
                         a.lr, a.hyper1, a.hyper2, a.eps);
        }
    }
}
