// tensor/readback.h: a small tensor's values read back to the host later, without draining the
// device: Readback::queue(t) starts the copy (on a CUDA device, on its stream: the device goes on
// with the work queued after it), Readback::wait() returns the values once they are there. On
// the CPU the values are taken at queue(). One read in flight at a time; queue() replaces the
// last one (a CUDA queue() first waits for the previous copy to land). Behind it:
// tensor/cuda_device.h CudaReadback, which counts each queue() as one device-to-host copy.
#pragma once

#include <memory>
#include <vector>

#include "tensor/tensor.h"

namespace simba {

class CudaReadback;

class Readback {
 public:
  // Reads of up to `capacity` float64 values of tensors on `device`.
  Readback(Device device, int64_t capacity);
  ~Readback();
  Readback(Readback&&) noexcept;
  Readback& operator=(Readback&&) noexcept;

  // t: float64, contiguous, on the Readback's device, at most `capacity` elements.
  void queue(const Tensor& t);
  // The values of the last queued tensor, row-major; throws if nothing was queued.
  std::vector<double> wait();

 private:
  Device device_;
  int64_t capacity_ = 0;
  int64_t count_ = -1;                  // elements of the last queued tensor; -1: none
  std::vector<double> host_;            // the CPU's values
  std::unique_ptr<CudaReadback> cuda_;  // a CUDA device's page-locked buffer
};

}  // namespace simba
