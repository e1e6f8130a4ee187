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
// Launch: grid (resident blocks), THREADS; counters zeroed, stats and scalars zeroed. A split
// output's tasks write their parts (forward.cu); the loss item of a batch tile adds them into the
// tile's logits in part order first.
#include "genlab.cuh"
#include "forward.cu"
#include "loss.cu"
#include "backward.cu"
#include "optim.cu"

extern "C" __global__ void __launch_bounds__(THREADS, 4) dataflow_step(
    const int* __restrict__ width, const int* __restrict__ act_off, const int* __restrict__ bias_off,
    const int* __restrict__ in_ptr, const int* __restrict__ in_src, const int* __restrict__ in_dst,
    const int* __restrict__ in_woff, const int* __restrict__ out_ptr, const int* __restrict__ out_dst,
    const int* __restrict__ out_woff, const int* __restrict__ hidden,
    const int* __restrict__ fwd_tasks, int n_fwd, const int* __restrict__ bwd_tasks, int n_bwd,
    const int* __restrict__ weight_tasks, int n_weight, const int* __restrict__ bias_tasks, int n_bias,
    float* params, float* grads, float* act, float* dz, const int* __restrict__ labels,
    int batch, int ld, int n_slots, int input_slot, int output_slot, int split, float* parts, int n_parts, int cap,
    double* stats, double* wstats, double* scalars,
    int optimizer, float* state0, float* state1, float* state2, int n_params,
    float lr, float hyper1, float hyper2, float eps, int* counters)
{
    __shared__ int item_s, flag_s;
    const int nbt = (batch + TILE - 1) / TILE;
    const Counters C(counters, n_slots, nbt);
    const int n_update = (n_params + CHUNK - 1) / CHUNK;
    const int a_fwd = nbt, a_loss = a_fwd + n_fwd * nbt, a_bwd = a_loss + nbt;
    const int a_weight = a_bwd + n_bwd * nbt, a_bias = a_weight + n_weight, a_update = a_bias + n_bias;
    const int total = a_update + n_update;
    auto tiles = [&](int s) { return (width[s] + TILE - 1) / TILE; };
    auto forward_tasks = [&](int s) { return forward_tasks_of(s, TILE, width, in_ptr, output_slot, split); };

    for (;;) {
        __syncthreads();  // the previous item's shared memory is free
        if (threadIdx.x == 0) item_s = atomicAdd(C.next, 1);
        __syncthreads();
        const int item = item_s;
        if (item >= total) return;
        if (item < a_fwd) {
            __threadfence();
            C.forward_complete(input_slot, item, out_ptr, out_dst);
        } else if (item < a_loss) {
            const int f = (item - a_fwd) / nbt, bt = (item - a_fwd) % nbt;
            const int* task = fwd_tasks + 4 * f;
            const int s = task[0];
            wait_for(C.fready + C.at(s, bt), in_ptr[s + 1] - in_ptr[s]);
            forward_tile(task, bt * TILE, width, act_off, bias_off, in_ptr, in_src, in_woff, params, act, batch, ld,
                         output_slot, TILE, split, parts, cap);
            if (finish_item(C.fdone + C.at(s, bt), forward_tasks(s), &flag_s)) C.forward_complete(s, bt, out_ptr, out_dst);
        } else if (item < a_bwd) {
            const int bt = item - a_loss, s = output_slot, w = width[s];
            wait_for(C.fdone + C.at(s, bt), forward_tasks(s));
            if (n_parts > 1) {
                sum_output_parts(parts, n_parts, cap, bt * TILE, min(TILE, batch - bt * TILE), w, act + act_off[s], ld);
                __syncthreads();
            }
            softmax_rows(bt * TILE, min(TILE, batch - bt * TILE), act + act_off[s], labels, batch, w, ld,
                         dz + act_off[s], scalars, (int*)(scalars + 1), stats, s);
            if (finish_item(C.bdone + C.at(s, bt), 1, &flag_s)) C.backward_complete(s, bt, in_ptr, in_src, hidden);
        } else if (item < a_weight) {
            const int t = (item - a_bwd) / nbt, bt = (item - a_bwd) % nbt;
            const int s = bwd_tasks[2 * t], k0 = bwd_tasks[2 * t + 1];
            wait_for(C.bready + C.at(s, bt), out_ptr[s + 1] - out_ptr[s]);
            backward_tile(s, k0, bt * TILE, width, act_off, out_ptr, out_dst, out_woff, params, act, dz, batch, ld,
                          stats, TILE);
            if (finish_item(C.bdone + C.at(s, bt), tiles(s), &flag_s)) C.backward_complete(s, bt, in_ptr, in_src, hidden);
        } else if (item < a_bias) {
            const int* t = weight_tasks + 3 * (item - a_weight);
            wait_for(C.gready + in_dst[t[0]], nbt);
            weight_grad_tile(t[0], t[1], t[2], in_src, in_dst, in_woff, width, act_off, act, dz, grads, batch, ld,
                             wstats, scalars + 2);
            count_item(C.ngrad);
        } else if (item < a_update) {
            const int* t = bias_tasks + 2 * (item - a_bias);
            wait_for(C.gready + t[0], nbt);
            bias_grad_tile(t[0], t[1], width, act_off, bias_off, dz, grads, batch, ld, wstats, scalars + 2);
            count_item(C.ngrad);
        } else {
            wait_for(C.ngrad, n_weight + n_bias);
            if (!finite_step(scalars)) continue;
            update_chunk(item - a_update, n_params, optimizer, params, grads, state0, state1, state2, lr, hyper1,
                         hyper2, eps);
        }
    }
}
