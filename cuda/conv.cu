// conv.cu: convolution groups (genlab/kinds/conv.py is the reference), group-major activations.
//
// A conv group s holds C x H x W values a sample (channel, row, column; width[s] = C * H * W
// columns of its block), read from sources that are conv groups or the image input, all on the
// grid Hi x Wi its kernel slides over: same padding (K / 2 zeros each side), stride S, so that
// H = (Hi - 1) / S + 1. geo[GEO_INTS * s + GEO_*] holds each slot's kind, C, H, W, K, S (the
// input's C, H, W too). The weight block of edge src -> s is C x Csrc x K x K, row-major.
//
// conv_forward: h = relu(b + sum over in-edges of conv(h_src, W)). A thread owns CONV_POS (sample,
//   output position) pairs, CONV_CH channels at a time; grid (groups in `slots`, ceil(batch * H * W
//   / (THREADS * CONV_POS))) with the largest H * W of the list.
// conv_forward_staged: the same for kernels of 1, 3 or 5 whose weights (C rounded up to CONV_CH,
//   times every input channel, times K^2) and a sample's input channels with their halo fit
//   CONV_SHARED floats (the engine checks: executors/kinds.py): both staged in shared memory
//   (forward_staged; the samples' inputs in two buffers where they fit CONV_BUFFERED). Same launch.
// Every staged copy is a cp.async (stage_async): a copy through registers waited on L2 for each
// float and bounded these kernels (benchmarks/NOTES.md, sixth round of engine speed v2).
// conv_backward: dL/dh pulled from the group's consumers (a dense consumer reads the block
//   flattened: dz_d W; a conv consumer: the transposed convolution), then dz = dL/dh where h > 0,
//   and the group's statistics (genlab.cuh's mask_and_count). Same threads and launch.
//   conv_forward and conv_backward hold a channel chunk's K x K weights in registers for CONV_POS positions (kernels 1 and 3;
//   conv_backward's consumers of stride 1), so few blocks fit an SM: it is the price of the reuse.
// conv_backward_staged: the same for groups whose consumers are dense or conv of stride 1 with
//   kernels of 1, 3 or 5 that fit CONV_SHARED (the engine checks: executors/kinds.py): sample by
//   sample, each conv consumer's flipped weights and dz channels (with their halo) staged in
//   shared memory, the group's dL/dh summed there. Same launch.
// conv_weight_grad: one block per (edge task, CONV_SAMPLES samples), warps owning tiles of
//   weights (below). Task (src slot, dst slot, weight offset); grid (tasks, ceil(batch / CONV_SAMPLES)).
// conv_bias_grad: one block per (group, channel); grid (groups in `slots`, largest C).
#include "genlab.cuh"

#define G(s, f) geo[GEO_INTS * (s) + (f)]

#define CONV_BUFFERED 12288  // floats of shared memory of the kernels that stage in two buffers (48 KiB, the
                            // most without opting in): conv_forward_staged, conv_weight_grad
#ifndef CONV_BUFFERS
#define CONV_BUFFERS 2  // their staging buffers where two fit (1: stage, then compute; the harness varies it)
#endif
#ifndef CONV_FWD_PAIRS
#define CONV_FWD_PAIRS 1  // conv_forward_staged takes two samples a phase where they fit (forward_pairs); 0: one (a harness variant)
#endif

// Value (iy, ix) of an H x W map, or the zero padding around it.
__device__ __forceinline__ float padded(const float* map, int iy, int ix, int H, int W)
{
    return (iy >= 0 && iy < H && ix >= 0 && ix < W) ? map[iy * W + ix] : 0.f;
}

// CONV_POS positions a thread (p, p + THREADS, ...) for kernels of 1 or 3: a channel chunk's
// K x K weights of one input channel are held in registers and serve every position.
template <int K>
__device__ void forward_positions(int s, int p0, int total, const int* geo, const int* width, const int* act_off,
                                  const int* bias_off, const int* in_ptr, const int* in_src, const int* in_woff,
                                  const float* params, float* act)
{
    constexpr int P = K / 2;
    const int C = G(s, GEO_C), H = G(s, GEO_H), W = G(s, GEO_W), S = G(s, GEO_STRIDE), HW = H * W;
    for (int c0 = 0; c0 < C; c0 += CONV_CH) {
        const int nc = min(CONV_CH, C - c0);
        float z[CONV_POS][CONV_CH];
#pragma unroll
        for (int q = 0; q < CONV_POS; ++q)
#pragma unroll
            for (int c = 0; c < CONV_CH; ++c) z[q][c] = c < nc ? params[bias_off[s] + c0 + c] : 0.f;
        for (int e = in_ptr[s]; e < in_ptr[s + 1]; ++e) {
            const int src = in_src[e], Cs = G(src, GEO_C), Hs = G(src, GEO_H), Ws = G(src, GEO_W);
            const float* h0 = act + act_off[src];
            for (int ci = 0; ci < Cs; ++ci) {
                float w[CONV_CH][K][K];
#pragma unroll
                for (int c = 0; c < CONV_CH; ++c)
#pragma unroll
                    for (int k = 0; k < K * K; ++k)
                        w[c][k / K][k % K] = c < nc ? params[in_woff[e] + ((c0 + c) * Cs + ci) * K * K + k] : 0.f;
#pragma unroll
                for (int q = 0; q < CONV_POS; ++q) {
                    const int i = p0 + q * THREADS;
                    if (i >= total) break;
                    const int b = i / HW, y = (i / W) % H, x = i % W;
                    const float* h = h0 + b * width[src] + ci * Hs * Ws;
#pragma unroll
                    for (int ky = 0; ky < K; ++ky)
#pragma unroll
                        for (int kx = 0; kx < K; ++kx) {
                            const float v = padded(h, y * S + ky - P, x * S + kx - P, Hs, Ws);
#pragma unroll
                            for (int c = 0; c < CONV_CH; ++c) z[q][c] += v * w[c][ky][kx];
                        }
                }
            }
        }
#pragma unroll
        for (int q = 0; q < CONV_POS; ++q) {
            const int i = p0 + q * THREADS;
            if (i >= total) break;
            float* out = act + act_off[s] + (i / HW) * width[s] + i % HW;
#pragma unroll
            for (int c = 0; c < CONV_CH; ++c)
                if (c < nc) out[(c0 + c) * HW] = fmaxf(z[q][c], 0.f);
        }
    }
}

