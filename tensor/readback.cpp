// tensor/readback.cpp: Readback (tensor/readback.h).
#include "tensor/readback.h"

#include <cstring>

#include "tensor/cuda_device.h"
#include "tensor/error.h"

namespace simba {

Readback::Readback(Device device, int64_t capacity) : device_(device), capacity_(capacity) {
  SIMBA_CHECK(capacity >= 1, "Readback: capacity " << capacity << ", expected >= 1");
  if (!device.is_cpu()) cuda_ = std::make_unique<CudaReadback>(device.index, size_t(capacity) * sizeof(double));
}

Readback::~Readback() = default;
Readback::Readback(Readback&&) noexcept = default;
Readback& Readback::operator=(Readback&&) noexcept = default;

void Readback::queue(const Tensor& t) {
  SIMBA_CHECK(t.dtype() == DType::F64 && t.is_contiguous() && t.device() == device_ && t.numel() <= capacity_,
              "Readback::queue: expected a contiguous float64 tensor of at most " << capacity_ << " elements on "
                                                                                  << device_.str() << ", got "
                                                                                  << dtype_name(t.dtype()) << " "
                                                                                  << shape_str(t.shape()) << " on "
                                                                                  << t.device().str());
  count_ = t.numel();
  if (cuda_)
    cuda_->queue(t.device_data<double>(), size_t(count_) * sizeof(double));
  else
    host_ = t.to_vector();
}

std::vector<double> Readback::wait() {
  SIMBA_CHECK(count_ >= 0, "Readback::wait: nothing was queued");
  if (!cuda_) return host_;
  std::vector<double> v(static_cast<size_t>(count_));
  std::memcpy(v.data(), cuda_->wait(), v.size() * sizeof(double));
  return v;
}

}  // namespace simba
