// tensor/cuda_device.cpp: the device layer of a build without the CUDA backend: the functions
// of tensor/cuda_device.h exist and say that CUDA was not compiled in. A build with the backend
// compiles tensor/cuda_device.cu instead, and this file is empty.
#include "tensor/cuda_device.h"

#ifndef SIMBA_HAS_CUDA

#include "tensor/dispatch.h"
#include "tensor/error.h"

namespace simba {
namespace {

const char* const kNotCompiledIn = "CUDA not compiled in";

[[noreturn]] void fail_no_cuda(const char* fn) {
  SIMBA_FAIL_HINT(fn << ": " << kNotCompiledIn,
                  "rebuild simba with the CUDA toolkit installed (cmake -DSIMBA_CUDA=ON)");
}

}  // namespace

bool cuda_compiled_in() { return false; }
int cuda_device_count() { return 0; }
std::string cuda_unavailable_reason() { return kNotCompiledIn; }
void cuda_copy(void*, Device, const void*, Device, size_t) { fail_no_cuda("cuda_copy"); }
void cuda_enter(const char* op, Device d) {
  SIMBA_FAIL_HINT(op << " on " << d.str() << ": " << kNotCompiledIn,
                  "rebuild simba with the CUDA toolkit installed (cmake -DSIMBA_CUDA=ON), or use --device cpu");
}
void cuda_synchronize(int) { fail_no_cuda("cuda_synchronize"); }
CudaSyncCounts cuda_sync_counts() { return {}; }
CudaMemoryStats cuda_memory_stats(int) { fail_no_cuda("cuda_memory_stats"); }
void cuda_reset_peak_bytes(int) { fail_no_cuda("cuda_reset_peak_bytes"); }
std::string cuda_device_name(int) { fail_no_cuda("cuda_device_name"); }
void cuda_upload_staged(void*, int, const void*, size_t) { fail_no_cuda("cuda_upload_staged"); }
CudaGraph::CudaGraph(int, const std::function<void()>&) { fail_no_cuda("CudaGraph"); }
CudaGraph::~CudaGraph() = default;
void CudaGraph::replay() const { fail_no_cuda("CudaGraph::replay"); }
size_t CudaGraph::root_count() const { fail_no_cuda("CudaGraph::root_count"); }
size_t CudaGraph::leaf_count() const { fail_no_cuda("CudaGraph::leaf_count"); }
void cuda_branches(int, int, const std::function<void(int)>&) { fail_no_cuda("cuda_branches"); }
int cuda_branch() { return 0; }
void cuda_prefetch_l2(int, const std::vector<std::pair<const void*, size_t>>&) { fail_no_cuda("cuda_prefetch_l2"); }
CudaReadback::CudaReadback(int, size_t) { fail_no_cuda("CudaReadback"); }
CudaReadback::~CudaReadback() = default;
void CudaReadback::queue(const void*, size_t) { fail_no_cuda("CudaReadback::queue"); }
const void* CudaReadback::wait() { fail_no_cuda("CudaReadback::wait"); }

}  // namespace simba

#endif  // SIMBA_HAS_CUDA
