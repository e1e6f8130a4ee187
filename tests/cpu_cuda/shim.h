// shim.h: just enough of CUDA to run genlab's kernels' own source on the CPU, for tests. A CUDA
// thread is a std::thread; `__shared__` (here: static) is per block because a launch runs its
// blocks one after another on one team of threads (launch.h), or, for a persistent kernel whose
// blocks wait for each other, each block in a process of its own (fork); global memory is a shared
// memory map, so every block sees every other block's writes. __syncthreads is a barrier of the
// block's threads; a warp's collectives (__shfl_*_sync, __ballot_sync, __syncwarp) a barrier of
// its 32 threads and an exchange area, so they need every lane of the warp, as genlab calls them;
// atomics and __ldcg are std::atomic_ref operations; __threadfence a seq_cst fence. No warp runs
// in lockstep: a kernel that relies on it without __syncwarp fails here too.
#pragma once
#include <algorithm>
#include <atomic>
#include <barrier>
#include <cmath>
#include <cstddef>
#include <cstdint>
#include <cstring>
#include <sched.h>

#define __global__
#define __device__
#define __host__
#define __forceinline__ inline
#define __restrict__ __restrict
#define __launch_bounds__(...)
#define __shared__ static
#define __grid_constant__
#define __align__(n) __attribute__((aligned(n)))

using std::isfinite;
using std::max;
using std::min;

struct dim3 { unsigned x = 0, y = 0, z = 0; };
struct alignas(16) float4 { float x, y, z, w; };
struct alignas(8) float2 { float x, y; };
inline float4 make_float4(float x, float y, float z, float w) { return {x, y, z, w}; }
struct int3 { int x, y, z; };
inline int3 make_int3(int x, int y, int z) { return {x, y, z}; }
inline float2 make_float2(float x, float y) { return {x, y}; }
inline thread_local dim3 threadIdx;
inline dim3 blockIdx, blockDim, gridDim;
inline std::barrier<>* block_barrier = nullptr;
inline float* dynamic_shared = nullptr;
inline double* shuffle_area = nullptr;  // one double a thread: block_sum's host version

struct Warp {
    std::barrier<>* bar;
    uint64_t slot[32];
};
inline Warp* warps = nullptr;  // the team's warps

inline void __syncthreads() { block_barrier->arrive_and_wait(); }
inline void __syncwarp(unsigned = 0xffffffffu) { warps[threadIdx.x / 32].bar->arrive_and_wait(); }
inline void __threadfence() { std::atomic_thread_fence(std::memory_order_seq_cst); }
inline void __threadfence_block() { std::atomic_thread_fence(std::memory_order_seq_cst); }
inline void __nanosleep(unsigned) { sched_yield(); }

// lane `from(lane)`'s value of v, every lane of the warp taking part
template <class T, class From> inline T warp_exchange(T v, From from)
{
    static_assert(sizeof(T) <= 8, "a warp exchanges at most 8 bytes a lane");
    Warp& w = warps[threadIdx.x / 32];
    const int lane = threadIdx.x % 32;
    std::memcpy(&w.slot[lane], &v, sizeof(T));
    w.bar->arrive_and_wait();
    const int src = from(lane);
    T out = v;
    if (src >= 0 && src < 32) std::memcpy(&out, &w.slot[src], sizeof(T));
    w.bar->arrive_and_wait();
    return out;
}
template <class T> inline T __shfl_down_sync(unsigned, T v, unsigned d, int = 32)
{
    return warp_exchange(v, [d](int lane) { return lane + (int)d < 32 ? lane + (int)d : lane; });
}
template <class T> inline T __shfl_up_sync(unsigned, T v, unsigned d, int = 32)
{
    return warp_exchange(v, [d](int lane) { return lane - (int)d >= 0 ? lane - (int)d : lane; });
}
template <class T> inline T __shfl_xor_sync(unsigned, T v, int m, int = 32)
{
    return warp_exchange(v, [m](int lane) { return lane ^ m; });
}
template <class T> inline T __shfl_sync(unsigned, T v, int src, int = 32)
{
    return warp_exchange(v, [src](int) { return src & 31; });
}
inline unsigned __ballot_sync(unsigned, int predicate)
{
    Warp& w = warps[threadIdx.x / 32];
    const int lane = threadIdx.x % 32;
    w.slot[lane] = predicate ? 1 : 0;
    w.bar->arrive_and_wait();
    unsigned bits = 0;
    for (int i = 0; i < 32; ++i) bits |= (unsigned)w.slot[i] << i;
    w.bar->arrive_and_wait();
    return bits;
}
inline int __popc(unsigned x) { return __builtin_popcount(x); }
inline int __ffs(unsigned x) { return __builtin_ffs((int)x); }

