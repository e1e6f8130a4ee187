// conv.cu: convolution groups (genlab/kinds/conv.py is the reference), group-major activations.
//
// A conv group s holds C x H x W values a sample (channel, row, column; width[s] = C * H * W
// columns of its block), read from sources that are conv groups or the image input, all on the
// grid Hi x Wi its kernel slides over: same padding (K / 2 zeros each side), stride S, so that
// H = (Hi - 1) / S + 1. geo[GEO_INTS * s + GEO_*] holds each slot's kind, C, H, W, K, S (the
// input's C, H, W too). The weight block of edge src -> s is C x Csrc x K x K, row-major.
//
// conv_forward: h = relu(b + sum over in-edges of conv(h_src, W)). One thread per (sample, output
//   position), CONV_CH channels at a time in registers; grid (groups in `slots`, ceil(batch * H * W
//   / THREADS)) with the largest H * W of the list.
// conv_backward: dL/dh pulled from the group's consumers (a dense consumer reads the block
//   flattened: dz_d W; a conv consumer: the transposed convolution), then dz = dL/dh where h > 0,
//   and the group's statistics (genlab.cuh's mask_and_count). Same threads and launch.
// conv_weight_grad: one block per (edge task, CONV_SAMPLES samples), each thread a weight element
//   summed over its samples and the output grid. Task (src slot, dst slot, weight offset); grid
//   (tasks, ceil(batch / CONV_SAMPLES)).
// conv_bias_grad: one block per (group, channel); grid (groups in `slots`, largest C).
#include "genlab.cuh"

#define G(s, f) geo[GEO_INTS * (s) + (f)]

extern "C" __global__ void conv_forward(
    const int* __restrict__ slots, const int* __restrict__ geo, const int* __restrict__ width,
    const int* __restrict__ act_off, const int* __restrict__ bias_off, const int* __restrict__ in_ptr,
    const int* __restrict__ in_src, const int* __restrict__ in_woff, const float* __restrict__ params,
    float* __restrict__ act, int batch)
{
    const int s = slots[blockIdx.x], C = G(s, GEO_C), H = G(s, GEO_H), W = G(s, GEO_W);
    const int i = blockIdx.y * THREADS + threadIdx.x;  // (sample, output position)
    if (i >= batch * H * W) return;
    const int b = i / (H * W), y = (i / W) % H, x = i % W;
    const int K = G(s, GEO_K), S = G(s, GEO_STRIDE), P = K / 2;
    float* out = act + act_off[s] + b * width[s] + y * W + x;
    for (int c0 = 0; c0 < C; c0 += CONV_CH) {  // CONV_CH output channels at once: each input value read once
        const int nc = min(CONV_CH, C - c0);
        float z[CONV_CH];
#pragma unroll
        for (int c = 0; c < CONV_CH; ++c) z[c] = c < nc ? params[bias_off[s] + c0 + c] : 0.f;
        for (int e = in_ptr[s]; e < in_ptr[s + 1]; ++e) {
            const int src = in_src[e], Cs = G(src, GEO_C), Hs = G(src, GEO_H), Ws = G(src, GEO_W);
            const float* h = act + act_off[src] + b * width[src];
            const float* w = params + in_woff[e] + c0 * Cs * K * K;
            for (int ci = 0; ci < Cs; ++ci)
                for (int ky = 0; ky < K; ++ky) {
                    const int iy = y * S + ky - P;
                    if (iy < 0 || iy >= Hs) continue;
                    for (int kx = 0; kx < K; ++kx) {
                        const int ix = x * S + kx - P;
                        if (ix < 0 || ix >= Ws) continue;
                        const float v = h[(ci * Hs + iy) * Ws + ix];
                        const float* wk = w + (ci * K + ky) * K + kx;
#pragma unroll
                        for (int c = 0; c < CONV_CH; ++c)
                            if (c < nc) z[c] += v * wk[c * Cs * K * K];
                    }
                }
        }
#pragma unroll
        for (int c = 0; c < CONV_CH; ++c)
            if (c < nc) out[(c0 + c) * H * W] = fmaxf(z[c], 0.f);
    }
}

// dL/dh of channels c0.. (up to CONV_CH) of sample b at (y, x) of conv group s, from its
// consumers, into g[].
__device__ void conv_pull(int s, int b, int y, int x, int c0, int nc, const int* geo, const int* width,
                          const int* act_off, const int* out_ptr, const int* out_dst, const int* out_woff,
                          const float* params, const float* dz, float* g)
{
    const int n = width[s], H = G(s, GEO_H), W = G(s, GEO_W), C = G(s, GEO_C);
#pragma unroll
    for (int c = 0; c < CONV_CH; ++c) g[c] = 0.f;
    for (int e = out_ptr[s]; e < out_ptr[s + 1]; ++e) {
        const int d = out_dst[e], nd = width[d];
        const float* w = params + out_woff[e];
        const float* dzd = dz + act_off[d] + b * nd;
        if (G(d, GEO_KIND) != KIND_CONV) {  // a dense consumer reads the block flattened
            const int j = (c0 * H + y) * W + x;
            for (int k = 0; k < nd; ++k) {
                const float v = dzd[k];
#pragma unroll
                for (int c = 0; c < CONV_CH; ++c)
                    if (c < nc) g[c] += v * w[k * n + j + c * H * W];
            }
            continue;
        }
        const int Cd = G(d, GEO_C), Hd = G(d, GEO_H), Wd = G(d, GEO_W), K = G(d, GEO_K), S = G(d, GEO_STRIDE);
        const int P = K / 2;
        for (int ky = 0; ky < K; ++ky) {
            const int ty = y + P - ky;  // = oy * S for the output row oy that reads row y at ky
            if (ty < 0 || ty % S || ty / S >= Hd) continue;
            for (int kx = 0; kx < K; ++kx) {
                const int tx = x + P - kx;
                if (tx < 0 || tx % S || tx / S >= Wd) continue;
                const int o = (ty / S) * Wd + tx / S;
                for (int co = 0; co < Cd; ++co) {
                    const float v = dzd[co * Hd * Wd + o];
                    const float* wk = w + ((co * C + c0) * K + ky) * K + kx;
#pragma unroll
                    for (int c = 0; c < CONV_CH; ++c)
                        if (c < nc) g[c] += v * wk[c * K * K];
                }
            }
        }
    }
}

