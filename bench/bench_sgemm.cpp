// bench/bench_sgemm.cpp: float32 1024×1024×1024 matrix product, simba's
// matmul() (OpenBLAS sgemm) against a naive i-k-j triple loop on the same
// inputs, in GFLOP/s (2·M·N·K floating-point operations per product).
//
//   OMP_NUM_THREADS=2 ./bench_sgemm
//
// The naive loop runs once (about a second); it is the floor that shows what
// BLAS's blocking and vector kernels buy.
#include <benchmark/benchmark.h>

#include <vector>

#include "bench/bench_main.h"
#include "tensor/ops.h"

namespace {

using simba::Tensor;

constexpr int64_t kSize = 1024;

struct Inputs {
  Tensor a, b;  // (kSize, kSize) float32, normal
  Inputs() {
    simba::Generator gen(42);
    a = simba::randn({kSize, kSize}, gen, simba::DType::F32);
    b = simba::randn({kSize, kSize}, gen, simba::DType::F32);
  }
};

const Inputs& inputs() {
  static const Inputs in;
  return in;
}

void set_flops(benchmark::State& state) {
  state.counters["GFLOP/s"] = benchmark::Counter(2.0 * kSize * kSize * kSize / 1e9,
                                                 benchmark::Counter::kIsIterationInvariantRate);
}

void BM_matmul_openblas(benchmark::State& state) {
  const Inputs& in = inputs();
  for (auto _ : state) {
    Tensor c = simba::matmul(in.a, in.b);
    benchmark::DoNotOptimize(c.data<float>());
    benchmark::ClobberMemory();
  }
  set_flops(state);
}
BENCHMARK(BM_matmul_openblas)->Unit(benchmark::kMillisecond)->MinTime(2.0)->UseRealTime();

// c (M, N) = a (M, K) @ b (K, N), row-major, i-k-j order so the inner loop
// streams rows of b and c.
void naive_matmul(float* c, const float* a, const float* b, int64_t M, int64_t N, int64_t K) {
  for (int64_t i = 0; i < M * N; ++i) c[i] = 0.0f;
  for (int64_t i = 0; i < M; ++i)
    for (int64_t k = 0; k < K; ++k) {
      const float aik = a[i * K + k];
      for (int64_t j = 0; j < N; ++j) c[i * N + j] += aik * b[k * N + j];
    }
}

void BM_matmul_naive_ikj(benchmark::State& state) {
  const Inputs& in = inputs();
  std::vector<float> c(kSize * kSize);
  for (auto _ : state) {
    naive_matmul(c.data(), in.a.data<float>(), in.b.data<float>(), kSize, kSize, kSize);
    benchmark::DoNotOptimize(c.data());
    benchmark::ClobberMemory();
  }
  set_flops(state);
}
BENCHMARK(BM_matmul_naive_ikj)->Unit(benchmark::kMillisecond)->Iterations(1)->UseRealTime();

}  // namespace

SIMBA_BENCHMARK_MAIN()
