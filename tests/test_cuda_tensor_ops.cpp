// tests/test_cuda_tensor_ops.cpp: the tensor/ pointwise ops, reductions, copies and cat/split
// on CUDA against the CPU, and the autograd gradients through them, as a backend-ops table
// (tests/backend_ops.h). Skipped without a CUDA device (tests/cuda_doctest_main.cpp).
//
// Every row runs in float32, float64 and bfloat16 × the layouts contiguous, permuted, sliced and
// broadcast, over sizes 1, 7, 33, 67, 1000+ and ~1e6 elements; inputs are fresh uniform random
// values made on the CPU and moved with to(Device). Rows named "poisoned ..." call a kernel
// family directly (SIMBA_ON_DEVICE picks the _cpu or _cuda variant by the operands' device)
// with a NaN-filled output, so a cell the CUDA kernel fails to write fails the comparison.
// Contiguous operands of fresh allocations take the kernels' 16-byte packed path (sizes 7,
// 1025, ... leave a partial pack); the "unaligned" rows force the element-a-thread path.
//
// Tolerance: normwise relative error <= 1e-5 (float32), <= 1e-12 (float64), <= 1e-2 (bfloat16:
// both devices compute in float32 and round once, tests/backend_ops.h), except
//   - sums over one dim of length n = 1e6: n·u (u = 2^-24 for float32, 2^-53 for float64), the
//     worst-case error bound of the CPU's recursive summation in the input dtype (tensor/reduce.h;
//     the GPU sums in a tree, far more accurately). The broadcast layout reaches it: one value
//     added 1e6 times rounds the same way at every step (measured on an H200: 1.4e-2 in float32,
//     1.6e-11 in float64). A bfloat16 sum accumulates in float32 (tensor/reduce.h), so its
//     bound is float32's before the one rounding to bfloat16.
// Exact by construction (and so well inside the tolerance): copies, fills, cat/split, max
// values; max and argmax indices must be equal, ties included.
#include <doctest/doctest.h>

#include <algorithm>
#include <cstdlib>
#include <functional>
#include <string>
#include <vector>

#include "autograd/ops.h"
#include "tensor/cuda_device.h"
#include "tensor/dispatch.h"
#include "tensor/elementwise.h"
#include "tensor/matmul.h"
#include "tensor/random.h"
#include "tensor/readback.h"
#include "tensor/reduce.h"
#include "tensor/shape_ops.h"
#include "tests/backend_ops.h"
#include "tests/test_util.h"

using namespace simba;
using namespace simba::backend_ops;

namespace {

const Device kDev = cuda_test::kGpu;

// Operand shapes of the pointwise rows: 1, 7, 33·7, 3·5·67, 1025 and 1e6 elements.
const std::vector<Shape> kShapes = {{1}, {7}, {33, 7}, {3, 5, 67}, {1025}, {1000, 1000}};

Shape reversed(const Shape& s) { return Shape(s.rbegin(), s.rend()); }
std::vector<int> reverse_order(int nd) {
  std::vector<int> o(nd);
  for (int k = 0; k < nd; ++k) o[k] = nd - 1 - k;
  return o;
}

// (outer, n, inner) of a reduction over dim d, as tensor/reduce.cpp sees it.
struct Geometry {
  int64_t outer = 1, n = 1, inner = 1;
};
Geometry geometry(const Shape& s, int d) {
  Geometry g;
  for (int i = 0; i < static_cast<int>(s.size()); ++i) {
    if (i < d) g.outer *= s[i];
    if (i > d) g.inner *= s[i];
  }
  g.n = s[d];
  return g;
}

}  // namespace

