#include "tensor/storage.h"

#include <cstdlib>
#include <mutex>
#include <unordered_map>
#include <vector>

#include "tensor/checked_math.h"
#include "tensor/error.h"

namespace simba {

std::string Device::str() const {
  return type == DeviceType::CPU ? std::string("cpu") : "cuda:" + std::to_string(index);
}

namespace {

// 64-byte alignment: a cache line, and what AVX-512 loads like.
//
// Large blocks are cached on free and handed out again for the same size. A
// training step allocates the same activation sizes every time, and a fresh
// large block from malloc is a new mmap whose every page faults (and is
// zeroed by the kernel) on first touch: measured, that was a large share of
// a step. The cache holds at most kMaxCachedBytes; beyond that blocks go back
// to the system.
class CpuAllocator final : public Allocator {
 public:
  void* allocate(size_t nbytes, int) override {
    if (nbytes == 0) return nullptr;
    const size_t rounded = round(nbytes);
    if (rounded >= kMinCachedBlock) {
      std::lock_guard<std::mutex> lock(mutex_);
      auto it = free_.find(rounded);
      if (it != free_.end() && !it->second.empty()) {
        void* p = it->second.back();
        it->second.pop_back();
        cached_bytes_ -= rounded;
        return p;
      }
    }
    void* p = std::aligned_alloc(64, rounded);
    SIMBA_CHECK_HINT(p != nullptr, "out of host memory allocating " << nbytes << " bytes",
                     "the model (config.json) or the batch (batch size x sequence length) is too large for "
                     "this machine's " << host_memory_bytes() << " bytes of memory");
    return p;
  }

  void deallocate(void* ptr, size_t nbytes, int) override {
    const size_t rounded = round(nbytes);
    if (rounded >= kMinCachedBlock) {
      std::lock_guard<std::mutex> lock(mutex_);
      if (cached_bytes_ + rounded <= kMaxCachedBytes) {
        free_[rounded].push_back(ptr);
        cached_bytes_ += rounded;
        return;
      }
    }
    std::free(ptr);
  }

  ~CpuAllocator() override {
    for (auto& [size, blocks] : free_)
      for (void* p : blocks) std::free(p);
  }

 private:
  static size_t round(size_t n) { return (n + 63) / 64 * 64; }
  static constexpr size_t kMinCachedBlock = size_t(1) << 16;
  static constexpr size_t kMaxCachedBytes = size_t(2) << 30;

  std::mutex mutex_;
  std::unordered_map<size_t, std::vector<void*>> free_;
  size_t cached_bytes_ = 0;
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
  if (data_) allocator_for(device_.type).deallocate(data_, nbytes_, device_.index);
}

}  // namespace simba
