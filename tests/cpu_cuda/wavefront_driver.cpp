// wavefront_driver.cpp: runs cuda/wavefront.cu's kernels on the CPU (shim.h) for
// tests/test_wavefront_on_cpu.py. The kernel source comes first in the translation unit (the test
// pastes it, the way genlab's loader does, with the shim's substitutions). Usage:
//   wavefront_driver DIR    reads DIR/config.txt and DIR/<name>.bin, writes DIR/out_<name>.bin
// wavefront_step's blocks are processes running at the same time (they wait for each other);
// the other kernels' blocks run one after another on one team of THREADS threads.
#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <fstream>
#include <map>
#include <signal.h>
#include <string>
#include <sys/mman.h>
#include <sys/wait.h>
#include <thread>
#include <unistd.h>
#include <vector>

static char* arena = nullptr;
static size_t arena_used = 0, arena_size = 0;

template <class T> static T* alloc(size_t n)
{
    size_t bytes = (n * sizeof(T) + 255) / 256 * 256;
    if (arena_used + bytes > arena_size) { std::fprintf(stderr, "arena full\n"); std::exit(4); }
    T* p = reinterpret_cast<T*>(arena + arena_used);
    arena_used += bytes;
    return p;
}

template <class T> static T* load(const std::string& dir, const std::string& name, size_t n)
{
    T* p = alloc<T>(n);
    std::ifstream f(dir + "/" + name + ".bin", std::ios::binary);
    if (!f) { std::fprintf(stderr, "missing %s\n", name.c_str()); std::exit(4); }
    f.read(reinterpret_cast<char*>(p), n * sizeof(T));
    return p;
}

template <class T> static void save(const std::string& dir, const std::string& name, const T* p, size_t n)
{
    std::ofstream f(dir + "/out_" + name + ".bin", std::ios::binary);
    f.write(reinterpret_cast<const char*>(p), n * sizeof(T));
}

// Blocks one after another on one team of THREADS threads.
template <class F> static void run_blocks(int grid, F kernel)
{
    blockDim.x = THREADS; blockDim.y = blockDim.z = 1;
    std::barrier<> team(THREADS);
    block_barrier = &team;
    std::vector<double> shuffles(THREADS);
    shuffle_area = shuffles.data();
    std::vector<std::thread> threads;
    for (int t = 0; t < THREADS; ++t)
        threads.emplace_back([&, t] {
            threadIdx.x = t;
            for (int b = 0; b < grid; ++b) {
                if (t == 0) blockIdx.x = b;
                team.arrive_and_wait();
                kernel();
                team.arrive_and_wait();
            }
        });
    for (auto& th : threads) th.join();
}

// Every block at once, each a process; false if they did not all finish within `seconds`.
template <class F> static bool run_resident(int grid, size_t shared_floats, int seconds, F kernel)
{
    std::vector<pid_t> pids;
    for (int b = 0; b < grid; ++b) {
        pid_t pid = fork();
        if (pid == 0) {
            blockIdx.x = b;
            blockDim.x = THREADS; blockDim.y = blockDim.z = 1;
            std::vector<float> shared(shared_floats + 1);
            dynamic_shared = shared.data();
            std::barrier<> team(THREADS);
            block_barrier = &team;
            std::vector<double> shuffles(THREADS);
            shuffle_area = shuffles.data();
            std::vector<std::thread> threads;
            for (int t = 0; t < THREADS; ++t) threads.emplace_back([&, t] { threadIdx.x = t; kernel(); });
            for (auto& th : threads) th.join();
            _exit(0);
        }
        pids.push_back(pid);
    }
    auto deadline = std::chrono::steady_clock::now() + std::chrono::seconds(seconds);
    size_t done = 0;
    bool ok = true;
    while (done < pids.size()) {
        int status = 0;
        pid_t pid = waitpid(-1, &status, WNOHANG);
        if (pid > 0) {
            ++done;
            if (!WIFEXITED(status) || WEXITSTATUS(status) != 0) ok = false;
        } else if (std::chrono::steady_clock::now() > deadline) {
            for (pid_t p : pids) kill(p, SIGKILL);
            while (waitpid(-1, nullptr, 0) > 0) {}
            return false;
        } else {
            usleep(1000);
        }
    }
    return ok;
}

