// tests/test_index_ops.cpp: cat, split and the index ops against plain loops,
// and their gradients against finite differences.
//
// The references below walk every element by its multi-index, the
// definitions in tensor/index.h written as loops. Copies (cat, index_select,
// gather, embedding) must match them exactly; sums (index_add, scatter_add,
// embedding_backward) to 1e-12·(1+|ref|) in float64, and float32 must match
// float64 to 1e-6·(1+|f64|) (a few float32 roundings of O(1) values). The
// OpenMP paths run on sizes above kParallelGrain, are compared with the same
// references, and the accumulating ones must give bit-identical results on 1
// and on all threads (they never split the index list across threads).
#include <doctest/doctest.h>

#include <cmath>
#include <string>
#include <vector>

#ifdef _OPENMP
#include <omp.h>
#endif

#include "autograd/gradcheck.h"
#include "autograd/ops.h"
#include "tensor/strided_loop.h"
#include "tests/test_util.h"

using namespace simba;

namespace {

// Calls f(idx) for every multi-index of shape, in row-major order.
template <class F>
void for_each_index(const Shape& shape, F f) {
  std::vector<int64_t> idx(shape.size(), 0);
  for (int64_t k = 0; k < shape_numel(shape); ++k) {
    f(idx);
    for (int d = static_cast<int>(shape.size()) - 1; d >= 0; --d) {
      if (++idx[d] < shape[d]) break;
      idx[d] = 0;
    }
  }
}

int64_t flat_index(const Shape& shape, const std::vector<int64_t>& idx) {
  int64_t f = 0;
  for (size_t d = 0; d < shape.size(); ++d) f = f * shape[d] + idx[d];
  return f;
}

Tensor ref_index_select(const Tensor& x, int d, const Tensor& index) {
  Shape shape = x.shape();
  shape[d] = index.size(0);
  std::vector<double> v;
  for_each_index(shape, [&](std::vector<int64_t> idx) {
    idx[d] = static_cast<int64_t>(index.at({idx[d]}));
    v.push_back(x.at(idx));
  });
  return Tensor::from_vector(shape, v, DType::F64);
}

Tensor ref_index_add(const Tensor& base, int d, const Tensor& index, const Tensor& src) {
  std::vector<double> v = base.to_vector();
  for_each_index(src.shape(), [&](const std::vector<int64_t>& idx) {
    std::vector<int64_t> to = idx;
    to[d] = static_cast<int64_t>(index.at({idx[d]}));
    v[flat_index(base.shape(), to)] += src.at(idx);
  });
  return Tensor::from_vector(base.shape(), v, DType::F64);
}

Tensor ref_gather(const Tensor& x, int d, const Tensor& index) {
  std::vector<double> v;
  for_each_index(index.shape(), [&](const std::vector<int64_t>& idx) {
    std::vector<int64_t> from = idx;
    from[d] = static_cast<int64_t>(index.at(idx));
    v.push_back(x.at(from));
  });
  return Tensor::from_vector(index.shape(), v, DType::F64);
}

Tensor ref_scatter_add(const Tensor& base, int d, const Tensor& index, const Tensor& src) {
  std::vector<double> v = base.to_vector();
  for_each_index(src.shape(), [&](const std::vector<int64_t>& idx) {
    std::vector<int64_t> to = idx;
    to[d] = static_cast<int64_t>(index.at(idx));
    v[flat_index(base.shape(), to)] += src.at(idx);
  });
  return Tensor::from_vector(base.shape(), v, DType::F64);
}

Tensor ref_cat(const std::vector<Tensor>& xs, int d) {
  Shape shape = xs[0].shape();
  shape[d] = 0;
  for (const Tensor& x : xs) shape[d] += x.size(d);
  std::vector<double> v;
  for_each_index(shape, [&](std::vector<int64_t> idx) {
    size_t k = 0;
    while (idx[d] >= xs[k].size(d)) idx[d] -= xs[k++].size(d);
    v.push_back(xs[k].at(idx));
  });
  return Tensor::from_vector(shape, v, DType::F64);
}

Tensor random_index(const Shape& shape, int64_t hi, Generator& gen) {
  std::vector<int64_t> v(shape_numel(shape));
  for (int64_t& i : v) i = gen.randint(0, hi);
  return Tensor::from_ints(shape, v);
}

// max over elements of |got − ref| / (1 + |ref|); shapes must match.
double scaled_error(const Tensor& got, const Tensor& ref) {
  REQUIRE(got.shape() == ref.shape());
  const std::vector<double> g = got.to_vector(), r = ref.to_vector();
  double worst = 0.0;
  for (size_t i = 0; i < g.size(); ++i) worst = std::max(worst, std::fabs(g[i] - r[i]) / (1.0 + std::fabs(r[i])));
  return worst;
}


// f evaluated on 1 thread and on all threads; the two results must be bit-identical.
template <class F>
void check_thread_count_invariant(F f) {
#ifdef _OPENMP
  const int threads = omp_get_max_threads();
  omp_set_num_threads(1);
  const std::vector<double> one = f().to_vector();
  omp_set_num_threads(threads);
  CHECK(f().to_vector() == one);
#else
  CHECK(f().to_vector() == f().to_vector());
#endif
}

GradcheckResult check_grad(const GradcheckFn& f, const std::vector<Tensor>& inputs, GradcheckOptions opt = {}) {
  GradcheckResult r = gradcheck(f, inputs, opt);
  MESSAGE("gradcheck max_error " << r.max_error << " over " << r.checked << " elements; worst at " << r.where);
  return r;
}

}  // namespace

