// products.cuh: the dense tiles' matrix products (forward.cu, backward.cu, wide.cu) in the precision
// the file is built for: PRECISION, one of constants.cuh's PRECISION_* (genlab/precision.py says what
// each means; genlab's loader defines it for a build other than fp32).
//   fp32    float32 multiply-adds, each thread owning 2 x 2 outputs of a TILE x TILE tile
//   tf32    mma.sync m16n8k8 on operands rounded to TF32 (cvt.rna: nearest, ties away from zero)
//   3xtf32  the same with each operand x split into big = tf32(x) and small = tf32(x - big): three
//           products, small x big and big x small first, then big x big, into a fresh fragment that
//           is then added to the running sum in float32 (round to nearest): the tensor cores'
//           accumulator truncates, and a long sum kept in it drifts (4096 terms: 2.9e-5 relative,
//           against float32's 1.3e-6; benchmarks/NOTES.md), so it only ever holds one k-step
//           (float32's accuracy)
//   bf16    mma.sync m16n8k16 on operands rounded to bfloat16 (cvt.rn: nearest, ties to even)
// Every product sums in float32. With tensor cores, warp w of a block owns 16 x 8 fragments: in a
// TILE x TILE tile the fragment at rows (w / 4) * 16, columns (w % 4) * 8; a lane (group g = lane / 4,
// t = lane % 4) holds rows g and g + 8, columns 2t and 2t + 1 of it (PTX ISA, "Matrix fragments for
// mma.m16n8k8"), so a thread's outputs sit elsewhere than with fp32: acc_row and acc_col say where.
#pragma once
#include "genlab.cuh"

#ifndef PRECISION
#define PRECISION PRECISION_FP32
#endif
#define TENSOR_CORES (PRECISION != PRECISION_FP32)
#if PRECISION == PRECISION_BF16
#define KSTEP 16  // k of one mma
#else
#define KSTEP 8
#endif
// padding of a staged TILE x TILE operand's rows: 33 floats keep fp32's column reads apart; 36 keep a
// fragment's 8 rows x 4 columns on 32 banks
#define TPAD (TENSOR_CORES ? 4 : 1)

static_assert(THREADS / 32 == (TILE / 16) * (TILE / 8), "a TILE x TILE tile is one 16 x 8 fragment per warp");
static_assert(TILE % 16 == 0, "a tile's k is whole mma steps");

__device__ __forceinline__ unsigned to_tf32(float x)
{
    unsigned r;
    asm("cvt.rna.tf32.f32 %0, %1;" : "=r"(r) : "f"(x));
    return r;
}

// two floats as bfloat16s in one register: lo in the low half (the lower k)
__device__ __forceinline__ unsigned to_bf16x2(float lo, float hi)
{
    unsigned r;
    asm("cvt.rn.bf16x2.f32 %0, %1, %2;" : "=r"(r) : "f"(hi), "f"(lo));
    return r;
}

__device__ __forceinline__ void mma_tf32(float* c, const unsigned* a, const unsigned* b)
{
    asm volatile("mma.sync.aligned.m16n8k8.row.col.f32.tf32.tf32.f32 {%0,%1,%2,%3}, {%4,%5,%6,%7}, {%8,%9}, "
                 "{%0,%1,%2,%3};"
                 : "+f"(c[0]), "+f"(c[1]), "+f"(c[2]), "+f"(c[3])
                 : "r"(a[0]), "r"(a[1]), "r"(a[2]), "r"(a[3]), "r"(b[0]), "r"(b[1]));
}

// c = A B (a fresh fragment: the accumulator starts at zero)
__device__ __forceinline__ void mma_tf32_fresh(float* c, const unsigned* a, const unsigned* b)
{
    asm volatile("mma.sync.aligned.m16n8k8.row.col.f32.tf32.tf32.f32 {%0,%1,%2,%3}, {%4,%5,%6,%7}, {%8,%9}, "
                 "{%10,%10,%10,%10};"
                 : "=f"(c[0]), "=f"(c[1]), "=f"(c[2]), "=f"(c[3])
                 : "r"(a[0]), "r"(a[1]), "r"(a[2]), "r"(a[3]), "r"(b[0]), "r"(b[1]), "f"(0.f));
}

__device__ __forceinline__ void mma_bf16(float* c, const unsigned* a, const unsigned* b)
{
    asm volatile("mma.sync.aligned.m16n8k16.row.col.f32.bf16.bf16.f32 {%0,%1,%2,%3}, {%4,%5,%6,%7}, {%8,%9}, "
                 "{%0,%1,%2,%3};"
                 : "+f"(c[0]), "+f"(c[1]), "+f"(c[2]), "+f"(c[3])
                 : "r"(a[0]), "r"(a[1]), "r"(a[2]), "r"(a[3]), "r"(b[0]), "r"(b[1]));
}