extern "C" __global__ void conv_backward(
    const int* __restrict__ slots, const int* __restrict__ geo, const int* __restrict__ width,
    const int* __restrict__ act_off, const int* __restrict__ out_ptr, const int* __restrict__ out_dst,
    const int* __restrict__ out_woff, const float* __restrict__ params, const float* __restrict__ act,
    float* __restrict__ dz, int batch, double* __restrict__ stats)
{
    __shared__ double scratch[THREADS / 32];
    const int s = slots[blockIdx.x], C = G(s, GEO_C), H = G(s, GEO_H), W = G(s, GEO_W);
    const int i = blockIdx.y * THREADS + threadIdx.x;  // (sample, position)
    double s1 = 0.0, s2 = 0.0, s3 = 0.0;
    if (i < batch * H * W) {
        const int b = i / (H * W), y = (i / W) % H, x = i % W;
        const int base = act_off[s] + b * width[s] + y * W + x;
        float g[CONV_CH];
        for (int c0 = 0; c0 < C; c0 += CONV_CH) {
            const int nc = min(CONV_CH, C - c0);
            conv_pull(s, b, y, x, c0, nc, geo, width, act_off, out_ptr, out_dst, out_woff, params, dz, g);
#pragma unroll
            for (int c = 0; c < CONV_CH; ++c)
                if (c < nc) mask_and_count(g[c], act[base + (c0 + c) * H * W], dz + base + (c0 + c) * H * W, s1, s2, s3);
        }
    }
    if (blockIdx.y * THREADS < batch * H * W) add_group_stats(stats, s, s1, s2, s3, scratch);
}

// Each block sums CONV_SAMPLES samples of one edge's weight gradient, every weight element, and
// adds its partial sums into `grads` (zeroed before: zero_ranges). A sample's dz and input maps
// are staged in shared memory when they fit in CONV_SHARED floats (else read where they are).
extern "C" __global__ void conv_weight_grad(
    const int* __restrict__ tasks, const int* __restrict__ geo, const int* __restrict__ width,
    const int* __restrict__ act_off, const float* __restrict__ act, const float* __restrict__ dz,
    float* __restrict__ grads, int batch)
{
    __shared__ float staged[CONV_SHARED];
    const int src = tasks[3 * blockIdx.x], s = tasks[3 * blockIdx.x + 1], woff = tasks[3 * blockIdx.x + 2];
    const int C = G(s, GEO_C), H = G(s, GEO_H), W = G(s, GEO_W), K = G(s, GEO_K), S = G(s, GEO_STRIDE), P = K / 2;
    const int Cs = G(src, GEO_C), Hs = G(src, GEO_H), Ws = G(src, GEO_W);
    const int n_out = C * H * W, n_in = Cs * Hs * Ws, n_w = C * Cs * K * K;
    const bool fits = n_out + n_in <= CONV_SHARED;
    const int b0 = blockIdx.y * CONV_SAMPLES, b1 = min(batch, b0 + CONV_SAMPLES);
    for (int w0 = 0; w0 < n_w; w0 += THREADS) {  // the block's threads take THREADS weight elements at a time
        const int w = w0 + threadIdx.x;
        const int kx = w % K, ky = (w / K) % K, ci = (w / (K * K)) % Cs, c = w / (Cs * K * K);
        float sum = 0.f;
        for (int b = b0; b < b1; ++b) {
            const float* dzs = dz + act_off[s] + b * width[s];
            const float* in = act + act_off[src] + b * width[src];
            if (fits) {
                __syncthreads();
                for (int k = threadIdx.x; k < n_out; k += THREADS) staged[k] = dzs[k];
                for (int k = threadIdx.x; k < n_in; k += THREADS) staged[n_out + k] = in[k];
                __syncthreads();
                dzs = staged;
                in = staged + n_out;
            }
            if (w >= n_w) continue;
            for (int y = 0; y < H; ++y) {
                const int iy = y * S + ky - P;
                if (iy < 0 || iy >= Hs) continue;
                for (int x = 0; x < W; ++x) {
                    const int ix = x * S + kx - P;
                    if (ix >= 0 && ix < Ws) sum += dzs[(c * H + y) * W + x] * in[(ci * Hs + iy) * Ws + ix];
                }
            }
        }
        if (w < n_w) atomicAdd(grads + woff + w, sum);
    }
}

extern "C" __global__ void conv_bias_grad(
    const int* __restrict__ slots, const int* __restrict__ geo, const int* __restrict__ width,
    const int* __restrict__ act_off, const int* __restrict__ bias_off, const float* __restrict__ dz,
    float* __restrict__ grads, int batch)
{
    __shared__ double scratch[THREADS / 32];
    const int s = slots[blockIdx.x], c = blockIdx.y, HW = G(s, GEO_H) * G(s, GEO_W);
    if (c >= G(s, GEO_C)) return;
    double sum = 0.0;
    for (int i = threadIdx.x; i < batch * HW; i += THREADS)
        sum += dz[act_off[s] + (i / HW) * width[s] + c * HW + i % HW];
    sum = block_sum(sum, scratch);
    if (threadIdx.x == 0) grads[bias_off[s] + c] = (float)sum;
}