// ------------------------------------------------------------------ cat / split

TEST_CASE("cat: three inputs along every dim match the loop, for float and int64") {
  Generator gen(1);
  for (int d = 0; d < 3; ++d) {
    CAPTURE(d);
    std::vector<Tensor> xs;
    for (int64_t k = 1; k <= 3; ++k) {
      Shape s = {2, 3, 4};
      s[d] = k;
      xs.push_back(randn(s, gen, DType::F64));
    }
    const Tensor ref = ref_cat(xs, d);
    CHECK(cat(xs, d).to_vector() == ref.to_vector());
    CHECK(cat(xs, d - 3).shape() == ref.shape());  // negative dim
    std::vector<Tensor> xs32;
    for (const Tensor& x : xs) xs32.push_back(x.to(DType::F32));
    const Tensor c32 = cat(xs32, d);
    CHECK(c32.dtype() == DType::F32);
    CHECK(c32.to_vector() == cat(xs32, d).to(DType::F64).to_vector());
    CHECK(scaled_error(c32, ref) <= 1e-7);  // one float32 rounding per element
  }
  const Tensor ints = cat({Tensor::from_ints({2}, {1, 2}), Tensor::from_ints({3}, {3, 4, 5})}, 0);
  CHECK(ints.dtype() == DType::I64);
  CHECK(ints.to_ints() == std::vector<int64_t>{1, 2, 3, 4, 5});
  // Non-contiguous inputs.
  const Tensor t = randn({4, 3}, gen, DType::F64).transpose(0, 1);
  const Tensor n = randn({3, 7}, gen, DType::F64).narrow(1, 2, 2);
  CHECK(cat({t, n}, 1).to_vector() == ref_cat({t, n}, 1).to_vector());
}

TEST_CASE("split: pieces are views with the requested sizes") {
  Generator gen(2);
  const Tensor x = randn({3, 6}, gen, DType::F64);
  const std::vector<Tensor> p = split(x, {1, 0, 2, 3}, 1);
  REQUIRE(p.size() == 4);
  CHECK(p[0].shape() == Shape{3, 1});
  CHECK(p[1].shape() == Shape{3, 0});
  CHECK(p[3].shape() == Shape{3, 3});
  for (const Tensor& t : p) CHECK(t.shares_storage(x));
  CHECK(p[2].to_vector() == x.narrow(1, 1, 2).to_vector());
  CHECK(cat(p, 1).to_vector() == x.to_vector());
}

