// conv.cu: convolution groups (genlab/kinds/conv.py is the reference), group-major activations.
//
// A conv group s holds C x H x W values a sample (channel, row, column; width[s] = C * H * W
// columns of its block), read from sources that are conv groups or the image input, all on the
// grid Hi x Wi its kernel slides over: same padding (K / 2 zeros each side), stride S, so that
// H = (Hi - 1) / S + 1. geo[GEO_INTS * s + GEO_*] holds each slot's kind, C, H, W, K, S (the
// input's C, H, W too). The weight block of edge src -> s is C x Csrc x K x K, row-major.
//
// conv_forward: h = relu(b + sum over in-edges of conv(h_src, W)). One thread per output value;
//   launch grid (groups in `slots`, ceil(batch * width / THREADS)).
// conv_backward: dL/dh of each value pulled from the group's consumers (a dense consumer reads
//   the block flattened: dz_d W; a conv consumer: the transposed convolution), then dz = dL/dh
//   where h > 0, and the group's statistics (genlab.cuh's mask_and_count). Same launch.
// conv_weight_grad: one block per (edge task, weight element), the block summing over the batch
//   and the output grid. Task (src slot, dst slot, weight offset); grid (tasks, largest block).
// conv_bias_grad: one block per (group, channel); grid (groups in `slots`, largest C).
#include "genlab.cuh"

#define G(s, f) geo[GEO_INTS * (s) + (f)]

extern "C" __global__ void conv_forward(
    const int* __restrict__ slots, const int* __restrict__ geo, const int* __restrict__ width,
    const int* __restrict__ act_off, const int* __restrict__ bias_off, const int* __restrict__ in_ptr,
    const int* __restrict__ in_src, const int* __restrict__ in_woff, const float* __restrict__ params,
    float* __restrict__ act, int batch)
{
    const int s = slots[blockIdx.x], n = width[s];
    const int i = blockIdx.y * THREADS + threadIdx.x;
    if (i >= batch * n) return;
    const int b = i / n, j = i % n;
    const int H = G(s, GEO_H), W = G(s, GEO_W), K = G(s, GEO_K), S = G(s, GEO_STRIDE), P = K / 2;
    const int c = j / (H * W), y = (j / W) % H, x = j % W;
    float z = params[bias_off[s] + c];
    for (int e = in_ptr[s]; e < in_ptr[s + 1]; ++e) {
        const int src = in_src[e], Cs = G(src, GEO_C), Hs = G(src, GEO_H), Ws = G(src, GEO_W);
        const float* h = act + act_off[src] + b * width[src];
        const float* w = params + in_woff[e] + c * Cs * K * K;
        for (int ci = 0; ci < Cs; ++ci)
            for (int ky = 0; ky < K; ++ky) {
                const int iy = y * S + ky - P;
                if (iy < 0 || iy >= Hs) continue;
                for (int kx = 0; kx < K; ++kx) {
                    const int ix = x * S + kx - P;
                    if (ix >= 0 && ix < Ws) z += h[(ci * Hs + iy) * Ws + ix] * w[(ci * K + ky) * K + kx];
                }
            }
    }
    act[act_off[s] + b * n + j] = fmaxf(z, 0.f);
}

// dL/dh of value (b, j = (c, y, x)) of conv group s, from its consumers.
__device__ float conv_pull(int s, int b, int j, const int* geo, const int* width, const int* act_off,
                           const int* out_ptr, const int* out_dst, const int* out_woff, const float* params,
                           const float* dz)
{
    const int n = width[s], H = G(s, GEO_H), W = G(s, GEO_W), C = G(s, GEO_C);
    const int c = j / (H * W), y = (j / W) % H, x = j % W;
    float g = 0.f;
    for (int e = out_ptr[s]; e < out_ptr[s + 1]; ++e) {
        const int d = out_dst[e], nd = width[d];
        const float* w = params + out_woff[e];
        const float* dzd = dz + act_off[d] + b * nd;
        if (G(d, GEO_KIND) != KIND_CONV) {  // a dense consumer reads the block flattened
            for (int k = 0; k < nd; ++k) g += dzd[k] * w[k * n + j];
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
                for (int co = 0; co < Cd; ++co) g += dzd[co * Hd * Wd + o] * w[((co * C + c) * K + ky) * K + kx];
            }
        }
    }
    return g;
}

extern "C" __global__ void conv_backward(
    const int* __restrict__ slots, const int* __restrict__ geo, const int* __restrict__ width,
    const int* __restrict__ act_off, const int* __restrict__ out_ptr, const int* __restrict__ out_dst,
    const int* __restrict__ out_woff, const float* __restrict__ params, const float* __restrict__ act,
    float* __restrict__ dz, int batch, double* __restrict__ stats)
{
    __shared__ double scratch[THREADS / 32];
    const int s = slots[blockIdx.x], n = width[s];
    const int i = blockIdx.y * THREADS + threadIdx.x;
    double s1 = 0.0, s2 = 0.0, s3 = 0.0;
    if (i < batch * n) {
        const int b = i / n, j = i % n;
        const float g = conv_pull(s, b, j, geo, width, act_off, out_ptr, out_dst, out_woff, params, dz);
        mask_and_count(g, act[act_off[s] + i], dz + act_off[s] + i, s1, s2, s3);
    }
    if (blockIdx.y * THREADS < batch * n) add_group_stats(stats, s, s1, s2, s3, scratch);
}

extern "C" __global__ void conv_weight_grad(
    const int* __restrict__ tasks, const int* __restrict__ geo, const int* __restrict__ width,
    const int* __restrict__ act_off, const float* __restrict__ act, const float* __restrict__ dz,
    float* __restrict__ grads, int batch)
{
    __shared__ double scratch[THREADS / 32];
    const int src = tasks[3 * blockIdx.x], s = tasks[3 * blockIdx.x + 1], woff = tasks[3 * blockIdx.x + 2];
    const int C = G(s, GEO_C), H = G(s, GEO_H), W = G(s, GEO_W), K = G(s, GEO_K), S = G(s, GEO_STRIDE), P = K / 2;
    const int Cs = G(src, GEO_C), Hs = G(src, GEO_H), Ws = G(src, GEO_W);
    const int w = blockIdx.y;  // the weight element (c, ci, ky, kx)
    if (w >= C * Cs * K * K) return;
    const int kx = w % K, ky = (w / K) % K, ci = (w / (K * K)) % Cs, c = w / (Cs * K * K);
    double sum = 0.0;
    for (int i = threadIdx.x; i < batch * H * W; i += THREADS) {
        const int b = i / (H * W), y = (i / W) % H, x = i % W;
        const int iy = y * S + ky - P, ix = x * S + kx - P;
        if (iy < 0 || iy >= Hs || ix < 0 || ix >= Ws) continue;
        sum += (double)dz[act_off[s] + b * width[s] + (c * H + y) * W + x] *
               act[act_off[src] + b * width[src] + (ci * Hs + iy) * Ws + ix];
    }
    sum = block_sum(sum, scratch);
    if (threadIdx.x == 0) grads[woff + w] = (float)sum;
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
