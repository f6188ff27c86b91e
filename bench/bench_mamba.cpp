// bench/bench_mamba.cpp: Mamba throughput on CPU (not a test).
//
// For the two configurations of the CPU benchmark (byte vocabulary, fp32):
//   demo: d_model 128, 4 layers, batch 16 × 256
//   A:    d_model 256, 4 layers, batch 32 × 256
// it measures
//   train:  tokens/s of one training step (forward, loss, backward, AdamW)
//   infer:  tokens/s of a forward pass producing all logits, no autograd
//   scan:   the selective scan alone at that config's (B, L, Di, N), forward
//           and forward+backward, in (b, t, d, n) state updates per second
// Run with the thread count you want to report, e.g.
//   OMP_NUM_THREADS=2 taskset -c 0,1 build/bench_mamba
// and see bench/RESULTS.md for recorded numbers and the PyTorch comparison.
#include <benchmark/benchmark.h>

#include "bench/bench_main.h"
#include "autograd/ops.h"
#include "nn/optim.h"
#include "ssm/mamba_model.h"
#include "ssm/selective_scan.h"
#include "train/trainer.h"

using namespace simba;

namespace {

struct BenchConfig {
  const char* name;
  int64_t d_model, layers, batch, length;
};
const BenchConfig kConfigs[] = {{"demo", 128, 4, 16, 256}, {"A", 256, 4, 32, 256}};

// simba train's default model (byte vocabulary, N 16, expand 2, K 4) at this width and depth.
MambaConfig model_config(const BenchConfig& b) {
  MambaConfig c = demo_model_config();
  c.hidden_size = b.d_model;
  c.num_hidden_layers = b.layers;
  c.time_step_rank = MambaConfig::auto_time_step_rank(b.d_model);
  return c;
}

Tensor random_ids(int64_t B, int64_t L, uint64_t seed) {
  Generator g(seed);
  std::vector<int64_t> v(B * L);
  for (auto& x : v) x = g.randint(0, 256);
  return Tensor::from_ints({B, L}, v);
}

void BM_train_step(benchmark::State& state) {
  const BenchConfig& b = kConfigs[state.range(0)];
  MambaLM model(model_config(b), 1);
  AdamW opt(model.named_parameters(), AdamWOptions{});
  Tensor ids = random_ids(b.batch, b.length + 1, 2);
  for (auto _ : state) {
    opt.zero_grad();
    Variable loss = model.loss(ids);
    loss.backward();
    opt.step();
    benchmark::DoNotOptimize(loss.item());
  }
  state.SetLabel(b.name);
  state.counters["tok/s"] = benchmark::Counter(double(b.batch * b.length), benchmark::Counter::kIsIterationInvariantRate);
}

void BM_inference(benchmark::State& state) {
  const BenchConfig& b = kConfigs[state.range(0)];
  MambaLM model(model_config(b), 1);
  Tensor ids = random_ids(b.batch, b.length, 3);
  NoGradGuard no_grad;
  for (auto _ : state) benchmark::DoNotOptimize(model.forward(ids).data().raw_data());
  state.SetLabel(b.name);
  state.counters["tok/s"] = benchmark::Counter(double(b.batch * b.length), benchmark::Counter::kIsIterationInvariantRate);
}

void BM_scan(benchmark::State& state) {
  const BenchConfig& b = kConfigs[state.range(0)];
  const bool backward = state.range(1) != 0;
  const int64_t B = b.batch, L = b.length, Di = 2 * b.d_model, N = 16;
  Generator g(4);
  Tensor u = randn({B, L, Di}, g), z = randn({B, L, Di}, g), dout = randn({B, L, Di}, g);
  Tensor delta = affine(rand({B, L, Di}, g), 0.1, 0.001);
  Tensor A = affine(rand({Di, N}, g), -4.0, -0.5);
  Tensor Bm = randn({B, L, N}, g), Cm = randn({B, L, N}, g), D = randn({Di}, g);
  Tensor out = Tensor::empty({B, L, Di});
  Tensor du = Tensor::empty({B, L, Di}), dd = Tensor::empty({B, L, Di}), dz = Tensor::empty({B, L, Di});
  Tensor dA = Tensor::empty({Di, N}), dB = Tensor::empty({B, L, N}), dC = Tensor::empty({B, L, N}), dD = Tensor::empty({Di});
  auto v = [](const Tensor& t) { return SeqView<const float>{t.data<float>(), t.size(2)}; };
  auto m = [](Tensor& t) { return SeqView<float>{t.data<float>(), t.size(2)}; };
  for (auto _ : state) {
    selective_scan_forward_cpu<float>(m(out), nullptr, v(u), v(delta), A.data<float>(), v(Bm), v(Cm), D.data<float>(), v(z),
                                      nullptr, B, L, Di, N);
    if (backward)
      selective_scan_backward_cpu<float>(m(du), m(dd), dA.data<float>(), m(dB), m(dC), dD.data<float>(), m(dz), nullptr,
                                         v(dout), nullptr, v(u), v(delta), A.data<float>(), v(Bm), v(Cm), D.data<float>(),
                                         v(z), nullptr, B, L, Di, N);
    benchmark::ClobberMemory();
  }
  state.SetLabel(std::string(b.name) + (backward ? " fwd+bwd" : " fwd"));
  state.counters["tok/s"] = benchmark::Counter(double(B * L), benchmark::Counter::kIsIterationInvariantRate);
  state.counters["state-updates/s"] =
      benchmark::Counter(double(B * L * Di * N), benchmark::Counter::kIsIterationInvariantRate);
}

}  // namespace

BENCHMARK(BM_train_step)->Arg(0)->Arg(1)->Unit(benchmark::kMillisecond)->MinWarmUpTime(2.0)->MinTime(8.0)->UseRealTime();
BENCHMARK(BM_inference)->Arg(0)->Arg(1)->Unit(benchmark::kMillisecond)->MinWarmUpTime(1.0)->MinTime(3.0)->UseRealTime();
BENCHMARK(BM_scan)->Args({0, 0})->Args({0, 1})->Args({1, 0})->Args({1, 1})->Unit(benchmark::kMillisecond)->UseRealTime();
SIMBA_BENCHMARK_MAIN()