TEST_CASE("cat / split: errors name the op, shapes and dtypes") {
  const std::string dtypes = error_of([] { cat({Tensor::zeros({2, 3}), Tensor::zeros({2, 3}, DType::F64)}, 0); });
  CHECK(contains(dtypes, "cat: dtype mismatch"));
  CHECK(contains(dtypes, "float32"));
  CHECK(contains(dtypes, "float64"));
  const std::string shapes = error_of([] { cat({Tensor::zeros({2, 3}), Tensor::zeros({2, 4})}, 0); });
  CHECK(contains(shapes, "(2, 3)"));
  CHECK(contains(shapes, "(2, 4)"));
  CHECK(contains(error_of([] { cat(std::vector<Tensor>{}, 0); }), "at least one tensor"));
  CHECK(contains(error_of([] { split(Tensor::zeros({2, 5}), {2, 2}, 1); }), "sum to 4"));
  CHECK(contains(error_of([] { split(Tensor::zeros({2, 5}), {6, -1}, 1); }), "negative size"));
}

// ------------------------------------------------------------------ index_select / index_add

TEST_CASE("index_select: every dim, repeated indices, float and int64 data") {
  Generator gen(3);
  const Tensor x = randn({4, 5, 3}, gen, DType::F64);
  const std::vector<Tensor> indices = {Tensor::from_ints({6}, {2, 0, 2, 3, 2, 1}),
                                       Tensor::from_ints({6}, {4, 0, 4, 4, 2, 1}),
                                       Tensor::from_ints({5}, {1, 1, 0, 2, 1})};
  for (int d = 0; d < 3; ++d) {
    CAPTURE(d);
    const Tensor ref = ref_index_select(x, d, indices[d]);
    CHECK(index_select(x, d, indices[d]).to_vector() == ref.to_vector());
    CHECK(index_select(x, d - 3, indices[d]).to_vector() == ref.to_vector());
    // float32 moves the same (rounded) values.
    CHECK(index_select(x.to(DType::F32), d, indices[d]).to_vector() == ref.to(DType::F32).to_vector());
  }
  // Non-contiguous data and index.
  const Tensor xt = x.transpose(0, 2);  // (3, 5, 4)
  const Tensor every_other = Tensor::from_ints({4, 2}, {0, 9, 3, 9, 1, 9, 3, 9}).select(1, 0);
  CHECK(index_select(xt, 2, every_other).to_vector() == ref_index_select(xt, 2, every_other).to_vector());
  // int64 data.
  const Tensor ints = Tensor::from_ints({2, 3}, {10, 11, 12, 20, 21, 22});
  CHECK(index_select(ints, 1, Tensor::from_ints({3}, {2, 2, 0})).to_ints() ==
        std::vector<int64_t>{12, 12, 10, 22, 22, 20});
  // Empty index.
  CHECK(index_select(x, 1, Tensor::from_ints({0}, {})).shape() == Shape{4, 0, 3});
}

TEST_CASE("index_add: every dim with repeated indices; float32 agrees with float64") {
  Generator gen(4);
  const Tensor base = randn({4, 5, 3}, gen, DType::F64);
  const std::vector<Tensor> indices = {Tensor::from_ints({6}, {2, 0, 2, 3, 2, 1}),
                                       Tensor::from_ints({6}, {4, 0, 4, 4, 2, 1}),
                                       Tensor::from_ints({5}, {1, 1, 0, 2, 1})};
  for (int d = 0; d < 3; ++d) {
    CAPTURE(d);
    Shape s = base.shape();
    s[d] = indices[d].size(0);
    const Tensor src = randn(s, gen, DType::F64);
    const Tensor ref = ref_index_add(base, d, indices[d], src);
    const Tensor got = index_add(base, d, indices[d], src);
    CHECK(scaled_error(got, ref) <= 1e-12);
    CHECK(scaled_error(index_add(base.to(DType::F32), d, indices[d], src.to(DType::F32)), got) <= 1e-6);
    // Non-contiguous src (a transposed copy viewed back) and base untouched.
    const Tensor src_t = src.transpose(0, d).contiguous().transpose(0, d);
    CHECK(scaled_error(index_add(base, d, indices[d], src_t), ref) <= 1e-12);
  }
  const Tensor before = base.clone();
  index_add(base, 0, indices[0], randn({6, 5, 3}, gen, DType::F64));
  CHECK(base.to_vector() == before.to_vector());
}

