// A tiny SIMT emulator for host/kernels/retort.cu on the CPU: every CUDA thread of a block is a
// std::thread, and a warp's lanes meet at a barrier for each shuffle. Enough for the kernels'
// subset of CUDA (thread/block indices, __shfl_xor_sync, math functions); no shared memory.
#pragma once
#include <barrier>
#include <cmath>
#include <cstdint>
#include <functional>
#include <memory>
#include <thread>
#include <vector>

#define __global__
#define __device__
#define __forceinline__ inline

struct dim3 { unsigned x = 1, y = 1, z = 1; };
inline thread_local dim3 threadIdx, blockIdx;
inline dim3 blockDim, gridDim;

// One warp's exchange slots and barrier.
struct Warp {
    std::barrier<> sync{32};
    float slot[32];
};
inline thread_local Warp *my_warp;

inline float __shfl_xor_sync(unsigned, float v, int o) {
    int lane = threadIdx.x % 32;
    my_warp->slot[lane] = v;
    my_warp->sync.arrive_and_wait();
    float got = my_warp->slot[lane ^ o];
    my_warp->sync.arrive_and_wait();
    return got;
}

// Runs kernel(args...) over a grid of `grid` blocks of `block` threads (block a multiple of 32).
template <class F> void launch(unsigned grid, unsigned block, F kernel) {
    gridDim.x = grid;
    blockDim.x = block;
    for (unsigned b = 0; b < grid; b++) {
        std::vector<std::unique_ptr<Warp>> warps;
        for (unsigned w = 0; w < block / 32; w++) warps.push_back(std::make_unique<Warp>());
        std::vector<std::thread> ts;
        for (unsigned t = 0; t < block; t++)
            ts.emplace_back([&, b, t] {
                blockIdx.x = b;
                threadIdx.x = t;
                my_warp = warps[t / 32].get();
                kernel();
            });
        for (auto &t : ts) t.join();
    }
}