// A 4-byte copy global -> shared that lands by copies_wait (cp.async.ca, sm_80+: no registers
// held, every copy of a thread in flight at once, and the block may compute while they land), or
// a zero where !valid (its zero-fill form reads no byte of src). The CPU emulator (no
// __CUDA_ARCH__) copies at once.
__device__ __forceinline__ void copy_async(float* dst, const float* src, bool valid)
{
#ifdef __CUDA_ARCH__
    const unsigned d = (unsigned)__cvta_generic_to_shared(dst);
    asm volatile("cp.async.ca.shared.global [%0], [%1], 4, %2;" :: "r"(d), "l"(src), "r"(valid ? 4 : 0) : "memory");
#else
    *dst = valid ? *src : 0.f;
#endif
}

// Every copy_async of this thread has landed (the block sees them after a __syncthreads).
__device__ __forceinline__ void copies_wait()
{
#ifdef __CUDA_ARCH__
    asm volatile("cp.async.wait_all;" ::: "memory");
#endif
}

// dst[k] = src[at(k)] for k < n, or 0 where at(k) < 0, by copy_async (the block's threads taking
// every THREADS-th k). Staging one value at a time through registers waited on L2's latency once
// per element and bounded every staged kernel here (benchmarks/NOTES.md).
template <class F>
__device__ __forceinline__ void stage_async(float* dst, const float* src, int n, F at)
{
    for (int k = threadIdx.x; k < n; k += THREADS) {
        const int i = at(k);
        copy_async(dst + k, src + max(i, 0), i >= 0);
    }
}

// `channels` maps of Hs x Ws from `src` (channel after channel) into `dst` as planes of
// (Hs + 2P) x (Ws + 2P) with a zero halo of P, by copy_async.
__device__ __forceinline__ void stage_padded(float* dst, const float* src, int channels, int Hs, int Ws, int P)
{
    const int Wp = Ws + 2 * P, plane = (Hs + 2 * P) * Wp;
    stage_async(dst, src, channels * plane, [&](int k) {
        const int ci = k / plane, r = k % plane, y = r / Wp - P, x = r % Wp - P;
        return y >= 0 && y < Hs && x >= 0 && x < Ws ? (ci * Hs + y) * Ws + x : -1;
    });
}

// z[c] += the products of `channels` staged planes (Wp columns, `plane` floats apart) at the
// K x K window whose corner is `base`, with staged weights w[tap * Cr + c] (tap = (channel, ky,
// kx)): a tap is one shared load and CONV_CH products, the weights two broadcast float4 loads.
template <int K>
__device__ __forceinline__ void taps_product(const float* base, const float* w, int channels, int Wp, int plane, int Cr,
                                             float z[CONV_CH])
{
    for (int ci = 0; ci < channels; ++ci) {
        const float* m = base + ci * plane;
#pragma unroll
        for (int ky = 0; ky < K; ++ky)
#pragma unroll
            for (int kx = 0; kx < K; ++kx) {
                const float v = m[ky * Wp + kx];
                const float4* w4 = reinterpret_cast<const float4*>(w + ((ci * K + ky) * K + kx) * Cr);
#pragma unroll
                for (int q = 0; q < CONV_CH / 4; ++q) {
                    const float4 u = w4[q];
                    z[4 * q] += v * u.x; z[4 * q + 1] += v * u.y; z[4 * q + 2] += v * u.z; z[4 * q + 3] += v * u.w;
                }
            }
    }
}

// taps_product at the same position of two samples' staged planes (base0, base1): each weight
// load serves 2 x CONV_CH products.
template <int K>
__device__ __forceinline__ void taps_product2(const float* base0, const float* base1, const float* w, int channels,
                                              int Wp, int plane, int Cr, float z0[CONV_CH], float z1[CONV_CH])
{
    for (int ci = 0; ci < channels; ++ci) {
        const float* m0 = base0 + ci * plane;
        const float* m1 = base1 + ci * plane;
#pragma unroll
        for (int ky = 0; ky < K; ++ky)
#pragma unroll
            for (int kx = 0; kx < K; ++kx) {
                const float v0 = m0[ky * Wp + kx], v1 = m1[ky * Wp + kx];
                const float4* w4 = reinterpret_cast<const float4*>(w + ((ci * K + ky) * K + kx) * Cr);
#pragma unroll
                for (int q = 0; q < CONV_CH / 4; ++q) {
                    const float4 u = w4[q];
                    z0[4 * q] += v0 * u.x; z0[4 * q + 1] += v0 * u.y; z0[4 * q + 2] += v0 * u.z; z0[4 * q + 3] += v0 * u.w;
                    z1[4 * q] += v1 * u.x; z1[4 * q + 1] += v1 * u.y; z1[4 * q + 2] += v1 * u.z; z1[4 * q + 3] += v1 * u.w;
                }
            }
    }
}