TEST_CASE("index_add_: in place, and with IndexOrder::Increasing the same bits; an unordered index is an error") {
  Generator gen(14);
  for (DType dt : {DType::F64, DType::F32, DType::BF16}) {
    CAPTURE(dtype_name(dt));
    const Tensor base = randn({4, 9, 3}, gen, DType::F64).to(dt);
    const Tensor index = Tensor::from_ints({5}, {0, 2, 3, 6, 8});  // strictly increasing, not all rows
    for (int d : {0, 1}) {
      CAPTURE(d);
      const Tensor idx = d == 0 ? Tensor::from_ints({3}, {0, 1, 3}) : index;
      Shape s = base.shape();
      s[d] = idx.size(0);
      const Tensor src = randn(s, gen, DType::F64).to(dt);
      const Tensor any = base.clone(), increasing = base.clone();
      index_add_(any, d, idx, src);
      index_add_(increasing, d, idx, src, IndexOrder::Increasing);
      CHECK(any.to_vector() == index_add(base, d, idx, src).to_vector());
      CHECK(increasing.to_vector() == any.to_vector());
    }
  }
  // A repeated or falling index given as increasing: an error before anything is written.
  const Tensor base = randn({2, 6}, gen, DType::F32), src = randn({2, 3}, gen, DType::F32);
  for (const auto& [ints, message] :
       std::vector<std::pair<std::vector<int64_t>, std::string>>{
           {{0, 3, 3}, "index_add_: index 3 at position 2 for dim 1 is not above the one before it (3)"},
           {{4, 1, 5}, "index_add_: index 1 at position 1 for dim 1 is not above the one before it (4)"}}) {
    const Tensor b = base.clone();
    const std::string m = error_of([&] { index_add_(b, 1, Tensor::from_ints({3}, ints), src, IndexOrder::Increasing); });
    CHECK_MESSAGE(contains(m, message), m);
    CHECK(b.to_vector() == base.to_vector());
    CHECK(error_of([&] { index_add_(base.clone(), 1, Tensor::from_ints({3}, ints), src); }) == "");  // Any allows it
  }
  CHECK(contains(error_of([&] {
                   index_add_(base.clone(), 1, Tensor::from_ints({3}, {0, 2, 6}), src, IndexOrder::Increasing);
                 }),
                 "index_add_: index 6 out of range for dim 1 of size 6"));
}

TEST_CASE("index_select / index_add: OpenMP path matches the loop and is thread-count invariant") {
  Generator gen(5);
  // outer·n·inner = 4·64·300 > kParallelGrain.
  const Tensor x = randn({4, 50, 300}, gen, DType::F32);
  const Tensor index = random_index({64}, 50, gen);  // 64 draws from 50 rows: repeats
  REQUIRE(4 * 64 * 300 > kParallelGrain);
  CHECK(index_select(x, 1, index).to_vector() == ref_index_select(x, 1, index).to_vector());
  const Tensor src = randn({4, 64, 300}, gen, DType::F32);
  const Tensor ref = ref_index_add(x, 1, index, src);
  CHECK(scaled_error(index_add(x, 1, index, src), ref) <= 1e-6);
  check_thread_count_invariant([&] { return index_add(x, 1, index, src); });
  // Last dim: inner = 1, so the work is spread over outer rows.
  const Tensor y = randn({300, 200}, gen, DType::F32);
  const Tensor cols = random_index({150}, 200, gen);
  const Tensor src2 = randn({300, 150}, gen, DType::F32);
  CHECK(scaled_error(index_add(y, 1, cols, src2), ref_index_add(y, 1, cols, src2)) <= 1e-6);
  check_thread_count_invariant([&] { return index_add(y, 1, cols, src2); });
}

// ------------------------------------------------------------------ gather / scatter_add