TEST_CASE("CUDA unary ops and their backward equal the CPU") {
  for (UnaryOp op : kAllUnaryOps) {
    const auto [lo, hi] = unary_operand_range(op);
    const std::string name = unary_name(op);
    for (const Shape& s : kShapes) {
      run_case(op_case(name, {s}, [op](const Ins& x) { return Outs{unary(op, x[0])}; }, lo, hi), kDev);
      run_case(op_case(name + " backward", {s, s},
                   [op](const Ins& x) { return Outs{unary_backward(op, x[0], x[1], unary(op, x[1]))}; }, lo, hi),
               kDev);
    }
    const Shape s = {33, 7};
    run_case(op_case(name + " poisoned", {s},
                 [op](const Ins& x) {
                   Tensor out = poisoned(x[0].shape(), x[0].dtype(), x[0].device());
                   SIMBA_ON_DEVICE(x[0].device(), "unary", unary, op, out, x[0]);
                   return Outs{out};
                 },
                 lo, hi),
             kDev);
    run_case(op_case(name + " backward poisoned", {s, s},
                 [op](const Ins& x) {
                   Tensor dx = poisoned(x[0].shape(), x[0].dtype(), x[0].device());
                   const Tensor y = unary(op, x[1]);
                   SIMBA_ON_DEVICE(x[0].device(), "unary_backward", unary_backward, op, dx, x[0], x[1], y);
                   return Outs{dx};
                 },
                 lo, hi),
             kDev);
    // Dense rows that start one element into their buffers, so no pointer is 16-byte aligned:
    // the kernels take the element-a-thread path instead of the packed one. Element 0 of the
    // output buffer must stay NaN.
    run_case(op_case(name + " unaligned poisoned", {{1025}, {1025}},
                 [op](const Ins& x) {
                   const Device dev = x[0].device();
                   auto shifted = [&](const Tensor& t) {
                     Tensor buf = poisoned({t.numel() + 1}, t.dtype(), dev);
                     buf.narrow(0, 1, t.numel()).copy_(t);
                     return buf;
                   };
                   const Tensor xb = shifted(x[0]), yb = shifted(unary(op, x[1])), db = shifted(x[1]);
                   Tensor out = poisoned({1026}, x[0].dtype(), dev), dx = poisoned({1026}, x[0].dtype(), dev);
                   SIMBA_ON_DEVICE(dev, "unary", unary, op, out.narrow(0, 1, 1025), xb.narrow(0, 1, 1025));
                   SIMBA_ON_DEVICE(dev, "unary_backward", unary_backward, op, dx.narrow(0, 1, 1025),
                                   xb.narrow(0, 1, 1025), db.narrow(0, 1, 1025), yb.narrow(0, 1, 1025));
                   return Outs{out, dx};
                 },
                 lo, hi),
             kDev);
  }
}

TEST_CASE("CUDA binary ops with broadcasting equal the CPU") {
  const std::vector<std::vector<Shape>> pairs = {
      {{1}, {1}},       {{7}, {7}},           {{33, 7}, {7}},           {{33, 1}, {1, 7}},
      {{5, 1, 67}, {3, 67}}, {{1}, {1025}}, {{1000, 1000}, {1000}}, {{1000, 1000}, {1000, 1000}}};
  for (BinaryOp op : kAllBinaryOps) {
    const auto [lo, hi] = binary_operand_range(op);
    for (const auto& shapes : pairs)
      run_case(op_case(binary_name(op), shapes, [op](const Ins& x) { return Outs{binary(op, x[0], x[1])}; }, lo, hi),
               kDev);
    run_case(op_case(std::string(binary_name(op)) + " poisoned", {{33, 1}, {1, 7}},
                 [op](const Ins& x) {
                   Tensor out = poisoned({33, 7}, x[0].dtype(), x[0].device());
                   SIMBA_ON_DEVICE(x[0].device(), "binary", binary, op, out, x[0].expand({33, 7}), x[1].expand({33, 7}));
                   return Outs{out};
                 },
                 lo, hi),
             kDev);
  }
}

TEST_CASE("CUDA add_ into slices (a last dim of 1, a middle run, a broadcast row) equals the CPU") {
  struct Slice {
    int64_t start, length;
    Shape y;
  };
  for (const Slice& sl : {Slice{0, 1, {4, 50, 1}}, Slice{1, 4, {4, 50, 4}}, Slice{5, 4, {4}}}) {
    run_case(op_case("add_ into narrow(2, " + std::to_string(sl.start) + ", " + std::to_string(sl.length) + ")",
                     {{4, 50, 9}, sl.y},
                     [sl](const Ins& x) {
                       Tensor into = x[0].clone();
                       add_(into.narrow(2, sl.start, sl.length), x[1]);
                       return Outs{into};
                     }),
             kDev);
  }
}

