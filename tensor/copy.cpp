#include "tensor/copy.h"

#include "tensor/strided_loop.h"

namespace simba {
namespace {

template <class D, class S>
void copy_typed(const Tensor& dst, const Tensor& src) {
  D* pd = dst.data<D>();
  const S* ps = src.data<S>();
  for_each_strided<2>(dst.shape(), {dst.strides(), src.strides()},
                      [&](const std::array<int64_t, 2>& off, int64_t n, const std::array<int64_t, 2>& step) {
                        D* o = pd + off[0];
                        const S* i = ps + off[1];
                        if (step[0] == 1 && step[1] == 1) {
                          for (int64_t k = 0; k < n; ++k) o[k] = static_cast<D>(i[k]);
                        } else {
                          for (int64_t k = 0; k < n; ++k) o[k * step[0]] = static_cast<D>(i[k * step[1]]);
                        }
                      });
}

}  // namespace

void copy_cpu(const Tensor& dst, const Tensor& src) {
  SIMBA_DISPATCH_ALL(dst.dtype(), "copy_", [&] {
    using D = scalar_t;
    SIMBA_DISPATCH_ALL(src.dtype(), "copy_", [&] { copy_typed<D, scalar_t>(dst, src); });
  });
}

void fill_cpu(const Tensor& dst, double value) {
  SIMBA_DISPATCH_ALL(dst.dtype(), "fill_", [&] {
    scalar_t* p = dst.data<scalar_t>();
    const scalar_t v = static_cast<scalar_t>(value);
    for_each_strided<1>(dst.shape(), {dst.strides()},
                        [&](const std::array<int64_t, 1>& off, int64_t n, const std::array<int64_t, 1>& step) {
                          for (int64_t k = 0; k < n; ++k) p[off[0] + k * step[0]] = v;
                        });
  });
}

}  // namespace simba
