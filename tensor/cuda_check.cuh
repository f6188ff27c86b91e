// tensor/cuda_check.cuh: what the .cu files of every layer share (never included by C++
// headers): the checked CUDA call, the stream each device's work is ordered on, the
// device-pointer check of kernel arguments, and the 16-byte unit of value-moving kernels.
// Implemented in tensor/cuda_device.cu.
#pragma once

#include <cuda_runtime.h>

#include <cstdint>

#include "tensor/error.h"

// Throws simba::Error naming the failed CUDA call and the runtime's error name and text.
#define SIMBA_CUDA_CHECK(call)                                                               \
  do {                                                                                       \
    const cudaError_t simba_cuda_err_ = (call);                                              \
    SIMBA_CHECK(simba_cuda_err_ == cudaSuccess, #call " failed: "                            \
                                                    << cudaGetErrorName(simba_cuda_err_)     \
                                                    << " (" << cudaGetErrorString(simba_cuda_err_) \
                                                    << ")");                                 \
  } while (0)

namespace simba {

// The device the calling host thread works on (cudaGetDevice).
int cuda_current_device();

// The stream all of simba's work on `device` is ordered on, created on first use (a
// non-blocking stream, so it can later be captured into a CUDA graph). Kernels, copies,
// allocations and frees on one stream run in issue order, which is what makes it safe for
// the caching allocator to hand a freed block to the next allocation at once.
cudaStream_t cuda_stream(int device);

// 16 bytes of any element type, moved as one: kernels that only move values run on these when
// every row they move is whole 16-byte pieces at 16-byte-aligned addresses, so a thread moves
// 16 bytes (a warp 512 contiguous bytes) instead of one element.
struct alignas(16) Bytes16 {
  uint32_t w[4];
};

// V consecutive elements of T at an address aligned to their size, loaded or stored as one
// access (a vector load of up to 16 bytes; two for 32): for kernels whose threads own a few
// consecutive elements of a row (a conv window, a channel's states, a run of a row's columns).
template <class T, int V>
struct alignas(sizeof(T) * V) Pack {
  T v[V];
};

// Blocks for a grid-stride loop over n items with `threads` threads per block: enough blocks
// to fill the GPU many times over, capped so the grid size stays a valid launch.
inline unsigned cuda_grid_size(int64_t n, int threads) {
  const int64_t blocks = (n + threads - 1) / threads;
  return static_cast<unsigned>(blocks < 1 ? 1 : (blocks > 65536 ? 65536 : blocks));
}

// A kernel that finds a bad argument in device memory (an index out of range) cannot throw,
// and reading every index back on the host would cost a round trip per op. It records the
// first such finding here instead: mapped pinned host memory, one record per device, written
// by the kernel and read by the host at the next synchronisation point (a device-to-host copy
// or cuda_synchronize), which then throws the error. `op` is the address of the op's name, a
// string literal, so the host can print it.
struct CudaErrorRecord {
  unsigned long long op;  // const char* of the op's name; 0 while no error was found
  long long index;        // the offending value
  long long low, bound;   // the valid range is [low, bound)
};
CudaErrorRecord* cuda_error_record(int device);  // the pointer kernels write through

__device__ inline void cuda_report_index_error(CudaErrorRecord* r, const char* op, long long index,
                                               long long bound, long long low = 0) {
  if (atomicCAS(&r->op, 0ull, reinterpret_cast<unsigned long long>(op)) == 0ull) {
    r->index = index;
    r->low = low;
    r->bound = bound;
    __threadfence_system();
  }
}

// Throws a clear error when p (a kernel argument called `name` of operation `op`) is not
// device memory, e.g. a host pointer passed by mistake; nullptr passes.
void cuda_check_device_pointer(const void* p, const char* op, const char* name);

}  // namespace simba
