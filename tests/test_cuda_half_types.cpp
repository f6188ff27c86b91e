// tests/test_cuda_half_types.cpp: conversions between all five dtypes on CUDA (tensor/copy.cu)
// against the CPU (tensor/copy.cpp), bit for bit, and fill_ of the 16-bit types. Skipped
// without a CUDA device (tests/cuda_doctest_main.cpp).
//
// Method:
// - ~1e6 fresh random values per source dtype: every bit pattern equally likely for float32
//   and the 16-bit types (so NaN payloads, ±inf, subnormals and ±0 all occur), doubles across
//   and beyond the 16-bit ranges with bits below float's precision plus exact ties, integers
//   of every magnitude; a fixed list of special values first. Into int64, only finite values
//   int64 holds (other conversions are undefined in C++, and the devices differ there).
// - Layouts: contiguous, and a transposed source copied into a column slice of a larger
//   destination (both strided, odd sizes).
// - Each destination is poisoned before the kernel, twice, with two different byte patterns,
//   and must equal the CPU's result from the same poison byte for byte: an element the kernel
//   fails to write keeps the poison, which cannot equal the converted value both times, and a
//   write outside the slice changes the poison there.
#include <doctest/doctest.h>

#include <cmath>
#include <cstring>
#include <limits>
#include <random>
#include <vector>

#include "tensor/ops.h"
#include "tests/cuda_test_util.h"

using namespace simba;
using cuda_test::kGpu;

namespace {

constexpr DType kAll[] = {DType::F32, DType::F64, DType::I64, DType::BF16, DType::F16};
constexpr int64_t kRows = 1021, kCols = 979;  // 999,559 elements

// A CPU tensor of `shape` and `dt` whose bytes are `bytes` repeated.
Tensor bytes_tensor(const Shape& shape, DType dt, const std::vector<uint8_t>& bytes) {
  Tensor t = Tensor::empty(shape, dt);
  std::memcpy(t.raw_data(), bytes.data(), static_cast<size_t>(t.numel()) * dtype_size(dt));
  return t;
}

// Fresh source values of dtype `dt`, (kRows, kCols) on the CPU, specials first. `for_int64`:
// only values int64 holds (finite, below 2^62 in magnitude, so also no float16 overflow to inf):
// converting others is undefined in C++ and differs between the CPU and the GPU.
Tensor source(DType dt, bool for_int64, uint64_t seed) {
  std::mt19937_64 gen(seed);
  const int64_t n = kRows * kCols;
  if (for_int64 && dt != DType::I64) {
    // Finite values of every magnitude int64 holds, rounded once into dt on the CPU.
    std::vector<double> v(n);
    for (double& x : v) {
      const uint64_t r = gen();
      x = std::ldexp(static_cast<double>(r >> 11), -static_cast<int>(r % 120)) * (r & 1 ? -1 : 1);
      if (dt == DType::F16) x = std::fmod(x, 65504.0);  // float16 overflows to inf above 65504
    }
    return Tensor::from_vector({kRows, kCols}, v, DType::F64).to(dt);
  }
  std::vector<uint8_t> bytes(static_cast<size_t>(n) * dtype_size(dt));
  auto put = [&](int64_t i, const void* p) { std::memcpy(bytes.data() + i * dtype_size(dt), p, dtype_size(dt)); };
  for (int64_t i = 0; i < n; ++i) {
    const uint64_t r = gen();
    if (dt == DType::F64) {
      // Doubles around the 16-bit ranges with low bits set; every eighth one an exact tie of
      // bfloat16 or float16; every eighth one any bit pattern.
      double d = std::ldexp(1.0 + static_cast<double>(r >> 12) * 0x1p-52, static_cast<int>(r % 300) - 150);
      if ((r & 0x700) == 0x100)
        d = std::ldexp(static_cast<double>(0x100 | ((r >> 20) & 0xFF) | 1), static_cast<int>(r % 300) - 158);
      if ((r & 0x700) == 0x200)
        d = std::ldexp(static_cast<double>(0x800 | ((r >> 20) & 0x7FF) | 1), static_cast<int>(r % 60) - 40);
      if ((r & 0x700) == 0x300) std::memcpy(&d, &r, 8);
      if (r & 0x800) d = -d;
      put(i, &d);
    } else if (dt == DType::I64) {
      const int64_t v = static_cast<int64_t>(r) >> (gen() % 64);
      put(i, &v);
    } else {
      put(i, &r);  // the low 4 or 2 bytes: every pattern equally likely
    }
  }
  Tensor t = bytes_tensor({kRows, kCols}, dt, bytes);
  if (dt != DType::I64) {
    const std::vector<double> specials = {0.0, -0.0, HUGE_VAL, -HUGE_VAL, std::nan(""), -std::nan(""),
                                          65504.0, 65520.0, -65519.0, std::ldexp(1.0, -24), std::ldexp(1.0, -25),
                                          std::ldexp(1.0, -133), std::ldexp(1.0, -134), 0x1.fep127, 0x1.ffp127,
                                          1.0 + std::ldexp(1.0, -8), 1.0 + std::ldexp(1.0, -11),
                                          1.0 + std::ldexp(1.0, -11) + std::ldexp(1.0, -40), 1e300, 1e-300};
    t.view({-1}).narrow(0, 0, static_cast<int64_t>(specials.size()))
        .copy_(Tensor::from_vector({static_cast<int64_t>(specials.size())}, specials, DType::F64));
  }
  return t;
}

// dst (poisoned with `poison` bytes) <- src through the given layout, on `device`; returned on
// the CPU.
Tensor convert_on(Device device, const Tensor& src_cpu, DType dst, bool strided, uint8_t poison) {
  const Shape dst_shape = strided ? Shape{kCols, kRows + 6} : Shape{kRows, kCols};
  const std::vector<uint8_t> bytes(static_cast<size_t>(shape_numel(dst_shape)) * dtype_size(dst), poison);
  Tensor out = bytes_tensor(dst_shape, dst, bytes).to(device);
  const Tensor src = src_cpu.to(device);
  if (strided)
    out.narrow(1, 3, kRows).copy_(src.transpose(0, 1));  // (kCols, kRows) of row stride kRows + 6
  else
    out.copy_(src);
  return out.to(cpu());
}

// Byte-equal element by element, except that two NaNs match whatever their payloads: the GPU's
// own float <-> double conversions return the canonical NaN (payload not kept), the CPU's keep
// the top payload bits; no code reads a NaN's payload. Reports the first mismatch.
bool same_bytes(const Tensor& a, const Tensor& b) {
  if (a.dtype() != b.dtype() || a.shape() != b.shape()) return false;
  const size_t size = dtype_size(a.dtype());
  const auto* pa = static_cast<const uint8_t*>(a.raw_data());
  const auto* pb = static_cast<const uint8_t*>(b.raw_data());
  const std::vector<double> va = is_floating(a.dtype()) ? a.to_vector() : std::vector<double>();
  const std::vector<double> vb = is_floating(b.dtype()) ? b.to_vector() : std::vector<double>();
  for (int64_t i = 0; i < a.numel(); ++i) {
    if (std::memcmp(pa + i * size, pb + i * size, size) == 0) continue;
    if (!va.empty() && std::isnan(va[i]) && std::isnan(vb[i])) continue;
    MESSAGE("first mismatch at element " << i << ": " << (va.empty() ? 0.0 : va[i]) << " vs "
                                         << (vb.empty() ? 0.0 : vb[i]));
    return false;
  }
  return true;
}

}  // namespace

