// tensor/shape_ops.cpp: concatenation and splitting along one dim.
//
// cat copies each input into its slice (a narrow view) of the output, so the
// strided copy of Tensor::copy_ does the work and its parallel loop applies;
// split moves no data at all: its pieces are narrow views of the input.
#include "tensor/shape_ops.h"

namespace simba {

Tensor cat(const std::vector<Tensor>& xs, int dim) {
  SIMBA_CHECK(!xs.empty(), "cat: expected at least one tensor, got an empty list");
  const Tensor& first = xs[0];
  SIMBA_CHECK(first.defined(), "cat: input 0 is undefined");
  const int d = first.wrap_dim(dim);
  Shape shape = first.shape();
  shape[d] = 0;
  for (size_t i = 0; i < xs.size(); ++i) {
    const Tensor& x = xs[i];
    SIMBA_CHECK(x.defined(), "cat: input " << i << " is undefined");
    check_same_dtype("cat", first, x);
    check_same_device("cat", first, x);
    bool match = x.dim() == first.dim();
    for (int k = 0; k < first.dim() && match; ++k) match = k == d || x.size(k) == first.size(k);
    SIMBA_CHECK(match, "cat: input " << i << " has shape " << shape_str(x.shape()) << " but input 0 has shape "
                                     << shape_str(first.shape()) << "; all sizes except dim " << d
                                     << " must match");
    shape[d] += x.size(d);
  }
  Tensor out = Tensor::empty(shape, first.dtype(), first.device());
  int64_t start = 0;
  for (const Tensor& x : xs) {
    out.narrow(d, start, x.size(d)).copy_(x);
    start += x.size(d);
  }
  return out;
}

std::vector<Tensor> split(const Tensor& x, const std::vector<int64_t>& sizes, int dim) {
  SIMBA_CHECK(x.defined(), "split: undefined tensor");
  const int d = x.wrap_dim(dim);
  int64_t total = 0;
  for (int64_t s : sizes) {
    SIMBA_CHECK(s >= 0, "split: negative size " << s << " in sizes " << shape_str(sizes));
    total += s;
  }
  SIMBA_CHECK(total == x.size(d), "split: sizes " << shape_str(sizes) << " sum to " << total << ", but dim " << d
                                                  << " of shape " << shape_str(x.shape()) << " has size "
                                                  << x.size(d));
  std::vector<Tensor> pieces;
  pieces.reserve(sizes.size());
  int64_t start = 0;
  for (int64_t s : sizes) {
    pieces.push_back(x.narrow(d, start, s));
    start += s;
  }
  return pieces;
}

}  // namespace simba