TEST_CASE("gather / scatter_add: every dim with repeated indices; float32 agrees with float64") {
  Generator gen(6);
  const Tensor x = randn({3, 4, 5}, gen, DType::F64);
  for (int d = 0; d < 3; ++d) {
    CAPTURE(d);
    Shape s = x.shape();
    s[d] = 6;  // more picks than rows: repeats guaranteed
    const Tensor index = random_index(s, x.size(d), gen);
    const Tensor g = gather(x, d, index);
    CHECK(g.to_vector() == ref_gather(x, d, index).to_vector());
    CHECK(gather(x.to(DType::F32), d, index).to_vector() == ref_gather(x, d, index).to(DType::F32).to_vector());
    const Tensor src = randn(s, gen, DType::F64);
    const Tensor ref = ref_scatter_add(x, d, index, src);
    const Tensor got = scatter_add(x, d, index, src);
    CHECK(scaled_error(got, ref) <= 1e-12);
    CHECK(scaled_error(scatter_add(x.to(DType::F32), d, index, src.to(DType::F32)), got) <= 1e-6);
  }
  // Non-contiguous data and index; int64 data.
  const Tensor xt = x.transpose(0, 1);  // (4, 3, 5)
  const Tensor index = random_index({4, 5, 3}, 3, gen).transpose(1, 2);  // (4, 3, 5) view
  CHECK(gather(xt, 1, index).to_vector() == ref_gather(xt, 1, index).to_vector());
  const Tensor ints = Tensor::from_ints({2, 2}, {1, 2, 3, 4});
  CHECK(gather(ints, 1, Tensor::from_ints({2, 3}, {1, 1, 0, 0, 1, 0})).to_ints() ==
        std::vector<int64_t>{2, 2, 1, 3, 4, 3});
}

TEST_CASE("gather / scatter_add: OpenMP path matches the loop and is thread-count invariant") {
  Generator gen(7);
  const Tensor x = randn({8, 40, 200}, gen, DType::F32);
  const Tensor index = random_index({8, 30, 200}, 40, gen);
  REQUIRE(8 * 30 * 200 > kParallelGrain);
  CHECK(gather(x, 1, index).to_vector() == ref_gather(x, 1, index).to_vector());
  const Tensor src = randn({8, 30, 200}, gen, DType::F32);
  CHECK(scaled_error(scatter_add(x, 1, index, src), ref_scatter_add(x, 1, index, src)) <= 1e-6);
  check_thread_count_invariant([&] { return scatter_add(x, 1, index, src); });
}

// ------------------------------------------------------------------ embedding

TEST_CASE("embedding / embedding_backward: match index_select / index_add loops") {
  Generator gen(8);
  const Tensor w = randn({7, 4}, gen, DType::F64);
  const Tensor ids = Tensor::from_ints({2, 3}, {6, 0, 6, 2, 2, 6});
  const Tensor e = embedding(w, ids);
  CHECK(e.shape() == Shape{2, 3, 4});
  CHECK(e.to_vector() == ref_index_select(w, 0, ids.reshape({6})).to_vector());
  CHECK(embedding(w.to(DType::F32), ids).to_vector() == e.to(DType::F32).to_vector());
  const Tensor dout = randn({2, 3, 4}, gen, DType::F64);
  const Tensor ref = ref_index_add(Tensor::zeros({7, 4}, DType::F64), 0, ids.reshape({6}), dout.reshape({6, 4}));
  const Tensor dw = embedding_backward(dout, ids, 7);
  CHECK(scaled_error(dw, ref) <= 1e-12);
  CHECK(scaled_error(embedding_backward(dout.to(DType::F32), ids, 7), dw) <= 1e-6);
  // Rows no id names stay zero.
  CHECK(dw.select(0, 1).to_vector() == std::vector<double>(4, 0.0));
  // A 0-dim id gives one row.
  CHECK(embedding(w, Tensor::from_ints({}, {3})).to_vector() == w.select(0, 3).to_vector());
}

TEST_CASE("embedding_backward: OpenMP path matches the loop and is thread-count invariant") {
  Generator gen(9);
  const Tensor ids = random_index({4, 64}, 100, gen);  // 256 ids over 100 rows: repeats
  const Tensor dout = randn({4, 64, 512}, gen, DType::F32);
  REQUIRE(256 * 512 > kParallelGrain);
  const Tensor ref = ref_index_add(Tensor::zeros({100, 512}, DType::F32), 0, ids.reshape({256}),
                                   dout.reshape({256, 512}));
  CHECK(scaled_error(embedding_backward(dout, ids, 100), ref) <= 1e-6);
  check_thread_count_invariant([&] { return embedding_backward(dout, ids, 100); });
  const Tensor w = randn({100, 512}, gen, DType::F32);
  CHECK(embedding(w, ids).to_vector() == ref_index_select(w, 0, ids.reshape({256})).reshape({4, 64, 512}).to_vector());
}