// A staged conv group's shapes: its C x H x W and stride, its sources' grid Hs x Ws, their planes
// padded by P (Wp columns, `plane` floats) and C rounded up to CONV_CH (Cr). (forward_pairs;
// forward_staged computes the same inline, as it was timed.)
struct StagedShape { int C, H, W, S, Hs, Ws, Wp, plane, Cr; };

__device__ __forceinline__ StagedShape staged_shape(int s, int P, const int* geo, const int* in_ptr, const int* in_src)
{
    const int src0 = in_src[in_ptr[s]], C = G(s, GEO_C), Hs = G(src0, GEO_H), Ws = G(src0, GEO_W);
    return {C, G(s, GEO_H), G(s, GEO_W), G(s, GEO_STRIDE), Hs, Ws, Ws + 2 * P, (Hs + 2 * P) * (Ws + 2 * P),
            (C + CONV_CH - 1) / CONV_CH * CONV_CH};
}

// The weights of every in-edge of conv group s (C channels, kernel K) into wsh[tap][c]: tap =
// (input channel over the in-edges, ky, kx), c over C rounded up to CONV_CH (Cr), zero past C.
template <int K>
__device__ __forceinline__ void stage_weights(float* wsh, int s, int C, int Cr, const int* geo, const int* in_ptr,
                                              const int* in_src, const int* in_woff, const float* params)
{
    for (int e = in_ptr[s], t0 = 0; e < in_ptr[s + 1]; ++e) {
        const int Cs = G(in_src[e], GEO_C), n = Cs * K * K;
        for (int k = threadIdx.x; k < n * Cr; k += THREADS) {
            const int c = k / n, t = k % n;  // (c, ci, ky, kx) as the weight block is laid out
            wsh[(t0 + t) * Cr + c] = c < C ? params[in_woff[e] + c * n + t] : 0.f;
        }
        t0 += n;
    }
}

// The block's (sample, position) indices i0..i1-1 for kernels of 1, 3 or 5, every input staged:
// the weights of every channel once (wsh[tap][c]: tap = (input channel over the in-edges, ky, kx),
// c over C rounded up to CONV_CH, zero past C), then for each sample its input channels with a
// zero halo of K / 2 (Hp x Wp planes; in two buffers where they fit CONV_BUFFERED, the next
// sample's copies in flight while the block computes on this one). A thread owns a position and
// CONV_CH channels at a time.
template <int K>
__device__ void forward_staged(int s, int i0, int i1, const int* geo, const int* width, const int* act_off,
                               const int* bias_off, const int* in_ptr, const int* in_src, const int* in_woff,
                               const float* params, float* act, float* sh, int taps)
{
    constexpr int P = K / 2;
    const int C = G(s, GEO_C), H = G(s, GEO_H), W = G(s, GEO_W), S = G(s, GEO_STRIDE), HW = H * W;
    const int src0 = in_src[in_ptr[s]], Hs = G(src0, GEO_H), Ws = G(src0, GEO_W);
    const int Wp = Ws + 2 * P, plane = (Hs + 2 * P) * Wp, Cr = (C + CONV_CH - 1) / CONV_CH * CONV_CH;
    const int sample = taps / (K * K) * plane, buffers = taps * Cr + 2 * sample <= CONV_BUFFERED ? CONV_BUFFERS : 1;
    float* wsh = sh;  // taps x Cr, then `buffers` of a sample's (taps / K^2) planes
    const auto buffer = [&](int i) { return sh + taps * Cr + i * sample; };
    const auto issue = [&](int b, float* to) {
        for (int e = in_ptr[s], c0 = 0; e < in_ptr[s + 1]; ++e) {
            const int src = in_src[e], Cs = G(src, GEO_C);
            stage_padded(to + c0 * plane, act + act_off[src] + (long long)b * width[src], Cs, Hs, Ws, P);
            c0 += Cs;
        }
    };
    stage_weights<K>(wsh, s, C, Cr, geo, in_ptr, in_src, in_woff, params);
    const int first = i0 / HW;
    if (buffers == 2 && first * HW < i1) issue(first, buffer(0));  // (a block past a smaller group's end stages nothing)
    for (int b = first; b * HW < i1; ++b) {
        const float* in = buffer((b - first) % buffers);
        if (buffers == 1) {
            __syncthreads();  // (the last sample's planes are read)
            issue(b, buffer(0));
        }
        copies_wait();
        __syncthreads();  // (the weights, sample b landed; the other buffer's last sample is read)
        if (buffers == 2 && (b + 1) * HW < i1) issue(b + 1, buffer((b + 1 - first) % 2));
        const int lo = max(i0, b * HW), hi = min(i1, (b + 1) * HW);
        for (int i = lo + threadIdx.x; i < hi; i += THREADS) {
            const int p = i - b * HW, y = p / W, x = p % W;
            const float* base = in + (y * S) * Wp + x * S;
            float* out = act + act_off[s] + (long long)b * width[s] + p;
            for (int c0 = 0; c0 < C; c0 += CONV_CH) {
                float z[CONV_CH];
#pragma unroll
                for (int c = 0; c < CONV_CH; ++c) z[c] = c0 + c < C ? params[bias_off[s] + c0 + c] : 0.f;
                taps_product<K>(base, wsh + c0, taps / (K * K), Wp, plane, Cr, z);
#pragma unroll
                for (int c = 0; c < CONV_CH; ++c)
                    if (c0 + c < C) out[(c0 + c) * HW] = fmaxf(z[c], 0.f);
            }
        }
    }
}

