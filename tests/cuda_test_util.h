// tests/cuda_test_util.h: what the CUDA tests (tests/test_cuda_*.cpp) share: device buffers
// filled from host vectors, and the normwise error against a float64 reference.
#pragma once

#include <algorithm>
#include <cmath>
#include <limits>
#include <memory>
#include <vector>

#include "tensor/cuda_device.h"
#include "tensor/storage.h"

namespace simba {
namespace cuda_test {

inline const Device kGpu{DeviceType::CUDA, 0};
inline const float kNaN = std::numeric_limits<float>::quiet_NaN();

// A buffer of n elements of T on the GPU, filled from a host vector (NaN-filled for outputs:
// the poison that catches elements a kernel fails to write).
template <class T>
struct DevArray {
  std::unique_ptr<Storage> s;
  size_t n = 0;
  DevArray() = default;
  explicit DevArray(const std::vector<T>& host)
      : s(std::make_unique<Storage>(std::max<size_t>(1, host.size()) * sizeof(T), kGpu)), n(host.size()) {
    cuda_copy(s->data(), kGpu, host.data(), cpu(), n * sizeof(T));
  }
  T* p() const { return s ? static_cast<T*>(s->data()) : nullptr; }
  std::vector<T> read() const {
    std::vector<T> h(n);
    cuda_copy(h.data(), cpu(), p(), kGpu, n * sizeof(T));
    return h;
  }
};

// ||got − ref||₂ / ||ref||₂ (||got − ref||₂ when ref is 0); NaN when got holds a NaN, so a
// comparison "error <= tol" fails on any unwritten (poisoned) element.
template <class G>
double normwise_error(const std::vector<G>& got, const std::vector<double>& ref) {
  if (got.size() != ref.size()) return std::numeric_limits<double>::quiet_NaN();
  double num = 0.0, den = 0.0;
  for (size_t i = 0; i < ref.size(); ++i) {
    const double d = static_cast<double>(got[i]) - ref[i];
    num += d * d;
    den += ref[i] * ref[i];
  }
  return den > 0.0 ? std::sqrt(num / den) : std::sqrt(num);
}

}  // namespace cuda_test
}  // namespace simba