TEST_CASE("CUDA affine, pow, clamp and clamp's backward equal the CPU") {
  for (const Shape& s : kShapes) {
    run_case(op_case("affine", {s}, [](const Ins& x) { return Outs{affine(x[0], 1.7, -0.3), x[0] * 2.0, x[0] - 1.5}; }),
             kDev);
    run_case(op_case("pow 2.5, -1.5", {s}, [](const Ins& x) { return Outs{pow(x[0], 2.5), pow(x[0], -1.5)}; }, 0.5, 2.0),
             kDev);
    run_case(op_case("pow 3", {s}, [](const Ins& x) { return Outs{pow(x[0], 3.0)}; }), kDev);
    run_case(op_case("clamp", {s}, [](const Ins& x) { return Outs{clamp(x[0], -0.5, 0.7)}; }), kDev);
    run_case(op_case("clamp_backward", {s, s}, [](const Ins& x) { return Outs{clamp_backward(x[0], x[1], -0.5, 0.7)}; }),
             kDev);
  }
  const Shape s = {3, 5, 67};
  run_case(op_case("scalar_op poisoned", {s},
               [](const Ins& x) {
                 Outs outs;
                 for (ScalarOp op : {ScalarOp::Affine, ScalarOp::Pow, ScalarOp::Clamp}) {
                   Tensor out = poisoned(x[0].shape(), x[0].dtype(), x[0].device());
                   SIMBA_ON_DEVICE(x[0].device(), "scalar_op", scalar_op, op, out, x[0], 1.25, 1.5);
                   outs.push_back(out);
                 }
                 return outs;
               },
               0.5, 2.0),
           kDev);
  run_case(op_case("clamp_backward poisoned", {s, s},
               [](const Ins& x) {
                 Tensor dx = poisoned(x[0].shape(), x[0].dtype(), x[0].device());
                 SIMBA_ON_DEVICE(x[0].device(), "clamp", clamp_backward, dx, x[0], x[1], -0.5, 0.7);
                 return Outs{dx};
               }),
           kDev);
}

