// A small SIMT emulator: runs CUDA kernels written for nvcc on CPU threads, so that machines
// without a GPU (CI) still execute the CUDA codec's kernels and compare their words with the CPU
// codec. One OS thread per CUDA thread of a block; blocks of a launch run one after another (so
// __shared__ can be a function-static variable); a launch may run fewer blocks than asked, which
// kernels with grid-stride loops (all of qcomm's) must tolerate, and this tests that they do.
//
// Provides what qcomm's kernels use: threadIdx/blockIdx/blockDim/gridDim (.x), __shared__,
// __syncthreads, __shfl_down_sync, __any_sync (whole warps, converged), atomicOr on int,
// __int_as_float and the math functions. It proves the indexing, the synchronisation and the
// arithmetic order; it says nothing about speed, memory coalescing or the real compiler.
#pragma once

#if defined(__CUDACC__)
#error "simt_emulator.h is for host compilers; nvcc builds the kernels for real"
#endif

// The CUDA runtime header first: for host compilers it defines __host__, __device__, __global__ and
// __shared__ as nothing; they are redefined below.
#include <cuda_runtime_api.h>

#include <algorithm>
#include <atomic>
#include <barrier>
#include <bit>
#include <cmath>
#include <cstdint>
#include <cstring>
#include <memory>
#include <thread>
#include <vector>

#undef __global__
#undef __device__
#undef __host__
#undef __shared__
#define __global__
#define __device__
#define __host__
#define __shared__ static

namespace simt {

struct Dim {
  unsigned x = 0;
};

struct Warp {
  explicit Warp(int lanes) : barrier(lanes) {}
  std::barrier<> barrier;
  uint64_t slots[32] = {};
};

struct Block {
  explicit Block(int threads) : barrier(threads) {
    for (int w = 0; w < threads / 32; ++w) warps.push_back(std::make_unique<Warp>(32));
  }
  std::barrier<> barrier;
  std::vector<std::unique_ptr<Warp>> warps;
};

struct ThreadContext {
  Dim threadIdx, blockIdx, blockDim, gridDim;
  Block* block = nullptr;
};

inline ThreadContext& context() {
  thread_local ThreadContext ctx;
  return ctx;
}

// Runs kernel(args...) on min(blocks, maxBlocks) blocks of `threads` threads (a multiple of 32).
template <typename... Params, typename... Args>
void launch(int64_t blocks, int64_t maxBlocks, int threads, void (*kernel)(Params...),
            Args&&... args) {
  const unsigned grid = static_cast<unsigned>(std::min(blocks, maxBlocks));
  Block block(threads);
  std::vector<std::thread> workers;
  workers.reserve(threads);
  for (int t = 0; t < threads; ++t) {
    workers.emplace_back([&, t] {
      ThreadContext& ctx = context();
      ctx.threadIdx.x = static_cast<unsigned>(t);
      ctx.blockDim.x = static_cast<unsigned>(threads);
      ctx.gridDim.x = grid;
      ctx.block = &block;
      for (unsigned b = 0; b < grid; ++b) {
        ctx.blockIdx.x = b;
        kernel(static_cast<Params>(args)...);
        block.barrier.arrive_and_wait();  // the block's shared memory is reused by the next one
      }
    });
  }
  for (std::thread& w : workers) w.join();
}

template <typename T>
T shuffleDown(T value, int delta) {
  static_assert(sizeof(T) <= 8);
  ThreadContext& ctx = context();
  const int lane = static_cast<int>(ctx.threadIdx.x % 32);
  Warp& warp = *ctx.block->warps[ctx.threadIdx.x / 32];
  std::memcpy(&warp.slots[lane], &value, sizeof(T));
  warp.barrier.arrive_and_wait();
  T result = value;
  if (lane + delta < 32) std::memcpy(&result, &warp.slots[lane + delta], sizeof(T));
  warp.barrier.arrive_and_wait();
  return result;
}

inline bool any(bool predicate) {
  ThreadContext& ctx = context();
  const int lane = static_cast<int>(ctx.threadIdx.x % 32);
  Warp& warp = *ctx.block->warps[ctx.threadIdx.x / 32];
  warp.slots[lane] = predicate ? 1 : 0;
  warp.barrier.arrive_and_wait();
  bool result = false;
  for (int l = 0; l < 32; ++l) result |= warp.slots[l] != 0;
  warp.barrier.arrive_and_wait();
  return result;
}

}  // namespace simt

#define threadIdx (::simt::context().threadIdx)
#define blockIdx (::simt::context().blockIdx)
#define blockDim (::simt::context().blockDim)
#define gridDim (::simt::context().gridDim)

inline void __syncthreads() { ::simt::context().block->barrier.arrive_and_wait(); }
template <typename T>
T __shfl_down_sync(unsigned, T value, int delta) {
  return ::simt::shuffleDown(value, delta);
}
inline int __any_sync(unsigned, int predicate) { return ::simt::any(predicate != 0); }
inline int atomicOr(int* address, int value) {
  return std::atomic_ref<int>(*address).fetch_or(value);
}
inline float __int_as_float(int bits) { return std::bit_cast<float>(bits); }
using std::fabs;
using std::isfinite;
using std::isnan;
using std::sqrt;
inline float fabsf(float x) { return std::fabs(x); }