// ------------------------------------------------------------------ errors

TEST_CASE("index ops: out-of-range indices, wrong dtypes and shapes are clear errors") {
  const Tensor x = Tensor::zeros({3, 5});
  CHECK(contains(error_of([&] { index_select(x, 1, Tensor::from_ints({2}, {0, 7})); }),
                 "index_select: index 7 out of range for dim 1 of size 5"));
  CHECK(contains(error_of([&] { index_select(x, 0, Tensor::from_ints({1}, {-1})); }),
                 "index_select: index -1 out of range for dim 0 of size 3"));
  CHECK(contains(error_of([&] { index_select(x, 0, Tensor::zeros({2})); }), "index must be int64, got float32"));
  CHECK(contains(error_of([&] { index_select(x, 0, Tensor::from_ints({1, 1}, {0})); }), "index must be 1-D"));
  CHECK(contains(error_of([&] { index_add(x, 1, Tensor::from_ints({1}, {5}), Tensor::zeros({3, 1})); }),
                 "index_add: index 5 out of range for dim 1 of size 5"));
  const std::string src_shape =
      error_of([&] { index_add(x, 1, Tensor::from_ints({2}, {0, 1}), Tensor::zeros({3, 3})); });
  CHECK(contains(src_shape, "(3, 3)"));
  CHECK(contains(src_shape, "(3, 2)"));
  const std::string dtypes =
      error_of([&] { index_add(x, 1, Tensor::from_ints({1}, {0}), Tensor::zeros({3, 1}, DType::F64)); });
  CHECK(contains(dtypes, "float32"));
  CHECK(contains(dtypes, "float64"));
  CHECK(contains(error_of([&] { gather(x, 1, Tensor::from_ints({3, 1}, {0, 5, 1})); }),
                 "gather: index 5 out of range for dim 1 of size 5"));
  const std::string gshape = error_of([&] { gather(x, 1, Tensor::from_ints({2, 1}, {0, 1})); });
  CHECK(contains(gshape, "(2, 1)"));
  CHECK(contains(gshape, "(3, 5)"));
  CHECK(contains(error_of([&] {
                   scatter_add(x, 0, Tensor::from_ints({1, 5}, {0, 1, 2, 3, 0}), Tensor::zeros({1, 5}));
                 }),
                 "scatter_add: index 3 out of range for dim 0 of size 3"));
  CHECK(contains(error_of([&] {
                   scatter_add(x, 0, Tensor::from_ints({1, 5}, {0, 0, 0, 0, 0}), Tensor::zeros({1, 4}));
                 }),
                 "(1, 4)"));
  CHECK(contains(error_of([&] {
                   scatter_add(Tensor::from_ints({2}, {0, 0}), 0, Tensor::from_ints({1}, {0}),
                               Tensor::from_ints({1}, {1}));
                 }),
                 "int64"));
  CHECK(contains(error_of([&] { embedding(x, Tensor::from_ints({2}, {1, 9})); }),
                 "embedding: index 9 out of range for dim 0 of size 3"));
  CHECK(contains(error_of([&] { embedding(Tensor::zeros({3}), Tensor::from_ints({1}, {0})); }), "(V, D)"));
  CHECK(contains(error_of([&] { embedding_backward(Tensor::zeros({2, 4}), Tensor::from_ints({1}, {0}), 3); }),
                 "does not match ids"));
  CHECK(contains(error_of([&] { embedding_backward(Tensor::zeros({1, 4}), Tensor::from_ints({1}, {3}), 3); }),
                 "embedding_backward: index 3 out of range for dim 0 of size 3"));
}

// ------------------------------------------------------------------ gradients (float64 finite differences)

TEST_CASE("cat gradient: three inputs along dims 0, 1 and -1") {
  Generator gen(20);
  for (int d : {0, 1, -1}) {
    CAPTURE(d);
    std::vector<Tensor> in;
    for (int64_t k = 1; k <= 3; ++k) {
      Shape s = {2, 3, 2};
      s[d < 0 ? 2 : d] = k;
      in.push_back(randn(s, gen, DType::F64));
    }
    auto r = check_grad([d](const std::vector<Variable>& v) { return cat(v, d); }, in);
    CHECK(r.ok);
  }
}

