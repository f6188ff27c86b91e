#include "tensor/tensor.h"

#include <algorithm>
#include <cmath>
#include <cstring>
#include <sstream>

#include "tensor/checked_math.h"
#include "tensor/copy.h"
#include "tensor/cuda_device.h"
#include "tensor/dispatch.h"
#include "tensor/strided_loop.h"

namespace simba {

std::string shape_str(const Shape& s) {
  std::ostringstream o;
  o << "(";
  for (size_t i = 0; i < s.size(); ++i) o << (i ? ", " : "") << s[i];
  if (s.size() == 1) o << ",";
  o << ")";
  return o.str();
}

int64_t shape_numel(const Shape& s) {
  int64_t n = 1;
  for (int64_t d : s) n = checked_mul(n, d, [&] { return "the element count of shape " + shape_str(s); });
  return n;
}

Shape contiguous_strides(const Shape& s) {
  Shape st(s.size());
  int64_t acc = 1;
  for (int i = static_cast<int>(s.size()) - 1; i >= 0; --i) {
    st[i] = acc;
    acc = checked_mul(acc, s[i], [&] { return "the strides of shape " + shape_str(s); });
  }
  return st;
}

Tensor::Tensor(std::shared_ptr<Storage> storage, int64_t offset, Shape shape, Shape strides,
               DType dtype, Device device)
    : storage_(std::move(storage)),
      offset_(offset),
      shape_(std::move(shape)),
      strides_(std::move(strides)),
      numel_(shape_numel(shape_)),
      dtype_(dtype),
      device_(device) {}

Tensor Tensor::with_view(int64_t offset, Shape shape, Shape strides) const {
  return Tensor(storage_, offset, std::move(shape), std::move(strides), dtype_, device_);
}

Tensor Tensor::empty(const Shape& shape, DType dtype, Device device) {
  for (int64_t d : shape)
    SIMBA_CHECK(d >= 0, "cannot create a tensor of shape " << shape_str(shape) << ": negative size");
  const int64_t nbytes = checked_mul(shape_numel(shape), static_cast<int64_t>(dtype_size(dtype)), [&] {
    return std::string("the byte count of a ") + dtype_name(dtype) + " tensor of shape " + shape_str(shape);
  });
  auto storage = std::make_shared<Storage>(static_cast<size_t>(nbytes), device);
  return Tensor(std::move(storage), 0, shape, contiguous_strides(shape), dtype, device);
}

Tensor Tensor::full(const Shape& shape, double value, DType dtype, Device device) {
  Tensor t = empty(shape, dtype, device);
  t.fill_(value);
  return t;
}
Tensor Tensor::zeros(const Shape& shape, DType dtype, Device device) { return full(shape, 0.0, dtype, device); }
Tensor Tensor::ones(const Shape& shape, DType dtype, Device device) { return full(shape, 1.0, dtype, device); }
Tensor Tensor::scalar(double value, DType dtype, Device device) { return full({}, value, dtype, device); }

// arange, from_vector and from_ints fill on the host and copy: they make small tensors
// (indices, test inputs), where one transfer costs nothing.
Tensor Tensor::arange(int64_t n, DType dtype, Device device) {
  Tensor t = empty({n}, dtype);
  SIMBA_DISPATCH_ALL(dtype, "arange", [&] {
    scalar_t* p = t.data<scalar_t>();
    for (int64_t i = 0; i < n; ++i) p[i] = static_cast<scalar_t>(i);
  });
  return t.to(device);
}

Tensor Tensor::from_vector(const Shape& shape, const std::vector<double>& values, DType dtype, Device device) {
  SIMBA_CHECK(shape_numel(shape) == static_cast<int64_t>(values.size()),
              "from_vector: shape " << shape_str(shape) << " needs " << shape_numel(shape)
                                    << " values, got " << values.size());
  Tensor t = empty(shape, dtype);
  SIMBA_DISPATCH_ALL(dtype, "from_vector", [&] {
    scalar_t* p = t.data<scalar_t>();
    for (size_t i = 0; i < values.size(); ++i) p[i] = static_cast<scalar_t>(values[i]);
  });
  return t.to(device);
}

Tensor Tensor::from_ints(const Shape& shape, const std::vector<int64_t>& values, Device device) {
  SIMBA_CHECK(shape_numel(shape) == static_cast<int64_t>(values.size()),
              "from_ints: shape " << shape_str(shape) << " needs " << shape_numel(shape)
                                  << " values, got " << values.size());
  Tensor t = empty(shape, DType::I64);
  std::copy(values.begin(), values.end(), t.data<int64_t>());
  return t.to(device);
}

int Tensor::wrap_dim(int d, int extra) const {
  const int n = std::max(dim() + extra, 1);  // a 0-dim tensor accepts dim 0 and -1, like numpy
  SIMBA_CHECK(d >= -n && d < n, "dimension " << d << " out of range for a tensor of shape "
                                              << shape_str(shape_) << " (valid: " << -n << " .. " << n - 1
                                              << ")");
  return d < 0 ? d + n : d;
}

bool Tensor::is_contiguous() const {
  int64_t expected = 1;
  for (int d = dim() - 1; d >= 0; --d) {
    if (shape_[d] == 1) continue;
    if (strides_[d] != expected) return false;
    expected *= shape_[d];
  }
  return true;
}

void* Tensor::raw_data() const {
  SIMBA_CHECK(defined(), "access to the data of an undefined tensor");
  return static_cast<char*>(storage_->data()) + offset_ * static_cast<int64_t>(dtype_size(dtype_));
}

// ---------------------------------------------------------------- views

Tensor Tensor::view(const Shape& shape) const {
  SIMBA_CHECK_HINT(is_contiguous(), "view " << shape_str(shape) << " of a non-contiguous tensor of shape "
                                            << shape_str(shape_),
                   "use reshape(), which copies when it must");
  Shape s = shape;
  int infer = -1;
  int64_t known = 1;
  for (size_t i = 0; i < s.size(); ++i) {
    if (s[i] == -1) {
      SIMBA_CHECK(infer < 0, "view " << shape_str(shape) << ": only one dimension may be -1");
      infer = static_cast<int>(i);
    } else {
      SIMBA_CHECK(s[i] >= 0, "view " << shape_str(shape) << ": negative size");
      known = checked_mul(known, s[i], [&] { return "view " + shape_str(shape); });
    }
  }
  if (infer >= 0) {
    SIMBA_CHECK(known > 0 && numel_ % known == 0,
                "cannot view a tensor of shape " << shape_str(shape_) << " as " << shape_str(shape));
    s[infer] = numel_ / known;
  }
  SIMBA_CHECK(shape_numel(s) == numel_, "cannot view a tensor of shape " << shape_str(shape_) << " ("
                                                                          << numel_ << " elements) as "
                                                                          << shape_str(shape));
  return with_view(offset_, s, contiguous_strides(s));
}

Tensor Tensor::reshape(const Shape& shape) const { return contiguous().view(shape); }

Tensor Tensor::permute(const std::vector<int>& order) const {
  SIMBA_CHECK(static_cast<int>(order.size()) == dim(),
              "permute of a tensor of shape " << shape_str(shape_) << " needs " << dim() << " dims, got "
                                              << order.size());
  Shape s(dim()), st(dim());
  std::vector<bool> seen(dim(), false);
  for (int i = 0; i < dim(); ++i) {
    int d = wrap_dim(order[i]);
    SIMBA_CHECK(!seen[d], "permute: dimension " << d << " repeated");
    seen[d] = true;
    s[i] = shape_[d];
    st[i] = strides_[d];
  }
  return with_view(offset_, s, st);
}

Tensor Tensor::transpose(int a, int b) const {
  std::vector<int> order(dim());
  for (int i = 0; i < dim(); ++i) order[i] = i;
  std::swap(order[wrap_dim(a)], order[wrap_dim(b)]);
  return permute(order);
}

Tensor Tensor::narrow(int d, int64_t start, int64_t length) const {
  d = wrap_dim(d);
  SIMBA_CHECK(start >= 0 && length >= 0 && start + length <= shape_[d],
              "narrow(dim " << d << ", start " << start << ", length " << length
                            << ") out of range for shape " << shape_str(shape_));
  Shape s = shape_;
  s[d] = length;
  return with_view(offset_ + start * strides_[d], s, strides_);
}

Tensor Tensor::select(int d, int64_t index) const {
  d = wrap_dim(d);
  SIMBA_CHECK(index >= -shape_[d] && index < shape_[d],
              "select(dim " << d << ", index " << index << ") out of range for shape " << shape_str(shape_));
  if (index < 0) index += shape_[d];
  Shape s = shape_, st = strides_;
  s.erase(s.begin() + d);
  st.erase(st.begin() + d);
  return with_view(offset_ + index * strides_[d], s, st);
}

Tensor Tensor::expand(const Shape& shape) const {
  SIMBA_CHECK(shape.size() >= shape_.size(),
              "cannot expand shape " << shape_str(shape_) << " to " << shape_str(shape));
  const size_t lead = shape.size() - shape_.size();
  Shape st(shape.size(), 0);
  for (size_t i = 0; i < shape_.size(); ++i) {
    if (shape_[i] == shape[lead + i]) {
      st[lead + i] = strides_[i];
    } else {
      SIMBA_CHECK(shape_[i] == 1, "cannot expand shape " << shape_str(shape_) << " to " << shape_str(shape)
                                                         << ": dim " << i << " is " << shape_[i]
                                                         << ", not 1");
    }
  }
  return with_view(offset_, shape, st);
}

Tensor Tensor::unsqueeze(int d) const {
  d = wrap_dim(d, 1);
  Shape s = shape_, st = strides_;
  int64_t stride = d < dim() ? strides_[d] * shape_[d] : 1;
  s.insert(s.begin() + d, 1);
  st.insert(st.begin() + d, stride);
  return with_view(offset_, s, st);
}

Tensor Tensor::squeeze(int d) const {
  d = wrap_dim(d);
  SIMBA_CHECK(shape_[d] == 1, "squeeze(dim " << d << ") of shape " << shape_str(shape_) << ": size is not 1");
  Shape s = shape_, st = strides_;
  s.erase(s.begin() + d);
  st.erase(st.begin() + d);
  return with_view(offset_, s, st);
}

// ---------------------------------------------------------------- copies

void Tensor::copy_(const Tensor& src) {
  SIMBA_CHECK(defined() && src.defined(), "copy_ with an undefined tensor");
  SIMBA_CHECK(src.dim() <= dim(), "copy_: cannot copy shape " << shape_str(src.shape()) << " into "
                                                             << shape_str(shape_));
  for (int d = 0; d < src.dim(); ++d)
    SIMBA_CHECK(src.size(d) == 1 || src.size(d) == shape_[dim() - src.dim() + d],
                "copy_: cannot broadcast shape " << shape_str(src.shape()) << " to " << shape_str(shape_));
  if (numel_ == 0) return;
  if (src.device() == device_) {
    SIMBA_ON_DEVICE(device_, "copy_", copy, *this, src.expand(shape_));
    return;
  }
  // Across devices the bytes move in one transfer of a dense block: broadcast and convert on
  // the source's device first, then land in a dense block on ours and scatter it through
  // this view's strides there.
  Tensor dense = src.expand(shape_).to(dtype_).contiguous();
  Tensor landing = is_contiguous() ? *this : empty(shape_, dtype_, device_);
  cuda_copy(landing.raw_data(), device_, dense.raw_data(), dense.device(), numel_ * dtype_size(dtype_));
  if (!landing.shares_storage(*this)) copy_(landing);
}

void Tensor::fill_(double value) {
  if (numel_ > 0) SIMBA_ON_DEVICE(device_, "fill_", fill, *this, value);
}

Tensor Tensor::contiguous() const { return is_contiguous() ? *this : clone(); }

Tensor Tensor::clone() const {
  Tensor t = empty(shape_, dtype_, device_);
  t.copy_(*this);
  return t;
}

Tensor Tensor::to(DType dtype) const {
  if (dtype == dtype_) return *this;
  Tensor t = empty(shape_, dtype, device_);
  t.copy_(*this);
  return t;
}

Tensor Tensor::to(Device device) const {
  if (device == device_) return *this;
  Tensor t = empty(shape_, dtype_, device);
  t.copy_(*this);
  return t;
}

// ---------------------------------------------------------------- element access

double Tensor::item() const {
  SIMBA_CHECK(numel_ == 1, "item() needs a single element, got shape " << shape_str(shape_));
  if (!device_.is_cpu()) return to(cpu()).item();
  return SIMBA_DISPATCH_ALL(dtype_, "item", [&] { return static_cast<double>(*data<scalar_t>()); });
}

double Tensor::at(const std::vector<int64_t>& index) const {
  if (!device_.is_cpu()) return to(cpu()).at(index);
  SIMBA_CHECK(static_cast<int>(index.size()) == dim(),
              "at(): " << index.size() << " indices for shape " << shape_str(shape_));
  int64_t off = 0;
  for (int d = 0; d < dim(); ++d) {
    SIMBA_CHECK(index[d] >= 0 && index[d] < shape_[d],
                "at(): index " << index[d] << " out of range for dim " << d << " of " << shape_str(shape_));
    off += index[d] * strides_[d];
  }
  return SIMBA_DISPATCH_ALL(dtype_, "at", [&] { return static_cast<double>(data<scalar_t>()[off]); });
}

std::vector<double> Tensor::to_vector() const {
  Tensor c = to(cpu()).to(DType::F64).contiguous();
  if (numel_ == 0) return {};
  const double* p = c.data<double>();
  return std::vector<double>(p, p + numel_);
}

std::vector<int64_t> Tensor::to_ints() const {
  SIMBA_CHECK(dtype_ == DType::I64, "to_ints() on a " << dtype_name(dtype_) << " tensor");
  Tensor c = to(cpu()).contiguous();
  if (numel_ == 0) return {};
  const int64_t* p = c.data<int64_t>();
  return std::vector<int64_t>(p, p + numel_);
}

std::string Tensor::str(int max_elements) const {
  std::ostringstream o;
  o << "Tensor" << shape_str(shape_) << " " << dtype_name(dtype_) << " [";
  std::vector<double> v = to_vector();
  for (size_t i = 0; i < v.size() && static_cast<int>(i) < max_elements; ++i) o << (i ? ", " : "") << v[i];
  if (static_cast<int>(v.size()) > max_elements) o << ", ...";
  o << "]";
  return o.str();
}

// ---------------------------------------------------------------- checks

void check_same_dtype(const char* op, const Tensor& a, const Tensor& b) {
  SIMBA_CHECK(a.dtype() == b.dtype(), op << ": dtype mismatch, " << dtype_name(a.dtype()) << " "
                                         << shape_str(a.shape()) << " vs " << dtype_name(b.dtype()) << " "
                                         << shape_str(b.shape()));
}

void check_same_device(const char* op, const Tensor& a, const Tensor& b) {
  SIMBA_CHECK(a.device() == b.device(), op << ": device mismatch, " << a.device().str() << " "
                                           << shape_str(a.shape()) << " vs " << b.device().str() << " "
                                           << shape_str(b.shape()));
}

void check_same_shape(const char* op, const Tensor& a, const Tensor& b) {
  SIMBA_CHECK(a.shape() == b.shape(),
              op << ": shape mismatch, " << shape_str(a.shape()) << " vs " << shape_str(b.shape()));
}

Device op_device(const char* op, std::initializer_list<Tensor> operands) {
  const Tensor* first = nullptr;
  for (const Tensor& t : operands) {
    if (!t.defined()) continue;
    if (!first)
      first = &t;
    else
      check_same_device(op, *first, t);
  }
  SIMBA_CHECK(first != nullptr, op << ": no defined operand");
  return first->device();
}

Shape broadcast_shapes(const char* op, const Shape& a, const Shape& b) {
  const size_t n = std::max(a.size(), b.size());
  Shape out(n);
  for (size_t i = 0; i < n; ++i) {
    int64_t da = i + a.size() >= n ? a[i + a.size() - n] : 1;
    int64_t db = i + b.size() >= n ? b[i + b.size() - n] : 1;
    SIMBA_CHECK(da == db || da == 1 || db == 1, op << ": shapes " << shape_str(a) << " and " << shape_str(b)
                                                   << " cannot be broadcast together");
    out[i] = da == 1 ? db : da;
  }
  return out;
}

}  // namespace simba