int main(int argc, char** argv)
{
    if (argc != 2) { std::fprintf(stderr, "usage: wavefront_driver DIR\n"); return 4; }
    const std::string dir = argv[1];
    std::map<std::string, long> c;
    {
        std::ifstream f(dir + "/config.txt");
        std::string key;
        long value;
        while (f >> key >> value) c[key] = value;
    }
    arena_size = 1ul << 30;
    arena = static_cast<char*>(mmap(nullptr, arena_size, PROT_READ | PROT_WRITE, MAP_SHARED | MAP_ANONYMOUS, -1, 0));
    const int n_slots = c["n_slots"], steps = c["steps"], batch = c["batch"], rows = c["rows"];
    const int n_inputs = c["n_inputs"], n_cols = c["n_cols"], every_step = c["every_step"], train = c["train"];
    const int stage = c["stage"], n_params = c["n_params"], chunks = c["chunks"], n_items = c["n_items"];
    const int chunk = c["chunk"], region = c["region"], release_every = c["release_every"];  // the chunk buffers: steps an edge holds, floats
    const int n_in = c["n_in_edges"], n_out = c["n_out_edges"], n_rb = (batch + rows - 1) / rows;
    int* width = load<int>(dir, "width", n_slots);
    int* act_off = load<int>(dir, "act_off", n_slots);
    int* bias_off = load<int>(dir, "bias_off", n_slots);
    int* col_off = load<int>(dir, "col_off", n_slots);
    int* in_ptr = load<int>(dir, "in_ptr", n_slots + 1);
    int* in_src = load<int>(dir, "in_src", n_in);
    int* in_delay = load<int>(dir, "in_delay", n_in);
    int* in_woff = load<int>(dir, "in_woff", n_in);
    int* out_ptr = load<int>(dir, "out_ptr", n_slots + 1);
    int* out_dst = load<int>(dir, "out_dst", n_out);
    int* out_delay = load<int>(dir, "out_delay", n_out);
    int* out_woff = load<int>(dir, "out_woff", n_out);
    int* items = load<int>(dir, "items", 5 * (size_t)n_items);
    float* x = load<float>(dir, "x", (size_t)batch * steps * n_inputs);
    int* labels = load<int>(dir, "labels", (size_t)batch * steps);
    float* params = load<float>(dir, "params", n_params);
    const size_t cells = (size_t)n_cols * steps * batch;
    float* act = alloc<float>(cells);
    float* dz = alloc<float>(cells);
    for (size_t i = 0; i < cells; ++i) act[i] = dz[i] = NAN;  // what the kernels fail to write fails the test
    double* stats = alloc<double>(3 * n_slots);
    float* hmin = alloc<float>((size_t)n_rb * n_cols);
    float* hmax = alloc<float>((size_t)n_rb * n_cols);
    double* scalars = alloc<double>(6);
    int* flags = alloc<int>(2 * n_slots * n_rb);
    float* partials = alloc<float>((size_t)chunks * n_params);
    float* grads = alloc<float>(n_params);
    for (size_t i = 0; i < (size_t)chunks * n_params; ++i) partials[i] = NAN;
    std::memset(stats, 0, 3 * n_slots * sizeof(double));
    std::memset(scalars, 0, 6 * sizeof(double));
    std::memset(flags, 0, 2 * n_slots * n_rb * sizeof(int));

    const bool finished = run_resident(n_slots * n_rb, c["shared_floats"], c["seconds"], [&] {
        wavefront_step(width, act_off, bias_off, col_off, in_ptr, in_src, in_delay, in_woff, out_ptr, out_dst,
                       out_delay, out_woff, n_slots, steps, batch, rows, n_inputs, n_cols, every_step, train, stage,
                       chunk, region, release_every, x, labels, params, act, dz, stats, hmin, hmax, scalars, flags);
    });
    if (!finished) { std::fprintf(stderr, "wavefront_step did not finish: a deadlock or a crash\n"); return 3; }
    if (train) {
        run_blocks(n_items, [&] {
            wavefront_weight_grad(items, width, act_off, bias_off, in_src, in_delay, in_woff, n_slots, steps, batch,
                                  n_inputs, chunks, n_params, every_step, x, act, dz, partials);
        });
        run_blocks((n_params + THREADS - 1) / THREADS, [&] {
            wavefront_reduce(partials, chunks, n_params, grads, scalars);
        });
    }
    save(dir, "act", act, cells);
    save(dir, "dz", dz, cells);
    save(dir, "stats", stats, 3 * n_slots);
    save(dir, "hmin", hmin, (size_t)n_rb * n_cols);
    save(dir, "hmax", hmax, (size_t)n_rb * n_cols);
    save(dir, "scalars", scalars, 6);
    save(dir, "flags", flags, 2 * n_slots * n_rb);
    save(dir, "grads", grads, n_params);
    return 0;
}
