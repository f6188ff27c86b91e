#include "tensor/storage.h"

#include <cstdlib>

#include "tensor/error.h"

namespace simba {

std::string Device::str() const {
  return type == DeviceType::CPU ? std::string("cpu") : "cuda:" + std::to_string(index);
}

namespace {

// 64-byte alignment: a cache line, and what AVX-512 loads like.
class CpuAllocator final : public Allocator {
 public:
  void* allocate(size_t nbytes, int) override {
    if (nbytes == 0) return nullptr;
    size_t rounded = (nbytes + 63) / 64 * 64;
    void* p = std::aligned_alloc(64, rounded);
    SIMBA_CHECK_HINT(p != nullptr, "out of host memory allocating " << nbytes << " bytes",
                     "reduce the batch size or sequence length");
    return p;
  }
  void deallocate(void* ptr, int) override { std::free(ptr); }
};

CpuAllocator g_cpu_allocator;
Allocator* g_cuda_allocator = nullptr;

}  // namespace

Allocator& allocator_for(DeviceType type) {
  if (type == DeviceType::CPU) return g_cpu_allocator;
  SIMBA_CHECK_HINT(g_cuda_allocator != nullptr, "no allocator for device type cuda",
                   "this build of simba has no CUDA backend; rebuild with CUDA enabled");
  return *g_cuda_allocator;
}

void register_allocator(DeviceType type, Allocator* allocator) {
  SIMBA_CHECK(type != DeviceType::CPU, "the CPU allocator is built in and cannot be replaced");
  g_cuda_allocator = allocator;
}

Storage::Storage(size_t nbytes, Device device) : nbytes_(nbytes), device_(device) {
  data_ = allocator_for(device.type).allocate(nbytes, device.index);
}

Storage::~Storage() {
  if (data_) allocator_for(device_.type).deallocate(data_, device_.index);
}

}  // namespace simba