// One k-step (KSTEP values of k from k0) of a warp's MI x NI fragments: c (fragment (mi, ni) at
// c[4 (mi NI + ni)]) += A[r0 + 16 mi.., k] B[n0 + 8 ni.., k]^T, A(row, k) and B(column, k) reading
// shared memory.
template <int MI, int NI, class FA, class FB>
__device__ __forceinline__ void warp_product(float* c, FA A, FB B, int r0, int n0, int k0)
{
    const int lane = threadIdx.x & 31, g = lane >> 2, t = lane & 3;
#if PRECISION == PRECISION_BF16
    unsigned a[MI][4], b[NI][2];
#pragma unroll
    for (int mi = 0; mi < MI; ++mi) {
        const int r = r0 + 16 * mi + g, k = k0 + 2 * t;
        a[mi][0] = to_bf16x2(A(r, k), A(r, k + 1));
        a[mi][1] = to_bf16x2(A(r + 8, k), A(r + 8, k + 1));
        a[mi][2] = to_bf16x2(A(r, k + 8), A(r, k + 9));
        a[mi][3] = to_bf16x2(A(r + 8, k + 8), A(r + 8, k + 9));
    }
#pragma unroll
    for (int ni = 0; ni < NI; ++ni) {
        const int n = n0 + 8 * ni + g, k = k0 + 2 * t;
        b[ni][0] = to_bf16x2(B(n, k), B(n, k + 1));
        b[ni][1] = to_bf16x2(B(n, k + 8), B(n, k + 9));
    }
#pragma unroll
    for (int mi = 0; mi < MI; ++mi)
#pragma unroll
        for (int ni = 0; ni < NI; ++ni) mma_bf16(c + 4 * (mi * NI + ni), a[mi], b[ni]);
#else
    unsigned a[MI][4], b[NI][2];
#if PRECISION == PRECISION_TF32X3
    unsigned as[MI][4], bs[NI][2];  // the small parts
#endif
#pragma unroll
    for (int mi = 0; mi < MI; ++mi) {
        const int r = r0 + 16 * mi + g, k = k0 + t;
        const float x[4] = {A(r, k), A(r + 8, k), A(r, k + 4), A(r + 8, k + 4)};
#pragma unroll
        for (int i = 0; i < 4; ++i) {
            a[mi][i] = to_tf32(x[i]);
#if PRECISION == PRECISION_TF32X3
            as[mi][i] = to_tf32(x[i] - __uint_as_float(a[mi][i]));
#endif
        }
    }
#pragma unroll
    for (int ni = 0; ni < NI; ++ni) {
        const int n = n0 + 8 * ni + g, k = k0 + t;
        const float x[2] = {B(n, k), B(n, k + 4)};
#pragma unroll
        for (int i = 0; i < 2; ++i) {
            b[ni][i] = to_tf32(x[i]);
#if PRECISION == PRECISION_TF32X3
            bs[ni][i] = to_tf32(x[i] - __uint_as_float(b[ni][i]));
#endif
        }
    }
#pragma unroll
    for (int mi = 0; mi < MI; ++mi)
#pragma unroll
        for (int ni = 0; ni < NI; ++ni) {
            float* f = c + 4 * (mi * NI + ni);
#if PRECISION == PRECISION_TF32X3
            float step[4];
            mma_tf32_fresh(step, as[mi], b[ni]);
            mma_tf32(step, a[mi], bs[ni]);
            mma_tf32(step, a[mi], b[ni]);
#pragma unroll
            for (int e = 0; e < 4; ++e) f[e] += step[e];
#else
            mma_tf32(f, a[mi], b[ni]);
#endif
        }
#endif
}

// The row (of A) and column (of B) in a TILE x TILE tile of a thread's output acc[a][c].
__device__ __forceinline__ int acc_row(int a)
{
#if TENSOR_CORES
    return (threadIdx.x >> 7) * 16 + ((threadIdx.x & 31) >> 2) + 8 * a;
#else
    return threadIdx.x / HALF + a * HALF;
#endif
}

__device__ __forceinline__ int acc_col(int c)
{
#if TENSOR_CORES
    return ((threadIdx.x >> 5) & 3) * 8 + 2 * (threadIdx.x & 3) + c;
#else
    return threadIdx.x % HALF + c * HALF;
#endif
}

// acc += A B^T over the TILE values of k of one staged chunk of a TILE x TILE tile; A(row, k) and
// B(column, k) read the staged operands.
template <class FA, class FB>
__device__ __forceinline__ void tile_product(float acc[2][2], FA A, FB B)
{
#if TENSOR_CORES
    const int w = threadIdx.x >> 5;
#pragma unroll
    for (int k0 = 0; k0 < TILE; k0 += KSTEP) warp_product<1, 1>(&acc[0][0], A, B, (w >> 2) * 16, (w & 3) * 8, k0);
#else
    const int tx = threadIdx.x % HALF, ty = threadIdx.x / HALF;
#pragma unroll 8
    for (int k = 0; k < TILE; ++k) {
        const float a0 = A(ty, k), a1 = A(ty + HALF, k);
        const float b0 = B(tx, k), b1 = B(tx + HALF, k);
        acc[0][0] += a0 * b0; acc[0][1] += a0 * b1;
        acc[1][0] += a1 * b0; acc[1][1] += a1 * b1;
    }
#endif
}