TEST_CASE("CUDA reductions equal the CPU") {
  // Shapes and dims cover the CUDA geometries (tensor/reduce.cu): a thread per output (short
  // n; n = 300 over 9000 columns), a block per output (n >= 256 along the last dim, or few
  // outputs) and, for sums, column tiles (few outputs along inner >= 32: one span at 256 x 40
  // dim 0, several at 1000 x 1000 dim 0 and 2 x 600 x 45 dim 1, the last with a part tile).
  const std::vector<Shape> shapes = {{1},         {7},          {33, 7},   {3, 5, 67}, {1025},
                                     {1000, 1000}, {300, 9000}, {256, 40}, {2, 600, 45}};
  for (const Shape& s : shapes) {
    for (int d = 0; d < static_cast<int>(s.size()); ++d) {
      const std::string dim = " dim " + std::to_string(d);
      run_case(op_case("sum" + dim, {s}, [d](const Ins& x) { return Outs{sum(x[0], d), sum(x[0], d, true)}; }), kDev);
      run_case(op_case("mean" + dim, {s}, [d](const Ins& x) { return Outs{mean(x[0], d)}; }), kDev);
      run_case(op_case("max" + dim, {s},
                   [d](const Ins& x) {
                     const MaxResult r = max(x[0], d);
                     return Outs{r.values, r.indices, argmax(x[0], d, true)};
                   }),
               kDev);
      // clamp makes many exact ties at 0.5: the indices must be the CPU's (the lowest).
      run_case(op_case("max ties" + dim, {s},
                   [d](const Ins& x) {
                     const MaxResult r = max(clamp(x[0], -0.5, 0.5), d);
                     return Outs{r.values, r.indices};
                   }),
               kDev);
      const Geometry g = geometry(s, d);
      run_case(op_case("poisoned sum_dim, max_dim" + dim, {s},
                   [d, g](const Ins& x) {
                     const Tensor c = x[0].contiguous();
                     const Device dev = c.device();
                     Tensor out = poisoned({g.outer, g.inner}, c.dtype(), dev);
                     Tensor values = poisoned({g.outer, g.inner}, c.dtype(), dev);
                     Tensor indices = Tensor::full({g.outer, g.inner}, -1.0, DType::I64, dev);
                     SIMBA_ON_DEVICE(dev, "sum", sum_dim, out, c, g.outer, g.n, g.inner);
                     SIMBA_ON_DEVICE(dev, "max", max_dim, values, indices, c, g.outer, g.n, g.inner);
                     return Outs{out, values, indices};
                   }),
               kDev);
    }
    run_case(op_case("sum, mean, max of all", {s},
                 [](const Ins& x) {
                   Tensor out = poisoned({}, x[0].dtype(), x[0].device());
                   SIMBA_ON_DEVICE(x[0].device(), "sum", sum_all, out, x[0].contiguous());
                   return Outs{sum(x[0]), mean(x[0]), max(x[0]), out};
                 }),
             kDev);
  }
  // One reduction of 1e6 elements along one dim (the block geometry with a single output) and
  // over all of them; positive inputs keep the float32 sum well conditioned.
  OpCase big = op_case("sum, max of 1e6", {{1000000}},
                   [](const Ins& x) {
                     const MaxResult r = max(x[0], 0);
                     return Outs{sum(x[0], 0), sum(x[0]), r.values, r.indices};
                   },
                   0.5, 1.5);
  big.f32_tol = 1e6 * 0x1p-24;  // n·u, the CPU's recursive summation bound: see the file comment
  big.f64_tol = 1e6 * 0x1p-53;
  big.bf16_tol = big.f32_tol;  // float32 accumulation: the same bound
  run_case(big, kDev);
  run_case(op_case("sum_to", {{5, 3, 67}}, [](const Ins& x) { return Outs{sum_to(x[0], {3, 1}), sum_to(x[0], {67})}; }),
           kDev);
  run_case(op_case("sum_to", {{1000, 1000}}, [](const Ins& x) { return Outs{sum_to(x[0], {1000})}; }), kDev);
}

TEST_CASE("CUDA copy_, contiguous, fill_ and to() equal the CPU") {
  for (const Shape& s : kShapes) {
    run_case(op_case("contiguous, clone, to(dtype)", {s},
                 [](const Ins& x) { return Outs{x[0].contiguous(), x[0].clone(), x[0].to(DType::F32), x[0].to(DType::F64)}; }),
             kDev);
    // Into the interior of a NaN-filled buffer: the border must stay NaN on both devices.
    run_case(op_case("copy_ into a slice, fill_", {s},
                 [](const Ins& x) {
                   Shape big = x[0].shape();
                   for (int64_t& n : big) n += 2;
                   Tensor dst = poisoned(big, x[0].dtype(), x[0].device());
                   Tensor filled = poisoned(big, x[0].dtype(), x[0].device());
                   Tensor dv = dst, fv = filled;
                   for (int k = 0; k < x[0].dim(); ++k) {
                     dv = dv.narrow(k, 1, x[0].size(k));
                     fv = fv.narrow(k, 1, x[0].size(k));
                   }
                   dv.copy_(x[0]);
                   fv.fill_(0.375);
                   return Outs{dst, filled};
                 }),
             kDev);
    run_case(op_case("copy_ into a permuted view, other dtype, broadcast source", {s},
                 [](const Ins& x) {
                   const Device dev = x[0].device();
                   const int nd = x[0].dim();
                   Tensor perm = poisoned(reversed(x[0].shape()), x[0].dtype(), dev);
                   perm.permute(reverse_order(nd)).copy_(x[0]);
                   const DType other = x[0].dtype() == DType::F32 ? DType::F64 : DType::F32;
                   Tensor conv = poisoned(x[0].shape(), other, dev);
                   conv.copy_(x[0]);
                   Shape rep = x[0].shape();
                   rep.insert(rep.begin(), 3);
                   Tensor bcast = poisoned(rep, x[0].dtype(), dev);
                   bcast.copy_(x[0]);
                   return Outs{perm, conv, bcast};
                 }),
             kDev);
    // A round trip through the host of a strided device view.
    run_case(op_case("to(cpu).to(device)", {s}, [](const Ins& x) { return Outs{x[0].to(cpu()).to(x[0].device())}; }),
             kDev);
  }
  // Rows of whole 16-byte pieces that no pitched copy covers (3-D strided, broadcast over rows):
  // the copy kernel moves them 16 bytes at a time.
  run_case(op_case("copy_ of rows of 16-byte pieces", {{4, 6, 16}},
               [](const Ins& x) {
                 Tensor bcast = poisoned({3, 4, 6, 16}, x[0].dtype(), x[0].device());
                 bcast.copy_(x[0]);
                 return Outs{x[0].transpose(0, 1).contiguous(), bcast};
               }),
           kDev);
}