inline float __uint_as_float(unsigned u) { float f; std::memcpy(&f, &u, 4); return f; }
inline unsigned __float_as_uint(float f) { unsigned u; std::memcpy(&u, &f, 4); return u; }
inline float __int_as_float(int u) { float f; std::memcpy(&f, &u, 4); return f; }
inline int __float_as_int(float f) { int u; std::memcpy(&u, &f, 4); return u; }
// rounded as written: the build passes -ffp-contract=off, so nothing is fused into an FMA
inline float __fadd_rn(float a, float b) { return a + b; }
inline float __fsub_rn(float a, float b) { return a - b; }
inline float __fmul_rn(float a, float b) { return a * b; }
inline float __fdiv_rn(float a, float b) { return a / b; }
inline float __fsqrt_rn(float a) { return std::sqrt(a); }
inline float rsqrtf(float a) { return 1.0f / std::sqrt(a); }
inline float __expf(float a) { return std::exp(a); }
inline float __logf(float a) { return std::log(a); }

template <class T> inline T __ldcg(const T* p)
{
    if constexpr (sizeof(T) <= 8) {
        return std::atomic_ref<T>(*const_cast<T*>(p)).load(std::memory_order_relaxed);
    } else {  // a float4: its words one by one (as a GPU's vector load, not atomic as a whole)
        T v;
        for (size_t i = 0; i < sizeof(T) / 4; ++i)
            reinterpret_cast<float*>(&v)[i] = std::atomic_ref<float>(
                const_cast<float*>(reinterpret_cast<const float*>(p))[i]).load(std::memory_order_relaxed);
        return v;
    }
}
template <class T> inline T __ldg(const T* p) { return *p; }
template <class T> inline T atomicAdd(T* p, T v)
{
    return std::atomic_ref<T>(*p).fetch_add(v, std::memory_order_relaxed);
}
template <class T> inline T atomicSub(T* p, T v)
{
    return std::atomic_ref<T>(*p).fetch_sub(v, std::memory_order_relaxed);
}
template <class T> inline T atomicExch(T* p, T v)
{
    return std::atomic_ref<T>(*p).exchange(v, std::memory_order_relaxed);
}
template <class T> inline T atomicMax(T* p, T v)
{
    std::atomic_ref<T> a(*p);
    T old = a.load(std::memory_order_relaxed);
    while (old < v && !a.compare_exchange_weak(old, v, std::memory_order_relaxed)) {}
    return old;
}
template <class T> inline T atomicMin(T* p, T v)
{
    std::atomic_ref<T> a(*p);
    T old = a.load(std::memory_order_relaxed);
    while (old > v && !a.compare_exchange_weak(old, v, std::memory_order_relaxed)) {}
    return old;
}
template <class T> inline T atomicCAS(T* p, T compare, T v)
{
    std::atomic_ref<T>(*p).compare_exchange_strong(compare, v, std::memory_order_relaxed);
    return compare;
}
#include <chrono>
inline unsigned long long host_now_ns()
{
    return std::chrono::duration_cast<std::chrono::nanoseconds>(
        std::chrono::steady_clock::now().time_since_epoch()).count();
}
inline int load_acquire_host(const int* p)
{
    return std::atomic_ref<int>(*const_cast<int*>(p)).load(std::memory_order_acquire);
}