TEST_CASE("CUDA conversions between all five dtypes equal the CPU's bit for bit") {
  uint64_t seed = 100;
  for (const DType from : kAll) {
    for (const DType to : kAll) {
      const Tensor src = source(from, to == DType::I64, ++seed);
      for (const bool strided : {false, true}) {
        INFO(std::string(dtype_name(from)) << " -> " << dtype_name(to)
                                            << (strided ? ", transposed into a slice" : ", contiguous"));
        for (const uint8_t poison : {uint8_t(0xA5), uint8_t(0x5A)})
          CHECK(same_bytes(convert_on(kGpu, src, to, strided, poison), convert_on(cpu(), src, to, strided, poison)));
      }
    }
  }
}

TEST_CASE("CUDA Tensor::to(dtype) of 16-bit tensors equals the CPU's, both ways") {
  const Tensor x = source(DType::F32, false, 7);
  for (const DType half : {DType::BF16, DType::F16}) {
    INFO(std::string(dtype_name(half)));
    const Tensor want = x.to(half);
    const Tensor got = x.to(kGpu).to(half);
    CHECK(got.device() == kGpu);
    CHECK(same_bytes(got.to(cpu()), want));
    CHECK(same_bytes(got.to(DType::F32).to(cpu()), want.to(DType::F32)));
    CHECK(same_bytes(got.to(DType::F64).to(cpu()), want.to(DType::F64)));
  }
}

TEST_CASE("CUDA fill_ of 16-bit tensors equals the CPU's") {
  const std::vector<double> values = {1.0 / 3.0, -2.5, 65520.0, 65519.0, std::ldexp(1.0, -25), std::ldexp(3.0, -25),
                                      std::ldexp(1.0, -134), 0x1.ffp127, -0.0, HUGE_VAL, std::nan(""),
                                      1.0 + std::ldexp(1.0, -11) + std::ldexp(1.0, -40), 1e300, 1e-300};
  for (const DType half : {DType::BF16, DType::F16}) {
    for (const double v : values) {
      INFO(std::string(dtype_name(half)) << " fill " << v);
      const std::vector<uint8_t> poison(static_cast<size_t>(37 * 41) * 2, 0xA5);
      Tensor got = bytes_tensor({37, 41}, half, poison).to(kGpu);
      Tensor want = bytes_tensor({37, 41}, half, poison);
      got.narrow(1, 2, 30).fill_(v);
      want.narrow(1, 2, 30).fill_(v);
      CHECK(same_bytes(got.to(cpu()), want));
    }
  }
}
