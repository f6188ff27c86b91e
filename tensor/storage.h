// tensor/storage.h: devices, allocators and the reference-counted byte buffer
// that tensors view.
//
// The device abstraction is deliberately small: a Device names where bytes
// live, an Allocator hands out and takes back bytes on one device type, and a
// Storage owns one allocation. Tensor ops check that their operands share a
// device and dispatch on it. The CPU allocator is built in; the CUDA backend
// registers its allocator with register_allocator(DeviceType::CUDA, ...) when
// it is compiled in, so nothing above this file changes when CUDA arrives.
#pragma once

#include <cstddef>
#include <cstdint>
#include <memory>
#include <string>

namespace simba {

enum class DeviceType : uint8_t { CPU, CUDA };

struct Device {
  DeviceType type = DeviceType::CPU;
  int index = 0;
  bool operator==(const Device& o) const { return type == o.type && index == o.index; }
  bool operator!=(const Device& o) const { return !(*this == o); }
  bool is_cpu() const { return type == DeviceType::CPU; }
  std::string str() const;  // "cpu", "cuda:0"
};

inline Device cpu() { return Device{}; }

class Allocator {
 public:
  virtual ~Allocator() = default;
  virtual void* allocate(size_t nbytes, int device_index) = 0;
  virtual void deallocate(void* ptr, size_t nbytes, int device_index) = 0;
};

// The allocator for a device type; throws a clear error for a device type
// whose backend was not compiled in.
Allocator& allocator_for(DeviceType type);
void register_allocator(DeviceType type, Allocator* allocator);

// One allocation. Tensors hold it through shared_ptr, so views keep it alive.
class Storage {
 public:
  Storage(size_t nbytes, Device device);
  ~Storage();
  Storage(const Storage&) = delete;
  Storage& operator=(const Storage&) = delete;

  void* data() const { return data_; }
  size_t nbytes() const { return nbytes_; }
  Device device() const { return device_; }

 private:
  void* data_ = nullptr;
  size_t nbytes_ = 0;
  Device device_;
};

}  // namespace simba
