// tensor/index.cpp: gathering and scattering rows along one dim by int64 index:
// the ops (shape checks, dispatch) and the CPU kernels (tensor/index.h lists the
// family; the CUDA kernels are tensor/index.cu).
//
// The backward kernels accumulate into rows that the index may name several
// times. They are parallelised over (outer, column chunk) and walk the index
// list in order inside each task, so no two threads touch one element and the
// sum is formed in the same order on any thread count: bit-reproducible. A bfloat16 dx
// accumulates in float32 and is rounded once (accumulate_in_float).
// Each CPU kernel checks all its indices before it writes anything.
#include "tensor/index.h"

#include <algorithm>
#include <type_traits>
#include <vector>

#include "tensor/dispatch.h"
#include "tensor/strided_loop.h"

namespace simba {

namespace {

// Columns per task of the accumulating kernels: 64 elements span whole cache
// lines, so neighbouring tasks do not write to one line.
constexpr int64_t kColumnChunk = 64;

struct IndexGeometry {
  int64_t outer = 1, inner = 1;
};

// (outer, inner) of `shape` around dim d.
IndexGeometry geometry(const Shape& shape, int d) {
  IndexGeometry g;
  for (int k = 0; k < static_cast<int>(shape.size()); ++k) {
    if (k < d) g.outer *= shape[k];
    if (k > d) g.inner *= shape[k];
  }
  return g;
}

void check_data(const char* op, const Tensor& x) {
  SIMBA_CHECK(x.defined(), op << ": undefined tensor");
  SIMBA_CHECK(x.dim() >= 1, op << ": expected a tensor with at least 1 dim, got shape " << shape_str(x.shape()));
}

void check_float(const char* op, const Tensor& x) {
  SIMBA_CHECK(is_floating(x.dtype()), op << ": expected a float32, float64 or bfloat16 tensor, got "
                                         << dtype_name(x.dtype()) << " " << shape_str(x.shape()));
}

// index must be int64 and on x's device (its values are checked by the kernels).
void check_index_tensor(const char* op, const Tensor& x, const Tensor& index) {
  SIMBA_CHECK(index.defined(), op << ": undefined index tensor");
  SIMBA_CHECK(index.dtype() == DType::I64, op << ": index must be int64, got " << dtype_name(index.dtype()) << " "
                                              << shape_str(index.shape()));
  check_same_device(op, x, index);
}

// Every one of the `count` indices must lie in [0, size).
void check_indices(const char* op, int dim, const int64_t* index, int64_t count, int64_t size) {
  for (int64_t k = 0; k < count; ++k)
    SIMBA_CHECK(index[k] >= 0 && index[k] < size,
                op << ": index " << index[k] << " out of range for dim " << dim << " of size " << size);
}

// With IndexOrder::Increasing every index must exceed the one before it (tensor/index.h).
void check_order(const char* op, int dim, const int64_t* index, int64_t count, IndexOrder order) {
  if (order != IndexOrder::Increasing) return;
  for (int64_t k = 1; k < count; ++k)
    SIMBA_CHECK(index[k] > index[k - 1], op << ": index " << index[k] << " at position " << k << " for dim " << dim
                                            << " is not above the one before it (" << index[k - 1]
                                            << "), but the indices were given as strictly increasing");
}

}  // namespace

template <class T>
void index_select_forward_cpu(const char* op, int dim, T* out, const T* x, const int64_t* index, int64_t outer,
                              int64_t S, int64_t n, int64_t inner) {
  check_indices(op, dim, index, n, S);
#pragma omp parallel for schedule(static) if (outer * n * inner > kParallelGrain)
  for (int64_t r = 0; r < outer * n; ++r) {
    const int64_t o = r / n, i = r % n;
    const T* src = x + (o * S + index[i]) * inner;
    std::copy(src, src + inner, out + r * inner);
  }
}

namespace {

// Runs a float32 accumulating kernel for a bfloat16 dx: dx and dout widened to float32 copies
// (exact), `accumulate(dx_f, dout_f)` adds in float32 in its usual order, and dx takes the sums
// rounded once. So a row named k times is rounded once, not k times, and the result equals the
// CUDA variant's, which accumulates each element in a float32 register in the same order.
template <class T, class Accumulate>
void accumulate_in_float(T* dx, int64_t dx_numel, const T* dout, int64_t dout_numel, Accumulate accumulate) {
  std::vector<float> dxf(dx, dx + dx_numel), doutf(dout, dout + dout_numel);
  accumulate(dxf.data(), static_cast<const float*>(doutf.data()));
  for (int64_t k = 0; k < dx_numel; ++k) dx[k] = T(dxf[k]);
}

// The loops of index_select_backward_cpu for a dx of its accumulation type (float, double).
template <class T>
void add_rows(const char* op, int dim, T* dx, const T* dout, const int64_t* index, int64_t outer, int64_t S,
              int64_t n, int64_t inner) {
  check_indices(op, dim, index, n, S);
  const int64_t chunks = (inner + kColumnChunk - 1) / kColumnChunk;
#pragma omp parallel for schedule(static) if (outer * n * inner > kParallelGrain)
  for (int64_t t = 0; t < outer * chunks; ++t) {
    const int64_t o = t / chunks, j0 = (t % chunks) * kColumnChunk, j1 = std::min(inner, j0 + kColumnChunk);
    for (int64_t i = 0; i < n; ++i) {
      T* dst = dx + (o * S + index[i]) * inner;
      const T* src = dout + (o * n + i) * inner;
      for (int64_t j = j0; j < j1; ++j) dst[j] += src[j];
    }
  }
}

}  // namespace

template <class T>
void index_select_backward_cpu(const char* op, int dim, T* dx, const T* dout, const int64_t* index, int64_t outer,
                               int64_t S, int64_t n, int64_t inner, IndexOrder order) {
  check_order(op, dim, index, n, order);  // before any write, as the range checks
  if constexpr (std::is_same_v<T, acc_t<T>>) {
    add_rows(op, dim, dx, dout, index, outer, S, n, inner);
  } else {
    accumulate_in_float(dx, outer * S * inner, dout, outer * n * inner, [&](float* dxf, const float* doutf) {
      add_rows(op, dim, dxf, doutf, index, outer, S, n, inner);
    });
  }
}

template <class T>
void gather_forward_cpu(const char* op, int dim, T* out, const T* x, const int64_t* index, int64_t outer,
                        int64_t S, int64_t n, int64_t inner) {
  check_indices(op, dim, index, outer * n * inner, S);
#pragma omp parallel for schedule(static) if (outer * n * inner > kParallelGrain)
  for (int64_t r = 0; r < outer * n; ++r) {
    const int64_t o = r / n;
    const T* src = x + o * S * inner;
    const int64_t* idx = index + r * inner;
    T* dst = out + r * inner;
    for (int64_t j = 0; j < inner; ++j) dst[j] = src[idx[j] * inner + j];
  }
}

namespace {

// The loops of gather_backward_cpu for a dx of its accumulation type (float, double).
template <class T>
void add_elements(const char* op, int dim, T* dx, const T* dout, const int64_t* index, int64_t outer, int64_t S,
                  int64_t n, int64_t inner) {
  check_indices(op, dim, index, outer * n * inner, S);
  const int64_t chunks = (inner + kColumnChunk - 1) / kColumnChunk;
#pragma omp parallel for schedule(static) if (outer * n * inner > kParallelGrain)
  for (int64_t t = 0; t < outer * chunks; ++t) {
    const int64_t o = t / chunks, j0 = (t % chunks) * kColumnChunk, j1 = std::min(inner, j0 + kColumnChunk);
    T* dst = dx + o * S * inner;
    for (int64_t i = 0; i < n; ++i) {
      const int64_t row = (o * n + i) * inner;
      for (int64_t j = j0; j < j1; ++j) dst[index[row + j] * inner + j] += dout[row + j];
    }
  }
}

}  // namespace

template <class T>
void gather_backward_cpu(const char* op, int dim, T* dx, const T* dout, const int64_t* index, int64_t outer,
                         int64_t S, int64_t n, int64_t inner) {
  if constexpr (std::is_same_v<T, acc_t<T>>) {
    add_elements(op, dim, dx, dout, index, outer, S, n, inner);
  } else {
    accumulate_in_float(dx, outer * S * inner, dout, outer * n * inner, [&](float* dxf, const float* doutf) {
      add_elements(op, dim, dxf, doutf, index, outer, S, n, inner);
    });
  }
}

namespace {

// index_select with the op name used in messages (embedding shares it).
Tensor select_rows(const char* op, const Tensor& x, int d, const Tensor& index) {
  check_data(op, x);
  SIMBA_CHECK(index.defined() && index.dim() == 1,
              op << ": index must be 1-D, got shape " << (index.defined() ? shape_str(index.shape()) : "undefined"));
  check_index_tensor(op, x, index);
  Shape shape = x.shape();
  shape[d] = index.size(0);
  Tensor out = Tensor::empty(shape, x.dtype(), x.device());
  const Tensor xc = x.contiguous(), ic = index.contiguous();
  const IndexGeometry g = geometry(x.shape(), d);
  SIMBA_DISPATCH_ALL(x.dtype(), op, [&] {
    SIMBA_DEVICE_CALL(x.device(), op, index_select_forward_cpu<scalar_t>, index_select_forward_cuda<scalar_t>, op,
                      d, out.device_data<scalar_t>(), xc.device_data<scalar_t>(), ic.device_data<int64_t>(),
                      g.outer, x.size(d), index.size(0), g.inner);
  });
  return out;
}

// out[.., index[i], ..] += src[.., i, ..] in place; out is fresh and
// contiguous (a copy of index_add's base, or embedding_backward's zeros), or index_add_'s base.
// The op name is used in messages.
void accumulate_rows(const char* op, Tensor& out, int d, const Tensor& index, const Tensor& src, IndexOrder order) {
  check_float(op, out);
  SIMBA_CHECK(src.defined(), op << ": undefined source tensor");
  check_same_dtype(op, out, src);
  check_same_device(op, out, src);
  SIMBA_CHECK(index.defined() && index.dim() == 1,
              op << ": index must be 1-D, got shape " << (index.defined() ? shape_str(index.shape()) : "undefined"));
  Shape expected = out.shape();
  expected[d] = index.size(0);
  SIMBA_CHECK(src.shape() == expected, op << ": source has shape " << shape_str(src.shape()) << ", expected "
                                          << shape_str(expected) << " (base " << shape_str(out.shape())
                                          << " with dim " << d << " set to the " << index.size(0) << " indices)");
  check_index_tensor(op, out, index);
  const Tensor sc = src.contiguous(), ic = index.contiguous();
  const IndexGeometry g = geometry(out.shape(), d);
  SIMBA_DISPATCH_COMPUTE_KERNEL(out.device(), out.dtype(), op, index_select_backward, op, d,
                                out.device_data<scalar_t>(), sc.device_data<scalar_t>(), ic.device_data<int64_t>(),
                                g.outer, out.size(d), index.size(0), g.inner, order);
}

// index has x's number of dims and x's sizes except in dim d.
void check_elementwise_index(const char* op, const Tensor& x, int d, const Tensor& index) {
  SIMBA_CHECK(index.defined(), op << ": undefined index tensor");
  bool match = index.dim() == x.dim();
  for (int k = 0; k < x.dim() && match; ++k) match = k == d || index.size(k) == x.size(k);
  SIMBA_CHECK(match, op << ": index of shape " << shape_str(index.shape()) << " does not fit data of shape "
                        << shape_str(x.shape()) << "; all sizes except dim " << d << " must match");
  check_index_tensor(op, x, index);
}

}  // namespace

Tensor index_select(const Tensor& x, int dim, const Tensor& index) {
  SIMBA_CHECK(x.defined(), "index_select: undefined tensor");
  return select_rows("index_select", x, x.wrap_dim(dim), index);
}

Tensor index_add(const Tensor& base, int dim, const Tensor& index, const Tensor& src) {
  check_data("index_add", base);
  const int d = base.wrap_dim(dim);
  Tensor out = base.clone();
  accumulate_rows("index_add", out, d, index, src, IndexOrder::Any);
  return out;
}

void index_add_(const Tensor& base, int dim, const Tensor& index, const Tensor& src, IndexOrder order) {
  check_data("index_add_", base);
  SIMBA_CHECK(base.is_contiguous(), "index_add_: the base " << shape_str(base.shape())
                                                            << " must be contiguous (index_add returns a new tensor)");
  Tensor out = base;
  accumulate_rows("index_add_", out, base.wrap_dim(dim), index, src, order);
}

Tensor gather(const Tensor& x, int dim, const Tensor& index) {
  check_data("gather", x);
  const int d = x.wrap_dim(dim);
  check_elementwise_index("gather", x, d, index);
  Tensor out = Tensor::empty(index.shape(), x.dtype(), x.device());
  const Tensor xc = x.contiguous(), ic = index.contiguous();
  const IndexGeometry g = geometry(index.shape(), d);
  SIMBA_DISPATCH_ALL(x.dtype(), "gather", [&] {
    SIMBA_DEVICE_CALL(x.device(), "gather", gather_forward_cpu<scalar_t>, gather_forward_cuda<scalar_t>, "gather", d,
                      out.device_data<scalar_t>(), xc.device_data<scalar_t>(), ic.device_data<int64_t>(), g.outer,
                      x.size(d), index.size(d), g.inner);
  });
  return out;
}

Tensor scatter_add(const Tensor& base, int dim, const Tensor& index, const Tensor& src) {
  check_data("scatter_add", base);
  check_float("scatter_add", base);
  const int d = base.wrap_dim(dim);
  SIMBA_CHECK(src.defined(), "scatter_add: undefined source tensor");
  check_same_dtype("scatter_add", base, src);
  check_same_device("scatter_add", base, src);
  check_elementwise_index("scatter_add", base, d, index);
  SIMBA_CHECK(src.shape() == index.shape(), "scatter_add: source has shape " << shape_str(src.shape())
                                                                             << ", index has shape "
                                                                             << shape_str(index.shape())
                                                                             << "; they must match");
  Tensor out = base.clone();
  const Tensor sc = src.contiguous(), ic = index.contiguous();
  const IndexGeometry g = geometry(index.shape(), d);
  SIMBA_DISPATCH_COMPUTE_KERNEL(out.device(), out.dtype(), "scatter_add", gather_backward, "scatter_add", d,
                                out.device_data<scalar_t>(), sc.device_data<scalar_t>(), ic.device_data<int64_t>(),
                                g.outer, base.size(d), index.size(d), g.inner);
  return out;
}

Tensor embedding(const Tensor& weight, const Tensor& ids) {
  SIMBA_CHECK(weight.defined() && weight.dim() == 2,
              "embedding: weight must be 2-D (V, D), got shape "
                  << (weight.defined() ? shape_str(weight.shape()) : "undefined"));
  check_float("embedding", weight);
  SIMBA_CHECK(ids.defined(), "embedding: undefined ids tensor");
  Shape shape = ids.shape();
  shape.push_back(weight.size(1));
  return select_rows("embedding", weight, 0, ids.reshape({ids.numel()})).view(shape);
}

Tensor embedding_backward(const Tensor& dout, const Tensor& ids, int64_t num_embeddings) {
  SIMBA_CHECK(dout.defined() && ids.defined(), "embedding_backward: undefined tensor");
  SIMBA_CHECK(num_embeddings >= 0, "embedding_backward: negative num_embeddings " << num_embeddings);
  SIMBA_CHECK(dout.dim() == ids.dim() + 1 && Shape(dout.shape().begin(), dout.shape().end() - 1) == ids.shape(),
              "embedding_backward: dout of shape " << shape_str(dout.shape()) << " does not match ids of shape "
                                                   << shape_str(ids.shape()) << " (expected ids' shape + (D,))");
  const int64_t D = dout.size(-1);
  Tensor dweight = Tensor::zeros({num_embeddings, D}, dout.dtype(), dout.device());
  accumulate_rows("embedding_backward", dweight, 0, ids.reshape({ids.numel()}), dout.reshape({ids.numel(), D}),
                  IndexOrder::Any);
  return dweight;
}

}  // namespace simba