TEST_CASE("CUDA fill_ with zero: +0 in every dtype, dense rows and slices; -0 keeps its sign") {
  for (DType dt : {DType::F32, DType::F64, DType::BF16, DType::F16, DType::I64}) {
    INFO(dtype_name(dt));
    const bool is_float = dt != DType::I64;
    // Dense (the memset path) and the interior of a poisoned buffer (the kernel path).
    Tensor dense = Tensor::full({1000, 3}, is_float ? 0.75 : 7.0, dt, kDev);
    dense.fill_(0.0);
    for (double v : dense.to_vector()) CHECK((v == 0.0 && !std::signbit(v)));
    Tensor buf = Tensor::full({6, 9}, is_float ? std::numeric_limits<double>::quiet_NaN() : 7.0, dt, kDev);
    buf.narrow(0, 1, 4).narrow(1, 2, 5).fill_(0.0);
    const std::vector<double> b = buf.to_vector();
    int64_t zeros = 0;
    for (double v : b) zeros += v == 0.0 && !std::signbit(v);
    CHECK(zeros == 20);
    if (is_float) {
      dense.fill_(-0.0);
      for (double v : dense.to_vector()) CHECK((v == 0.0 && std::signbit(v)));
    }
  }
}

TEST_CASE("CUDA to(Device) moves every layout across devices unchanged") {
  for (const Shape& s : kShapes) {
    for (DType dt : kComputeTypes) {
      for (Layout l : kAllLayouts) {
        std::mt19937_64 rng(s.size() * 131 + static_cast<int>(l));
        const Operand o = make_operand(s, l, dt, -2.0, 2.0, rng);
        const Tensor host = o.on(cpu());
        const std::string label = case_label("to(Device) " + shape_str(s), dt, l);
        check_close(label + " host to device", host.to(kDev), host, kDev, 0.0);
        check_close(label + " device to host", o.on(kDev).to(cpu()), host, cpu(), 0.0);
      }
    }
  }
}

TEST_CASE("CUDA cat and split equal the CPU") {
  const std::vector<std::pair<std::vector<Shape>, int>> cats = {
      {{{3, 5, 7}, {3, 2, 7}, {3, 1, 7}}, 1},
      {{{1000}, {25}, {1}}, 0},
      {{{33, 7}, {33, 1}}, -1},
      {{{1000, 500}, {1000, 500}}, 1}};
  for (const auto& [shapes, d] : cats)
    run_case(op_case("cat dim " + std::to_string(d), shapes, [d = d](const Ins& x) { return Outs{cat(x, d)}; }), kDev);
  run_case(op_case("split dim 1", {{33, 7}}, [](const Ins& x) { return split(x[0], {2, 3, 2}, 1); }), kDev);
  run_case(op_case("split dim 0", {{1025}}, [](const Ins& x) { return split(x[0], {1, 1000, 24}, 0); }), kDev);
  run_case(op_case("split dim 0", {{1000, 1000}}, [](const Ins& x) { return split(x[0], {500, 499, 1}, 0); }), kDev);
}

