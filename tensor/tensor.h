// tensor/tensor.h: the dense strided tensor.
//
// A Tensor is a view: (storage, offset, shape, strides, dtype). Element
// (i0, i1, ..) lives at storage + (offset + Σ i_k·stride_k)·itemsize. Strides
// are in elements, may be 0 (expand/broadcast) and need not be decreasing
// (permute). Copying a Tensor copies the view, never the data: two Tensors can
// share one Storage, and a write through one is seen through the other.
//
// View operations (reshape of a contiguous tensor, view, permute, transpose,
// narrow, select, expand, unsqueeze, squeeze) make no copy. contiguous(),
// clone() and to() do. Arithmetic lives in the op headers (tensor/ops.h); this
// class has no notion of gradients: that is the autograd layer's job.
#pragma once

#include <cstdint>
#include <initializer_list>
#include <memory>
#include <string>
#include <vector>

#include "tensor/dtype.h"
#include "tensor/error.h"
#include "tensor/storage.h"

namespace simba {

using Shape = std::vector<int64_t>;

std::string shape_str(const Shape& s);  // "(2, 3, 4)"
int64_t shape_numel(const Shape& s);
Shape contiguous_strides(const Shape& s);

class Tensor {
 public:
  Tensor() = default;  // undefined: defined() is false

  // Factories. Memory from empty() is uninitialised.
  static Tensor empty(const Shape& shape, DType dtype = DType::F32, Device device = cpu());
  static Tensor zeros(const Shape& shape, DType dtype = DType::F32, Device device = cpu());
  static Tensor ones(const Shape& shape, DType dtype = DType::F32, Device device = cpu());
  static Tensor full(const Shape& shape, double value, DType dtype = DType::F32, Device device = cpu());
  static Tensor scalar(double value, DType dtype = DType::F32, Device device = cpu());  // 0-dim
  static Tensor arange(int64_t n, DType dtype = DType::I64, Device device = cpu());  // 0, 1, .., n-1
  // Copies `values` (row-major, numel == values.size()) into a new tensor of `dtype`.
  static Tensor from_vector(const Shape& shape, const std::vector<double>& values,
                            DType dtype = DType::F32, Device device = cpu());
  static Tensor from_ints(const Shape& shape, const std::vector<int64_t>& values,
                          Device device = cpu());  // I64

  bool defined() const { return storage_ != nullptr; }
  const Shape& shape() const { return shape_; }
  const Shape& strides() const { return strides_; }
  int64_t offset() const { return offset_; }
  int dim() const { return static_cast<int>(shape_.size()); }
  int64_t size(int d) const { return shape_[wrap_dim(d)]; }
  int64_t stride(int d) const { return strides_[wrap_dim(d)]; }
  int64_t numel() const { return numel_; }
  DType dtype() const { return dtype_; }
  Device device() const { return device_; }
  bool is_contiguous() const;
  const std::shared_ptr<Storage>& storage() const { return storage_; }
  bool shares_storage(const Tensor& other) const { return storage_ && storage_ == other.storage_; }

  // Negative dims count from the end; out of range is an error naming the op.
  int wrap_dim(int d, int extra = 0) const;

  // Host pointer to element 0 of the view, for host code: checks that T matches dtype() and
  // that the tensor lives in host memory (a CUDA tensor must be moved with to(cpu()) first).
  template <class T>
  T* data() const {
    SIMBA_CHECK(device_.is_cpu(), "data<" << dtype_name(dtype_of<T>::value) << ">() of a tensor on "
                                          << device_.str()
                                          << ": host code cannot read device memory (use to(cpu()))");
    return device_data<T>();
  }
  // Pointer to element 0 in the memory of device(): what a kernel variant chosen for that
  // device takes (tensor/dispatch.h). Checks that T matches dtype().
  template <class T>
  T* device_data() const {
    SIMBA_CHECK(dtype_of<T>::value == dtype_, "data<" << dtype_name(dtype_of<T>::value)
                                                      << ">() called on a " << dtype_name(dtype_)
                                                      << " tensor");
    return static_cast<T*>(raw_data());
  }
  void* raw_data() const;

  // --- views (no copy) ---
  Tensor view(const Shape& shape) const;     // needs a contiguous tensor; one dim may be -1
  Tensor reshape(const Shape& shape) const;  // view if contiguous, else a contiguous copy
  Tensor permute(const std::vector<int>& order) const;
  Tensor transpose(int a, int b) const;
  Tensor narrow(int d, int64_t start, int64_t length) const;
  Tensor select(int d, int64_t index) const;  // removes dim d
  Tensor expand(const Shape& shape) const;    // broadcast size-1 dims (stride 0); may add leading dims
  Tensor unsqueeze(int d) const;
  Tensor squeeze(int d) const;  // dim d must have size 1
  Tensor flatten() const { return reshape({numel_}); }

  // --- copies ---
  Tensor contiguous() const;  // *this if already contiguous
  Tensor clone() const;       // always a fresh contiguous copy
  Tensor to(DType dtype) const;
  Tensor to(Device device) const;  // *this if already there; copies across devices

  // --- in place (write through the view) ---
  void copy_(const Tensor& src);  // src broadcast to this shape; dtype converted
  void fill_(double value);
  void zero_() { fill_(0.0); }

  // --- element access (for tests and small glue; a CUDA tensor is copied to the host first,
  // which waits for the device) ---
  double item() const;  // numel must be 1
  double at(const std::vector<int64_t>& index) const;
  std::vector<double> to_vector() const;  // row-major values, converted to double
  std::vector<int64_t> to_ints() const;   // I64 tensors
  std::string str(int max_elements = 20) const;

 private:
  Tensor(std::shared_ptr<Storage> storage, int64_t offset, Shape shape, Shape strides, DType dtype,
         Device device);
  Tensor with_view(int64_t offset, Shape shape, Shape strides) const;

  std::shared_ptr<Storage> storage_;
  int64_t offset_ = 0;
  Shape shape_;
  Shape strides_;
  int64_t numel_ = -1;
  DType dtype_ = DType::F32;
  Device device_;
};

// Argument checks shared by every op; the op name and both shapes go into the message.
void check_same_dtype(const char* op, const Tensor& a, const Tensor& b);
void check_same_device(const char* op, const Tensor& a, const Tensor& b);
void check_same_shape(const char* op, const Tensor& a, const Tensor& b);
// The shape two shapes broadcast to (numpy rules), or an error naming both.
Shape broadcast_shapes(const char* op, const Shape& a, const Shape& b);

}  // namespace simba
