// tensor/cuda_check.cuh: what the .cu files of every layer share (never included by C++
// headers): the checked CUDA call, the stream each device's work is ordered on, and the
// device-pointer check of kernel arguments. Implemented in tensor/cuda_device.cu.
#pragma once

#include <cuda_runtime.h>

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

// Throws a clear error when p (a kernel argument called `name` of operation `op`) is not
// device memory, e.g. a host pointer passed by mistake; nullptr passes.
void cuda_check_device_pointer(const void* p, const char* op, const char* name);

}  // namespace simba