TEST_CASE("CUDA gradients of the pointwise ops, reductions and cat/split equal the CPU") {
  for (UnaryOp op : kAllUnaryOps) {
    const auto [lo, hi] = unary_operand_range(op);
    for (const Shape& s : {Shape{33, 7}, Shape{1025}})
      run_case(grad_case(unary_name(op), {s}, [op](const VarIns& x) { return unary(op, x[0]); }, lo, hi), kDev);
  }
  for (BinaryOp op : kAllBinaryOps) {
    const auto [lo, hi] = binary_operand_range(op);
    for (const std::vector<Shape>& shapes :
         {std::vector<Shape>{{33, 7}, {7}}, std::vector<Shape>{{33, 1}, {1, 7}}, std::vector<Shape>{{5, 1, 67}, {3, 67}}})
      run_case(grad_case(binary_name(op), shapes, [op](const VarIns& x) { return binary(op, x[0], x[1]); }, lo, hi),
               kDev);
  }
  const Shape s = {33, 7}, t = {3, 5, 67};
  run_case(grad_case("affine", {s}, [](const VarIns& x) { return affine(x[0], 1.7, -0.3); }), kDev);
  run_case(grad_case("pow 2.5", {s}, [](const VarIns& x) { return pow(x[0], 2.5); }, 0.5, 2.0), kDev);
  run_case(grad_case("clamp", {s}, [](const VarIns& x) { return clamp(x[0], -0.5, 0.7); }), kDev);
  for (int d = 0; d < 3; ++d) {
    run_case(grad_case("sum dim " + std::to_string(d), {t}, [d](const VarIns& x) { return sum(x[0], d); }), kDev);
    run_case(grad_case("mean dim " + std::to_string(d), {t}, [d](const VarIns& x) { return mean(x[0], d, true); }),
             kDev);
  }
  run_case(grad_case("sum, mean of all", {t}, [](const VarIns& x) { return sum(x[0]) + mean(x[0]); }), kDev);
  run_case(grad_case("cat", {{3, 5, 7}, {3, 2, 7}}, [](const VarIns& x) { return cat({x[0], x[1]}, 1); }), kDev);
  run_case(grad_case("split",
                    {s},
                    [](const VarIns& x) {
                      const std::vector<Variable> p = split(x[0], {2, 5}, 1);
                      return cat({p[1], square(p[0])}, 1);
                    }),
           kDev);
  run_case(grad_case("softplus(a·b + c) summed", {{33, 7}, {7}, {33, 1}},
                    [](const VarIns& x) { return sum(softplus(x[0] * x[1] + x[2]), 0); }),
           kDev);
}

// max's backward scatters the gradient to the argmax with scatter_add (tensor/index.h), so this
// row also needs that op on CUDA.
TEST_CASE("CUDA gradient of max equals the CPU") {
  for (int d = 0; d < 3; ++d)
    run_case(grad_case("max dim " + std::to_string(d), {{3, 5, 67}}, [d](const VarIns& x) { return max(x[0], d); }),
             kDev);
  run_case(grad_case("max of all", {{33, 7}}, [](const VarIns& x) { return max(x[0]); }), kDev);
}