// forward_staged two samples a phase (CONV_FWD_PAIRS, the default; where the weights and two samples' planes
// fit CONV_BUFFERED): both samples staged at once, a thread computing its position in both, so
// that a weight load serves both (the staged forward is bound by shared-memory loads: a tap is
// one input and two weight loads for CONV_CH products). No copies in flight while it computes.
template <int K>
__device__ void forward_pairs(int s, int i0, int i1, const int* geo, const int* width, const int* act_off,
                              const int* bias_off, const int* in_ptr, const int* in_src, const int* in_woff,
                              const float* params, float* act, float* sh, int taps)
{
    constexpr int P = K / 2;
    const StagedShape g = staged_shape(s, P, geo, in_ptr, in_src);
    const int C = g.C, H = g.H, W = g.W, S = g.S, HW = H * W, Hs = g.Hs, Ws = g.Ws, Wp = g.Wp, plane = g.plane, Cr = g.Cr;
    const int sample = taps / (K * K) * plane;
    float* wsh = sh;  // taps x Cr, then the two samples' (taps / K^2) planes
    float* in0 = sh + taps * Cr;
    float* in1 = in0 + sample;
    stage_weights<K>(wsh, s, C, Cr, geo, in_ptr, in_src, in_woff, params);
    for (int b = i0 / HW; b * HW < i1; b += 2) {
        const bool second = (b + 1) * HW < i1;
        __syncthreads();  // (the weights; the last pair's planes are read)
        for (int e = in_ptr[s], c0 = 0; e < in_ptr[s + 1]; ++e) {
            const int src = in_src[e], Cs = G(src, GEO_C);
            const float* h = act + act_off[src] + (long long)b * width[src];
            stage_padded(in0 + c0 * plane, h, Cs, Hs, Ws, P);
            if (second) stage_padded(in1 + c0 * plane, h + width[src], Cs, Hs, Ws, P);
            c0 += Cs;
        }
        copies_wait();
        __syncthreads();
        // sample b's positions lo0..hi0-1 (the block's range may start inside it), b + 1's 0..hi1-1
        const int lo0 = max(i0 - b * HW, 0), hi0 = min(i1 - b * HW, HW), hi1 = second ? min(i1 - (b + 1) * HW, HW) : 0;
        for (int p = threadIdx.x; p < max(hi0, hi1); p += THREADS) {
            const int y = p / W, x = p % W, at = (y * S) * Wp + x * S;
            float* out0 = act + act_off[s] + (long long)b * width[s] + p;
            float* out1 = out0 + width[s];
            for (int c0 = 0; c0 < C; c0 += CONV_CH) {
                float z0[CONV_CH], z1[CONV_CH];
#pragma unroll
                for (int c = 0; c < CONV_CH; ++c) z0[c] = z1[c] = c0 + c < C ? params[bias_off[s] + c0 + c] : 0.f;
                taps_product2<K>(in0 + at, in1 + at, wsh + c0, taps / (K * K), Wp, plane, Cr, z0, z1);
#pragma unroll
                for (int c = 0; c < CONV_CH; ++c)
                    if (c0 + c < C) {
                        if (p >= lo0 && p < hi0) out0[(c0 + c) * HW] = fmaxf(z0[c], 0.f);
                        if (p < hi1) out1[(c0 + c) * HW] = fmaxf(z1[c], 0.f);
                    }
            }
        }
    }
}

extern "C" __global__ void __launch_bounds__(THREADS, 4) conv_forward_staged(
    const int* __restrict__ slots, const int* __restrict__ geo, const int* __restrict__ width,
    const int* __restrict__ act_off, const int* __restrict__ bias_off, const int* __restrict__ in_ptr,
    const int* __restrict__ in_src, const int* __restrict__ in_woff, const float* __restrict__ params,
    float* __restrict__ act, int batch)
{
    __shared__ __align__(16) float sh[CONV_BUFFERED];
    const int s = slots[blockIdx.x], K = G(s, GEO_K), total = batch * G(s, GEO_H) * G(s, GEO_W);
    const int i0 = blockIdx.y * THREADS * CONV_POS, i1 = min(total, i0 + THREADS * CONV_POS);
    int channels = 0;
    for (int e = in_ptr[s]; e < in_ptr[s + 1]; ++e) channels += G(in_src[e], GEO_C);
#if CONV_FWD_PAIRS
    const int src0 = in_src[in_ptr[s]], P = K / 2;
    const int pair = 2 * channels * (G(src0, GEO_H) + 2 * P) * (G(src0, GEO_W) + 2 * P);
    if (channels * K * K * ((G(s, GEO_C) + CONV_CH - 1) / CONV_CH * CONV_CH) + pair <= CONV_BUFFERED) {
        if (K == 1) forward_pairs<1>(s, i0, i1, geo, width, act_off, bias_off, in_ptr, in_src, in_woff, params, act, sh, channels);
        if (K == 3) forward_pairs<3>(s, i0, i1, geo, width, act_off, bias_off, in_ptr, in_src, in_woff, params, act, sh, 9 * channels);
        if (K == 5) forward_pairs<5>(s, i0, i1, geo, width, act_off, bias_off, in_ptr, in_src, in_woff, params, act, sh, 25 * channels);
        return;
    }
#endif
    if (K == 1) forward_staged<1>(s, i0, i1, geo, width, act_off, bias_off, in_ptr, in_src, in_woff, params, act, sh, channels);
    if (K == 3) forward_staged<3>(s, i0, i1, geo, width, act_off, bias_off, in_ptr, in_src, in_woff, params, act, sh, 9 * channels);
    if (K == 5) forward_staged<5>(s, i0, i1, geo, width, act_off, bias_off, in_ptr, in_src, in_woff, params, act, sh, 25 * channels);
}