TEST_CASE("split gradient: every piece routes its gradient back to its slice") {
  Generator gen(21);
  const Tensor x = randn({2, 6, 2}, gen, DType::F64);
  const std::vector<Variable> pieces = split(Variable(x, true), {1, 2, 3}, 1);
  REQUIRE(pieces.size() == 3);
  CHECK(pieces[2].shape() == Shape{2, 3, 2});
  CHECK(pieces[2].data().shares_storage(x));
  auto r = check_grad(
      [](const std::vector<Variable>& v) {
        std::vector<Variable> p = split(v[0], {1, 2, 3}, 1);
        return cat({p[2] * 3.0, square(p[0]), p[1]}, 1);  // reordered, different maps
      },
      {x});
  CHECK(r.ok);
}

TEST_CASE("index_select gradient: repeated indices on every dim") {
  Generator gen(22);
  const Tensor x = randn({4, 5, 3}, gen, DType::F64);
  const std::vector<Tensor> indices = {Tensor::from_ints({6}, {2, 0, 2, 3, 2, 1}),
                                       Tensor::from_ints({6}, {4, 0, 4, 4, 2, 1}),
                                       Tensor::from_ints({5}, {1, 1, 0, 2, 1})};
  for (int d = 0; d < 3; ++d) {
    CAPTURE(d);
    const Tensor idx = indices[d];
    auto r = check_grad([d, idx](const std::vector<Variable>& v) { return index_select(v[0], d, idx); }, {x});
    CHECK(r.ok);
  }
}

TEST_CASE("index_add gradient: base and source, repeated indices") {
  Generator gen(23);
  const Tensor idx = Tensor::from_ints({6}, {4, 0, 4, 4, 2, 1});
  auto r = check_grad([idx](const std::vector<Variable>& v) { return index_add(v[0], 1, idx, v[1]); },
                      {randn({4, 5, 3}, gen, DType::F64), randn({4, 6, 3}, gen, DType::F64)});
  CHECK(r.ok);
}

TEST_CASE("gather gradient: repeated indices") {
  Generator gen(24);
  const Tensor idx = random_index({3, 6, 5}, 4, gen);
  auto r = check_grad([idx](const std::vector<Variable>& v) { return gather(v[0], 1, idx); },
                      {randn({3, 4, 5}, gen, DType::F64)});
  CHECK(r.ok);
}

TEST_CASE("scatter_add gradient: base and source, repeated indices") {
  Generator gen(25);
  const Tensor idx = random_index({3, 6, 5}, 4, gen);
  auto r = check_grad([idx](const std::vector<Variable>& v) { return scatter_add(v[0], 1, idx, v[1]); },
                      {randn({3, 4, 5}, gen, DType::F64), randn({3, 6, 5}, gen, DType::F64)});
  CHECK(r.ok);
}

TEST_CASE("embedding gradient: repeated ids") {
  Generator gen(26);
  const Tensor ids = Tensor::from_ints({2, 3}, {6, 0, 6, 2, 2, 6});
  auto r = check_grad([ids](const std::vector<Variable>& v) { return embedding(v[0], ids); },
                      {randn({7, 4}, gen, DType::F64)});
  CHECK(r.ok);
}

TEST_CASE("index ops gradient: float32 backward agrees with float64") {
  Generator gen(27);
  const Tensor x64 = randn({4, 5, 3}, gen, DType::F64), g64 = randn({4, 6, 3}, gen, DType::F64);
  const Tensor idx = Tensor::from_ints({6}, {4, 0, 4, 4, 2, 1});
  Tensor grads[2];
  for (int k = 0; k < 2; ++k) {
    const DType dt = k == 0 ? DType::F64 : DType::F32;
    Variable x(x64.to(dt), true);
    index_select(x, 1, idx).backward(g64.to(dt));
    grads[k] = x.grad();
  }
  CHECK(scaled_error(grads[1], grads[0]) <= 1e-6);
}