TEST_CASE("CUDA allocator: a freed block is handed out again for its size; the counts stay exact") {
  // tensor/cuda_device.cu: freed blocks are cached by size (unless SIMBA_CUDA_CACHE=0) and
  // reused in stream order, so the reused block holds what was queued after the free.
  const char* env = std::getenv("SIMBA_CUDA_CACHE");
  const bool cached = !(env && std::string(env) == "0");
  const size_t before = cuda_memory_stats(kDev.index).current_bytes;
  const void* first = nullptr;
  size_t bytes = 0;
  {
    Tensor a = Tensor::full({1000}, 3.0, DType::F32, kDev);
    first = a.device_data<float>();
    bytes = cuda_memory_stats(kDev.index).current_bytes - before;
    CHECK(bytes >= 1000 * sizeof(float));
  }
  CHECK(cuda_memory_stats(kDev.index).current_bytes == before);  // a cached block counts nothing
  Tensor b = Tensor::zeros({1000}, DType::F32, kDev);
  if (cached) CHECK(b.device_data<float>() == static_cast<const void*>(first));
  CHECK(cuda_memory_stats(kDev.index).current_bytes == before + bytes);
  Tensor c = Tensor::full({1001}, 2.0, DType::F32, kDev);  // another size: another block
  CHECK(c.device_data<float>() != b.device_data<float>());
  const std::vector<double> vb = b.to(cpu()).to_vector(), vc = c.to(cpu()).to_vector();
  CHECK(std::all_of(vb.begin(), vb.end(), [](double v) { return v == 0.0; }));
  CHECK(std::all_of(vc.begin(), vc.end(), [](double v) { return v == 2.0; }));
}

TEST_CASE("CUDA Readback: queued on the stream without a wait, one copy counted, the values of its tensor then") {
  Readback r(kDev, 2);
  Tensor t = Tensor::from_vector({2}, {3.25, -1.0}, DType::F64).to(kDev);
  const CudaSyncCounts before = cuda_sync_counts();
  r.queue(t);
  t.fill_(9.0);  // queued after the copy: the copy still reads the old values
  const CudaSyncCounts queued = cuda_sync_counts();
  CHECK(queued.device_to_host_copies == before.device_to_host_copies + 1);
  CHECK(r.wait() == std::vector<double>{3.25, -1.0});
  const CudaSyncCounts after = cuda_sync_counts();
  CHECK(after.device_to_host_copies == queued.device_to_host_copies);
  CHECK(after.synchronizations == before.synchronizations);
  r.queue(t.narrow(0, 1, 1));  // a second read replaces the first
  CHECK(r.wait() == std::vector<double>{9.0});
  CHECK(contains(error_of([&] { r.queue(Tensor::ones({2}, DType::F64)); }), "on cuda:0, got float64 (2,) on cpu"));
}

TEST_CASE("CUDA branches: in order outside a graph; recorded, each waits on nothing before it, the work after on all") {
  // bfloat16 products of 16 rows run on cuBLAS (tensor/matmul.cu): each branch on its own handle
  // and workspace. Every branch allocates and frees a temporary (the product).
  const int n = 3;
  Generator g(41);
  std::vector<Tensor> a, w, out;
  for (int i = 0; i < n; ++i) {
    a.push_back(randn({16, 64}, g, DType::BF16, kDev));
    w.push_back(randn({64, 48}, g, DType::BF16, kDev));
    out.push_back(Tensor::empty({16, 48}, DType::BF16, kDev));
  }
  Tensor total = Tensor::empty({16, 48}, DType::BF16, kDev);
  std::vector<int> order, seen_branch;
  const auto work = [&](int i) {
    order.push_back(i);
    seen_branch.push_back(cuda_branch());
    out[i].copy_(matmul(a[i], w[i]));
  };
  cuda_branches(kDev.index, n, work);  // eager: also makes the branches' cuBLAS handles
  CHECK(order == std::vector<int>{0, 1, 2});
  CHECK(seen_branch == std::vector<int>{0, 1, 2});
  CHECK(cuda_branch() == 0);
  std::vector<std::vector<double>> expected;
  for (int i = 0; i < n; ++i) expected.push_back(out[i].to(cpu()).to_vector());
  const std::vector<double> expected_total = add(add(out[0], out[1]), out[2]).to(cpu()).to_vector();

  CudaGraph graph(kDev.index, [&] {
    cuda_branches(kDev.index, n, work);
    total.copy_(add(add(out[0], out[1]), out[2]));  // after the join
  });
  CHECK(graph.root_count() == size_t(n));  // the branches start from nothing recorded before them
  CHECK(graph.leaf_count() == 1);          // and the sum waits for all of them
  for (int round = 0; round < 2; ++round) {
    INFO("replay " << round);
    for (Tensor& t : out) t.fill_(std::nan(""));  // poisoned: the replay must write every value
    total.fill_(std::nan(""));
    graph.replay();
    for (int i = 0; i < n; ++i) CHECK(out[i].to(cpu()).to_vector() == expected[i]);
    CHECK(total.to(cpu()).to_vector() == expected_total);
  }
  CudaGraph plain(kDev.index, [&] { total.copy_(add(out[0], out[1])); });
  CHECK(plain.root_count() == 1);
  CHECK(plain.leaf_count() == 1);

  CHECK(contains(error_of([&] { cuda_branches(kDev.index, 0, work); }), "0 branches, expected 1 to 8"));
  CHECK(contains(error_of([&] { cuda_branches(kDev.index, 9, work); }), "9 branches, expected 1 to 8"));
  CHECK(contains(error_of([&] { cuda_branches(kDev.index, 2, [&](int) { cuda_branches(kDev.index, 2, work); }); }),
                 "branches do not nest"));
  CHECK(cuda_branch() == 0);  // back to 0 after an error too
}

