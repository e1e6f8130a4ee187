// growth.cu: the growth rules of genlab/growth.py, run over all groups in parallel.
//
// growth_observe: the criterion's moving average per slot, from this step's statistics
//   (CRITERION_GRAD_STD: std of dL/dh, CRITERION_WEIGHT_GRAD_NORM, CRITERION_TAYLOR: |mean(h dL/dh)|);
//   ema = value on first sight, else ema + alpha (value - ema); skipped, like the update, when
//   the step's loss or gradient is not finite. One thread per slot.
// growth_population: mean and std of ema over the observed hidden slots (for relative marking).
//   One block.
// growth_mark: marked[s] = eligible[s] (hidden, not cooling down) and observed, and ema > threshold
//   (or its z-score > threshold).
// growth_select: keep[s] = marked[s] and no direct predecessor of s is marked (closest to the
//   input wins). One thread per slot.
// growth_rank: rank[s] among the kept slots by (score descending, group id ascending), -1 if not
//   kept: the order in which the budget admits them and new ids are handed out.
// prune_observe: the moving average of the Taylor score |mean(h dL/dh)| per hidden slot (for
//   pruning groups of little use), like growth_observe. One thread per slot.
// prune_constant: constant[s] = 1 for a hidden slot whose every neuron kept one value since the
//   last check (run_lo == run_hi): a group whose output can be folded into its consumers.
// prune_fold: b_d += W_gd c for one removed group g and one consumer d, c being g's constant
//   output (its running range, or relu(b_g) for a group left without inputs), summed in double
//   as NumPy does. One block per call.
// growth_state: the per-group scores of a new layout, gathered from the current one: slot s
//   takes the growth score (ema, seen) of old slot by_score[s] (the group itself, or a new
//   group's source) and the Taylor score of old slot by_id[s]; -1 starts at zero.
// growth_init: the parameter work of a growth step, one block per operation (all operations of
//   a step are independent: selected groups are never adjacent):
//   OP_COPY n floats, OP_IDENTITY (w x w), OP_SPLIT of V (V/2 + E stays, V/2 - E to the copy;
//   E = noise * rms(V) * hash noise), OP_HE_UNIFORM block, OP_ZERO_STATE (optimizer state),
//   OP_ZERO parameters (genlab/operations.py: the records and their codes).
#include "genlab.cuh"

extern "C" __global__ void growth_observe(const Net n, int n_slots, int batch, int criterion, double alpha)
{
    const int s = blockIdx.x * THREADS + threadIdx.x;
    if (s >= n_slots || !n.hidden[s] || !finite_step(n.scalars)) return;
    const double count = (double)batch * n.width[s];
    double value;
    if (criterion == CRITERION_GRAD_STD) {
        const double mean = n.stats[3 * s] / count;
        value = sqrt(fmax(n.stats[3 * s + 1] / count - mean * mean, 0.0));
    } else if (criterion == CRITERION_WEIGHT_GRAD_NORM) {
        value = sqrt(n.wstats[s]);
    } else {
        value = fabs(n.stats[3 * s + 2] / count);
    }
    n.ema[s] = n.seen[s] ? n.ema[s] + alpha * (value - n.ema[s]) : value;
    n.seen[s] = 1;
}

extern "C" __global__ void growth_population(const Net n, int n_slots)
{
    __shared__ double scratch[THREADS / 32];
    double count = 0.0, sum = 0.0;
    for (int s = threadIdx.x; s < n_slots; s += THREADS)
        if (n.hidden[s] && n.seen[s]) { count += 1.0; sum += n.ema[s]; }
    count = block_sum(count, scratch);
    sum = block_sum(sum, scratch);
    const double mean = count > 0 ? sum / count : 0.0;
    double sq = 0.0;
    for (int s = threadIdx.x; s < n_slots; s += THREADS)
        if (n.hidden[s] && n.seen[s]) sq += (n.ema[s] - mean) * (n.ema[s] - mean);
    sq = block_sum(sq, scratch);
    if (threadIdx.x == 0) { n.population[0] = mean; n.population[1] = count > 1 ? sqrt(sq / count) : 0.0; }
}

extern "C" __global__ void growth_mark(const Net n, int n_slots, double threshold, int relative)
{
    const int s = blockIdx.x * THREADS + threadIdx.x;
    if (s >= n_slots) return;
    int m = 0;
    if (n.eligible[s] && n.seen[s]) {
        if (!relative) m = n.ema[s] > threshold;
        else if (n.population[1] > 0.0) m = (n.ema[s] - n.population[0]) / n.population[1] > threshold;
    }
    n.marked[s] = m;
}

extern "C" __global__ void growth_select(const Net n, int n_slots)
{
    const int s = blockIdx.x * THREADS + threadIdx.x;
    if (s >= n_slots) return;
    int k = n.marked[s];
    for (int e = n.in_ptr[s]; k && e < n.in_ptr[s + 1]; ++e)
        if (n.marked[n.in_src[e]]) k = 0;
    n.keep[s] = k;
}