extern "C" __global__ void __launch_bounds__(THREADS, 2) conv_forward(
    const int* __restrict__ slots, const int* __restrict__ geo, const int* __restrict__ width,
    const int* __restrict__ act_off, const int* __restrict__ bias_off, const int* __restrict__ in_ptr,
    const int* __restrict__ in_src, const int* __restrict__ in_woff, const float* __restrict__ params,
    float* __restrict__ act, int batch)
{
    const int s = slots[blockIdx.x], C = G(s, GEO_C), H = G(s, GEO_H), W = G(s, GEO_W), K = G(s, GEO_K);
    const int p0 = blockIdx.y * THREADS * CONV_POS + threadIdx.x, total = batch * H * W;
    if (p0 >= total) return;
    if (K == 1) return forward_positions<1>(s, p0, total, geo, width, act_off, bias_off, in_ptr, in_src, in_woff, params, act);
    if (K == 3) return forward_positions<3>(s, p0, total, geo, width, act_off, bias_off, in_ptr, in_src, in_woff, params, act);
    const int S = G(s, GEO_STRIDE), P = K / 2;
    for (int i = p0; i < min(total, p0 + CONV_POS * THREADS); i += THREADS) {  // other kernels: a position at a time
        const int b = i / (H * W), y = (i / W) % H, x = i % W;
        float* out = act + act_off[s] + b * width[s] + y * W + x;
        for (int c = 0; c < C; ++c) {
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
            out[c * H * W] = fmaxf(z, 0.f);
        }
    }
}

// What conv consumer d (kernel K, known at compile time; stride 1) sends back to channels c0..
// (nc of them) of group s at CONV_POS positions: the transposed convolution of d's dz. A channel
// chunk's weights for one of d's channels sit in registers and serve every position.
template <int K>
__device__ __forceinline__ void pull_conv(int s, int d, const float* w, const float* dz_d, int nd, const int* geo, int c0, int nc,
                          const int* pb, const int* py, const int* px, int n_pos, float g[CONV_POS][CONV_CH])
{
    constexpr int P = K / 2;  // (stride 1: the output position that reads (y, x) at (ky, kx) is (y + P - ky, x + P - kx))
    const int C = G(s, GEO_C), Cd = G(d, GEO_C), Hd = G(d, GEO_H), Wd = G(d, GEO_W);
    for (int co = 0; co < Cd; ++co) {
        float wk[CONV_CH][K][K];
#pragma unroll
        for (int c = 0; c < CONV_CH; ++c)
#pragma unroll
            for (int k = 0; k < K * K; ++k) wk[c][k / K][k % K] = c < nc ? w[(co * C + c0 + c) * K * K + k] : 0.f;
#pragma unroll
        for (int q = 0; q < CONV_POS; ++q) {
            if (q >= n_pos) break;
            const float* dzq = dz_d + pb[q] * nd + co * Hd * Wd;
#pragma unroll
            for (int ky = 0; ky < K; ++ky) {
                const int oy = py[q] + P - ky;
#pragma unroll
                for (int kx = 0; kx < K; ++kx) {
                    const float v = padded(dzq, oy, px[q] + P - kx, Hd, Wd);
#pragma unroll
                    for (int c = 0; c < CONV_CH; ++c) g[q][c] += v * wk[c][ky][kx];
                }
            }
        }
    }
}