TEST_CASE("CUDA L2 prefetch: recorded as a node that waits on the work before it and that nothing waits on") {
  Generator g(43);
  // Sizes past several 32 KB pieces, ranges that start and end inside 16-byte units, one too
  // small to hold a whole unit (not asked for).
  const Tensor a = randn({300, 129}, g, DType::F32, kDev), b = randn({300, 129}, g, DType::F32, kDev);
  const Tensor tiny = randn({3}, g, DType::F32, kDev);
  Tensor out = Tensor::empty({300, 129}, DType::F32, kDev);
  const auto bytes = [](const Tensor& t) { return size_t(t.numel()) * dtype_size(t.dtype()); };
  const std::vector<std::pair<const void*, size_t>> ranges = {
      {a.raw_data(), bytes(a)},
      {static_cast<const char*>(b.raw_data()) + 4, bytes(b) - 9},
      {static_cast<const char*>(tiny.raw_data()) + 1, 12}};
  const std::vector<double> expected = add(a, b).to(cpu()).to_vector();

  const CudaSyncCounts before = cuda_sync_counts();
  cuda_prefetch_l2(kDev.index, ranges);  // outside a recording: nothing queued, nothing waited for
  const CudaSyncCounts after = cuda_sync_counts();
  CHECK(after.synchronizations == before.synchronizations);
  CHECK(after.device_to_host_copies == before.device_to_host_copies);

  CudaGraph graph(kDev.index, [&] {
    out.fill_(1.0);
    cuda_prefetch_l2(kDev.index, ranges);
    out.copy_(add(a, b));
  });
  // fill -> add -> copy in a chain; the prefetch waits on the fill, and nothing on the prefetch.
  CHECK(graph.root_count() == 1);
  CHECK(graph.leaf_count() == 2);
  for (int round = 0; round < 2; ++round) {
    INFO("replay " << round);
    out.fill_(std::nan(""));
    graph.replay();
    CHECK(out.to(cpu()).to_vector() == expected);
  }
  CudaGraph first(kDev.index, [&] {  // a prefetch recorded first waits on nothing
    cuda_prefetch_l2(kDev.index, ranges);
    out.copy_(add(a, b));
  });
  CHECK(first.root_count() == 2);
  CHECK(first.leaf_count() == 2);
  CudaGraph none(kDev.index, [&] {  // no whole 16-byte unit: no node
    cuda_prefetch_l2(kDev.index, {{static_cast<const char*>(tiny.raw_data()) + 1, 12}});
    out.copy_(add(a, b));
  });
  CHECK(none.root_count() == 1);
  CHECK(none.leaf_count() == 1);

  const std::vector<std::pair<const void*, size_t>> many(65, {a.raw_data(), bytes(a)});
  CHECK(contains(error_of([&] { CudaGraph too_many(kDev.index, [&] { cuda_prefetch_l2(kDev.index, many); }); }),
                 "65 ranges, expected at most 64"));
}