extern "C" __global__ void growth_rank(const Net n, int n_slots)
{
    const int s = blockIdx.x * THREADS + threadIdx.x;
    if (s >= n_slots) return;
    if (!n.keep[s]) { n.rank[s] = -1; return; }
    int r = 0;
    for (int t = 0; t < n_slots; ++t)
        if (n.keep[t] && (n.ema[t] > n.ema[s] || (n.ema[t] == n.ema[s] && n.group_id[t] < n.group_id[s]))) ++r;
    n.rank[s] = r;
}

extern "C" __global__ void prune_observe(const Net n, int n_slots, int batch, double alpha)
{
    const int s = blockIdx.x * THREADS + threadIdx.x;
    if (s >= n_slots || !n.hidden[s] || !finite_step(n.scalars)) return;
    const double value = fabs(n.stats[3 * s + 2] / ((double)batch * n.width[s]));
    n.taylor[s] = n.taylor_seen[s] ? n.taylor[s] + alpha * (value - n.taylor[s]) : value;
    n.taylor_seen[s] = 1;
}

extern "C" __global__ void prune_constant(const Net n, int n_slots)
{
    const int s = blockIdx.x * THREADS + threadIdx.x;
    if (s >= n_slots) return;
    int c = n.hidden[s] && n.run_lo[n.col_off[s]] <= n.run_hi[n.col_off[s]];  // observed since the last check
    for (int j = 0; c && j < n.width[s]; ++j) c = n.run_lo[n.col_off[s] + j] == n.run_hi[n.col_off[s] + j];
    n.constant[s] = c;
}

extern "C" __global__ void prune_fold(
    float* __restrict__ params, int w_off, int rows, int cols, int b_off, const float* __restrict__ c, int source)
{
    const bool relu = source == FOLD_RELU_BIAS;
    for (int j = threadIdx.x; j < rows; j += THREADS) {
        double sum = 0.0;
        for (int k = 0; k < cols; ++k) sum += (double)params[w_off + j * cols + k] * (relu ? fmaxf(c[k], 0.f) : c[k]);
        params[b_off + j] = (float)((double)params[b_off + j] + sum);
    }
}

extern "C" __global__ void growth_state(
    const int* __restrict__ by_score, const int* __restrict__ by_id, int n_slots,
    const double* __restrict__ ema, const int* __restrict__ seen, const double* __restrict__ taylor,
    const int* __restrict__ taylor_seen, double* __restrict__ ema_new, int* __restrict__ seen_new,
    double* __restrict__ taylor_new, int* __restrict__ taylor_seen_new)
{
    const int s = blockIdx.x * THREADS + threadIdx.x;
    if (s >= n_slots) return;
    const int a = by_score[s], b = by_id[s];
    ema_new[s] = a >= 0 ? ema[a] : 0.0;
    seen_new[s] = a >= 0 ? seen[a] : 0;
    taylor_new[s] = b >= 0 ? taylor[b] : 0.0;
    taylor_seen_new[s] = b >= 0 ? taylor_seen[b] : 0;
}

// One operation: OP_INTS ints (code, dst, src, n, rows (identity: width), g (hash group),
// d (hash consumer)) and a double parameter (noise for a split, bound for He-uniform).
extern "C" __global__ void growth_init(
    const int* __restrict__ ops, const double* __restrict__ fparams, float* __restrict__ params,
    float* __restrict__ state0, float* __restrict__ state1, float* __restrict__ state2,
    unsigned int seed, unsigned int step)
{
    __shared__ double scratch[THREADS / 32];
    const int* op = ops + OP_INTS * blockIdx.x;
    const int kind = op[0], dst = op[1], src = op[2], n = op[3], w = op[4];
    const unsigned int g = (unsigned int)op[5], d = (unsigned int)op[6];
    const double f = fparams[blockIdx.x];
    if (kind == OP_COPY) {
        for (int i = threadIdx.x; i < n; i += THREADS) params[dst + i] = params[src + i];
    } else if (kind == OP_IDENTITY) {
        for (int i = threadIdx.x; i < w * w; i += THREADS) params[dst + i] = (i / w == i % w) ? 1.f : 0.f;
    } else if (kind == OP_SPLIT) {
        double sq = 0.0;  // rms of V, as NumPy: sqrt(mean(v * v)) in float64
        for (int i = threadIdx.x; i < n; i += THREADS) sq += (double)params[src + i] * params[src + i];
        const double rms = sqrt(block_sum(sq, scratch) / n);
        for (int i = threadIdx.x; i < n; i += THREADS) {
            const double v = params[src + i], e = f * rms * hash_uniform(seed, step, g, d, i);
            params[src + i] = (float)(v / 2 + e);
            params[dst + i] = (float)(v / 2 - e);
        }
    } else if (kind == OP_HE_UNIFORM) {
        for (int i = threadIdx.x; i < n; i += THREADS)
            params[dst + i] = (float)(f * hash_uniform(seed, step, g, d, i));
    } else if (kind == OP_ZERO_STATE) {
        for (int i = threadIdx.x; i < n; i += THREADS) {
            if (state0) state0[dst + i] = 0.f;
            if (state1) state1[dst + i] = 0.f;
            if (state2) state2[dst + i] = 0.f;
        }
    } else if (kind == OP_ZERO) {
        for (int i = threadIdx.x; i < n; i += THREADS) params[dst + i] = 0.f;
    }
}
