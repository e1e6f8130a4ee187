// launch.h: a launch of a kernel compiled against shim.h (tests/cpu_cuda/emulator.py generates a
// `launch_<kernel>` entry for each kernel of a file): its arguments from an array of pointers to
// their bytes, its blocks one after another on one team of threads, or (resident) each block in
// a process of its own, all at once.
#pragma once
#include <sys/wait.h>
#include <thread>
#include <type_traits>
#include <unistd.h>
#include <utility>
#include <vector>

template <class T> inline T launch_argument(void* p)
{
    if constexpr (std::is_pointer_v<T>) {
        uint64_t address;
        std::memcpy(&address, p, 8);
        return reinterpret_cast<T>(address);
    } else {
        T v;
        std::memcpy(&v, p, sizeof(T));
        return v;
    }
}

template <class... Args, size_t... I>
inline void call_kernel(void (*kernel)(Args...), void** args, std::index_sequence<I...>)
{
    kernel(launch_argument<std::remove_cv_t<Args>>(args[I])...);
}

template <class... Args> inline void call_kernel(void (*kernel)(Args...), void** args)
{
    call_kernel(kernel, args, std::index_sequence_for<Args...>{});
}

// Blocks [first, last) of the grid on one team of `threads` threads with `shared` bytes of
// dynamic shared memory.
template <class F> inline void run_team(int gx, int first, int last, int threads, long shared, F body)
{
    std::barrier<> team(threads);
    block_barrier = &team;
    std::vector<float> dynamic(shared / 4 + 1);
    dynamic_shared = dynamic.data();
    std::vector<double> shuffles(threads);
    shuffle_area = shuffles.data();
    const int n_warps = (threads + 31) / 32;
    std::vector<std::barrier<>*> bars;
    std::vector<Warp> warp_areas(n_warps);
    for (int w = 0; w < n_warps; ++w) {
        bars.push_back(new std::barrier<>(std::min(32, threads - 32 * w)));
        warp_areas[w].bar = bars.back();
    }
    warps = warp_areas.data();
    std::vector<std::thread> team_threads;
    for (int t = 0; t < threads; ++t)
        team_threads.emplace_back([&, t] {
            threadIdx.x = t;
            for (int b = first; b < last; ++b) {
                if (t == 0) { blockIdx.x = b % gx; blockIdx.y = b / gx; }
                team.arrive_and_wait();
                body();
                team.arrive_and_wait();
            }
        });
    for (auto& th : team_threads) th.join();
    for (auto* bar : bars) delete bar;
}

// 0 when every block finished (each exits 0), else 1.
template <class F> inline int run_grid(int gx, int gy, int threads, long shared, bool resident, F body)
{
    blockDim.x = threads; blockDim.y = blockDim.z = 1;
    gridDim.x = gx; gridDim.y = gy; gridDim.z = 1;
    const int blocks = gx * gy;
    if (!resident) {
        run_team(gx, 0, blocks, threads, shared, body);
        return 0;
    }
    std::vector<pid_t> pids;
    for (int b = 0; b < blocks; ++b) {
        pid_t pid = fork();
        if (pid == 0) {
            run_team(gx, b, b + 1, threads, shared, body);
            _exit(0);
        }
        pids.push_back(pid);
    }
    int failed = 0;
    for (pid_t pid : pids) {
        int status = 0;
        waitpid(pid, &status, 0);
        failed |= !(WIFEXITED(status) && WEXITSTATUS(status) == 0);
    }
    return failed;
}