// dL/dh of channels c0.. (nc of them) of conv group s at CONV_POS positions (samples pb, rows py,
// columns px), from its consumers, into g.
__device__ __forceinline__ void conv_pull(int s, int c0, int nc, const int* pb, const int* py, const int* px, int n_pos,
                          const int* geo, const int* width, const int* act_off, const int* out_ptr, const int* out_dst,
                          const int* out_woff, const float* params, const float* dz, float g[CONV_POS][CONV_CH])
{
    const int n = width[s], H = G(s, GEO_H), W = G(s, GEO_W), C = G(s, GEO_C);
#pragma unroll
    for (int q = 0; q < CONV_POS; ++q)
#pragma unroll
        for (int c = 0; c < CONV_CH; ++c) g[q][c] = 0.f;
    for (int e = out_ptr[s]; e < out_ptr[s + 1]; ++e) {
        const int d = out_dst[e], nd = width[d], K = G(d, GEO_K);
        const float* w = params + out_woff[e];
        const float* dz_d = dz + act_off[d];
        if (G(d, GEO_KIND) != KIND_CONV) {  // a dense consumer reads the block flattened
            for (int q = 0; q < n_pos; ++q) {
                const int j = (c0 * H + py[q]) * W + px[q];
                for (int k = 0; k < nd; ++k) {
                    const float v = dz_d[pb[q] * nd + k];
#pragma unroll
                    for (int c = 0; c < CONV_CH; ++c)
                        if (c < nc) g[q][c] += v * w[k * n + j + c * H * W];
                }
            }
        } else if (K == 1 && G(d, GEO_STRIDE) == 1) {
            pull_conv<1>(s, d, w, dz_d, nd, geo, c0, nc, pb, py, px, n_pos, g);
        } else if (K == 3 && G(d, GEO_STRIDE) == 1) {
            pull_conv<3>(s, d, w, dz_d, nd, geo, c0, nc, pb, py, px, n_pos, g);
        } else {
            const int Cd = G(d, GEO_C), Hd = G(d, GEO_H), Wd = G(d, GEO_W), S = G(d, GEO_STRIDE), P = K / 2;
            for (int q = 0; q < n_pos; ++q)
                for (int ky = 0; ky < K; ++ky) {
                    const int ty = py[q] + P - ky;
                    if (ty < 0 || ty % S || ty / S >= Hd) continue;
                    for (int kx = 0; kx < K; ++kx) {
                        const int tx = px[q] + P - kx;
                        if (tx < 0 || tx % S || tx / S >= Wd) continue;
                        const int o = (ty / S) * Wd + tx / S;
                        for (int co = 0; co < Cd; ++co) {
                            const float v = dz_d[pb[q] * nd + co * Hd * Wd + o];
                            const float* wk = w + ((co * C + c0) * K + ky) * K + kx;
#pragma unroll
                            for (int c = 0; c < CONV_CH; ++c)
                                if (c < nc) g[q][c] += v * wk[c * K * K];
                        }
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
    const int s = slots[blockIdx.x], C = G(s, GEO_C), H = G(s, GEO_H), W = G(s, GEO_W), HW = H * W;
    const int p0 = blockIdx.y * THREADS * CONV_POS + threadIdx.x, total = batch * HW;
    if (blockIdx.y * THREADS * CONV_POS >= total) return;  // (the whole block: it sums its statistics below)
    int pb[CONV_POS], py[CONV_POS], px[CONV_POS], n_pos = 0;
#pragma unroll
    for (int q = 0; q < CONV_POS; ++q) {
        const int i = p0 + q * THREADS;
        pb[q] = i / HW; py[q] = (i / W) % H; px[q] = i % W;
        n_pos += i < total;
    }
    double s1 = 0.0, s2 = 0.0, s3 = 0.0;
    float g[CONV_POS][CONV_CH];
    for (int c0 = 0; c0 < C && n_pos; c0 += CONV_CH) {
        const int nc = min(CONV_CH, C - c0);
        conv_pull(s, c0, nc, pb, py, px, n_pos, geo, width, act_off, out_ptr, out_dst, out_woff, params, dz, g);
#pragma unroll
        for (int q = 0; q < CONV_POS; ++q) {
            if (q >= n_pos) break;
            const int base = act_off[s] + pb[q] * width[s] + py[q] * W + px[q];
#pragma unroll
            for (int c = 0; c < CONV_CH; ++c)
                if (c < nc) mask_and_count(g[q][c], act[base + (c0 + c) * HW], dz + base + (c0 + c) * HW, s1, s2, s3);
        }
    }
    add_group_stats(stats, s, s1, s2, s3, scratch);
}

// The first of positions lo.. that this thread owns in conv_backward_staged: p = threadIdx.x
// modulo THREADS, whatever lo is (so that a sample's values stay with their thread from one
// sample to the next, where lo changes, without a barrier).
__device__ __forceinline__ int first_owned(int lo)
{
    return lo + ((int)threadIdx.x - lo % THREADS + THREADS) % THREADS;
}

// The transposed convolution of conv consumer d (kernel K, stride 1: its grid is s's) for sample
// b's positions lo..hi-1 of group s, added into sums (s's C x H x W values of dL/dh; an element
// is owned by one thread: first_owned). Stages d's weights flipped (tap =
// (co, ky, kx) x C rounded up to CONV_CH) and the sample's dz channels of d with a zero halo.
template <int K>
__device__ void pull_staged(const float* w, const float* dzd, int C, int Cd, int H, int W, int lo, int hi,
                            float* sums, float* sh)
{
    constexpr int P = K / 2, KK = K * K;
    const int Wp = W + 2 * P, plane = (H + 2 * P) * Wp, Cr = (C + CONV_CH - 1) / CONV_CH * CONV_CH, HW = H * W;
    float* wsh = sh;
    float* in = sh + Cd * KK * Cr;
    __syncthreads();  // (the last consumer's stage is read)
    stage_async(wsh, w, Cd * KK * Cr, [&](int k) {
        const int t = k / Cr, c = k % Cr, co = t / KK, r = t % KK;
        return c < C ? (co * C + c) * KK + KK - 1 - r : -1;
    });
    stage_padded(in, dzd, Cd, H, W, P);
    copies_wait();
    __syncthreads();
    for (int p = first_owned(lo); p < hi; p += THREADS) {
        const float* base = in + (p / W) * Wp + p % W;
        for (int c0 = 0; c0 < C; c0 += CONV_CH) {
            float z[CONV_CH] = {};
            taps_product<K>(base, wsh + c0, Cd, Wp, plane, Cr, z);
#pragma unroll
            for (int c = 0; c < CONV_CH; ++c)
                if (c0 + c < C) sums[(c0 + c) * HW + p] += z[c];
        }
    }
}

// What dense consumer d (nd values, reading group s's n values flattened) sends back to sample
// b's positions lo..hi-1 of s (dz_d W at every channel), added into sums as pull_staged does.
__device__ void pull_dense(const float* w, const float* dzd, int nd, int n, int C, int HW, int lo, int hi, float* sums)
{
    for (int p = first_owned(lo); p < hi; p += THREADS)
        for (int c = 0; c < C; ++c) {
            float g = 0.f;
            for (int k = 0; k < nd; ++k) g += dzd[k] * w[k * n + c * HW + p];
            sums[c * HW + p] += g;
        }
}

extern "C" __global__ void __launch_bounds__(THREADS, 4) conv_backward_staged(
    const int* __restrict__ slots, const int* __restrict__ geo, const int* __restrict__ width,
    const int* __restrict__ act_off, const int* __restrict__ out_ptr, const int* __restrict__ out_dst,
    const int* __restrict__ out_woff, const float* __restrict__ params, const float* __restrict__ act,
    float* __restrict__ dz, int batch, double* __restrict__ stats)
{
    __shared__ __align__(16) float sh[CONV_SHARED];
    __shared__ double scratch[THREADS / 32];
    const int s = slots[blockIdx.x], C = G(s, GEO_C), H = G(s, GEO_H), W = G(s, GEO_W), HW = H * W, n = width[s];
    const int i0 = blockIdx.y * THREADS * CONV_POS, i1 = min(batch * HW, i0 + THREADS * CONV_POS);
    float* sums = sh;                       // the sample's dL/dh of s
    float* stage = sh + (n + 3) / 4 * 4;    // a consumer's weights and dz planes (16-byte aligned)
    double s1 = 0.0, s2 = 0.0, s3 = 0.0;
    for (int b = i0 / HW; b * HW < i1; ++b) {
        const int lo = max(i0 - b * HW, 0), hi = min(i1 - b * HW, HW);
        for (int p = first_owned(lo); p < hi; p += THREADS)
            for (int c = 0; c < C; ++c) sums[c * HW + p] = 0.f;
        for (int e = out_ptr[s]; e < out_ptr[s + 1]; ++e) {
            const int d = out_dst[e], K = G(d, GEO_K), Cd = G(d, GEO_C);
            const float* w = params + out_woff[e];
            const float* dzd = dz + act_off[d] + (long long)b * width[d];
            if (G(d, GEO_KIND) != KIND_CONV) pull_dense(w, dzd, width[d], n, C, HW, lo, hi, sums);
            else if (K == 1) pull_staged<1>(w, dzd, C, Cd, H, W, lo, hi, sums, stage);
            else if (K == 3) pull_staged<3>(w, dzd, C, Cd, H, W, lo, hi, sums, stage);
            else pull_staged<5>(w, dzd, C, Cd, H, W, lo, hi, sums, stage);
        }
        const long long base = act_off[s] + (long long)b * n;
        for (int p = first_owned(lo); p < hi; p += THREADS)
            for (int c = 0; c < C; ++c)
                mask_and_count(sums[c * HW + p], act[base + c * HW + p], dz + base + c * HW + p, s1, s2, s3);
    }
    add_group_stats(stats, s, s1, s2, s3, scratch);
}

// Each block sums CONV_SAMPLES samples of one edge's weight gradient and adds its partial sums
// into `grads` (zeroed before: zero_ranges). For kernels of 1, 3 or 5, each sample's dz map and
// input channels with a zero halo are staged in shared memory (copy_async: in two buffers where
// they fit CONV_BUFFERED, the next sample's copies in flight while the block computes on this
// one), and a warp owns a tile of WC output channels x K x K weights of one input channel
// (WgChannels), its lanes taking every 32nd position (consecutive positions: conflict-free
// shared loads; each input value loaded serves WC products); where there are fewer tiles than
// warps, several warps share a tile's positions. A tile's lanes meet by shuffles, the warps in
// the block's sums in shared memory, the block in one global add a weight. Other kernels (or maps
// too large to stage) take one weight element a thread.
template <int K> struct WgChannels { static constexpr int n = K == 5 ? CONV_WG / 4 : CONV_WG; };

template <int K>
__device__ void weight_warps(int C, int H, int W, int S, int Cs, int Hs, int Ws, const float* dz0, int dz_stride,
                             const float* in0, int in_stride, int b0, int b1, float* staged, int buffers, float* grads)
{
    constexpr int P = K / 2, KK = K * K, WC = WgChannels<K>::n, WARPS = THREADS / 32;
    const int HW = H * W, n_out = C * HW, Wp = Ws + 2 * P, plane = (Hs + 2 * P) * Wp, n_w = C * Cs * KK;
    const int warp = threadIdx.x / 32, lane = threadIdx.x % 32, tiles = (C + WC - 1) / WC * Cs;
    float* sums = staged;  // n_w partial sums of the block, then `buffers` of a sample's dz map and padded input
    const auto buffer = [&](int i) { return staged + n_w + i * (n_out + Cs * plane); };
    const auto issue = [&](int b, float* to) {
        const float* d = dz0 + (long long)b * dz_stride;
        const float* h = in0 + (long long)b * in_stride;
        stage_async(to, d, n_out, [](int k) { return k; });
        stage_padded(to + n_out, h, Cs, Hs, Ws, P);
    };
    for (int k = threadIdx.x; k < n_w; k += THREADS) sums[k] = 0.f;
    for (int t0 = 0; t0 < tiles; t0 += WARPS) {  // (more tiles than warps: in turns)
        const int active = min(WARPS, tiles - t0), shares = WARPS / active;
        const int tile = t0 + warp % active, share = warp / active;
        const int c = WC * (tile / Cs), ci = tile % Cs, nc = min(WC, C - c);
        const bool mine = share < shares;
        float a[WC][KK] = {};
        __syncthreads();  // (the last turn's buffers are read)
        if (buffers == 2) issue(b0, buffer(0));
        for (int b = b0; b < b1; ++b) {
            float* now = buffer((b - b0) % buffers);
            if (buffers == 1) {
                __syncthreads();
                issue(b, now);
            }
            copies_wait();
            __syncthreads();  // (sample b landed; the other buffer's last sample is read)
            if (buffers == 2 && b + 1 < b1) issue(b + 1, buffer((b + 1 - b0) % 2));
            if (!mine) continue;
            const float* d0 = now + c * HW;
            const float* m = now + n_out + ci * plane;
            for (int p = share * 32 + lane; p < HW; p += 32 * shares) {
                const float* base = m + (p / W * S) * Wp + p % W * S;
                float gz[WC];
#pragma unroll
                for (int j = 0; j < WC; ++j) gz[j] = j < nc ? d0[j * HW + p] : 0.f;
#pragma unroll
                for (int ky = 0; ky < K; ++ky)
#pragma unroll
                    for (int kx = 0; kx < K; ++kx) {
                        const float v = base[ky * Wp + kx];
#pragma unroll
                        for (int j = 0; j < WC; ++j) a[j][ky * K + kx] += gz[j] * v;
                    }
            }
        }
        if (mine)
#pragma unroll
            for (int j = 0; j < WC; ++j)
#pragma unroll
                for (int k = 0; k < KK; ++k) {
                    float v = a[j][k];
#pragma unroll
                    for (int o = 16; o > 0; o >>= 1) v += __shfl_xor_sync(0xffffffffu, v, o);
                    if (lane == 0 && j < nc) atomicAdd(sums + ((c + j) * Cs + ci) * KK + k, v);
                }
    }
    __syncthreads();
    for (int k = threadIdx.x; k < n_w; k += THREADS) atomicAdd(grads + k, sums[k]);
}

extern "C" __global__ void __launch_bounds__(THREADS, 2) conv_weight_grad(
    const int* __restrict__ tasks, const int* __restrict__ geo, const int* __restrict__ width,
    const int* __restrict__ act_off, const float* __restrict__ act, const float* __restrict__ dz,
    float* __restrict__ grads, int batch)
{
    __shared__ float staged[CONV_BUFFERED];
    const int src = tasks[3 * blockIdx.x], s = tasks[3 * blockIdx.x + 1], woff = tasks[3 * blockIdx.x + 2];
    const int C = G(s, GEO_C), H = G(s, GEO_H), W = G(s, GEO_W), K = G(s, GEO_K), S = G(s, GEO_STRIDE), P = K / 2;
    const int Cs = G(src, GEO_C), Hs = G(src, GEO_H), Ws = G(src, GEO_W);
    const int n_out = C * H * W, n_w = C * Cs * K * K, sample = n_out + Cs * (Hs + 2 * P) * (Ws + 2 * P);
    const int b0 = blockIdx.y * CONV_SAMPLES, b1 = min(batch, b0 + CONV_SAMPLES);
    const float *dz0 = dz + act_off[s], *in0 = act + act_off[src];
    if (n_w + sample <= CONV_BUFFERED && (K == 1 || K == 3 || K == 5)) {
        const int buffers = n_w + 2 * sample <= CONV_BUFFERED ? CONV_BUFFERS : 1;
        if (K == 1) weight_warps<1>(C, H, W, S, Cs, Hs, Ws, dz0, width[s], in0, width[src], b0, b1, staged, buffers, grads + woff);
        if (K == 3) weight_warps<3>(C, H, W, S, Cs, Hs, Ws, dz0, width[s], in0, width[src], b0, b1, staged, buffers, grads + woff);
        if (K == 5) weight_warps<5>(C, H, W, S, Cs, Hs, Ws, dz0, width[s], in0, width[src], b0, b1, staged, buffers, grads + woff);
        return;
    }
    for (int w = threadIdx.x; w < n_w; w += THREADS) {  // one weight element a thread, read in place
        const int kx = w % K, ky = (w / K) % K, ci = (w / (K * K)) % Cs, c = w / (Cs * K * K);
        float sum = 0.f;
        for (int b = b0; b < b1; ++b) {
            const float* dzs = dz0 + b * width[s];
            const float* in = in0 + b * width[src];
            for (int y = 0; y < H; ++y) {
                const int iy = y * S + ky - P;
                if (iy < 0 || iy >= Hs) continue;
                for (int x = 0; x < W; ++x) {
                    const int ix = x * S + kx - P;
                    if (ix >= 0 && ix < Ws) sum += dzs[(c * H + y) * W + x] * in[(ci * Hs + iy) * Ws + ix];
                }
            }
        }
        atomicAdd(grads + woff + w, sum);
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
