// bench/bench_simba.cpp: wall clock of the Simba-pruned forward against the dense forward on CPU
// (not a test), compared with their FLOPs ratio (ssm/flops.h).
//
// Model: the demo size (byte vocabulary, d_model 128, 4 layers, N 16, expand 2, conv 4, dt rank
// 8), random init, float32. Input: B sequences of n_0 = 2048 context tokens plus a continuation
// of m tokens (m = 1 and m = 16). Both runs go through simba_forward with the same protocol
// (ssm/simba_forward.h), so they differ only in pruning:
//   dense   keep=1                         every layer processes all n_0 + m tokens
//   pruned  keep=0.1,schedule=linear       n_ℓ = 2048, 1434, 820, 205 context tokens, scored
//                                          with the Simba criterion after layers 0..2
// Each configuration runs `reps` times, dense and pruned alternating, after one warm-up of each;
// the reported time is the minimum (the machine is shared, and the minimum is the run least
// disturbed by other jobs), with the median alongside. The acceptance bound of the Simba issue is
//   time(pruned) / time(dense) <= FLOPs(pruned) / FLOPs(dense) + 0.10.
// A second table splits the pruned forward's time into the score kernels and the rest, by
// timing simba_scores on each scored layer's own trace.
//
// Usage: OMP_NUM_THREADS=1 build/bench_simba [reps] [batch]      (defaults 15, 1)
// Results are recorded in bench/RESULTS.md (## Simba).
#include <algorithm>
#include <cstdio>
#include <cstdlib>
#include <string>
#include <vector>

#ifdef _OPENMP
#include <omp.h>
#endif

#include "ssm/simba_forward.h"
#include "ssm/simba_score.h"
#include "train/metrics_log.h"
#include "train/trainer.h"
#include "train/simba_eval.h"

using namespace simba;

namespace {

constexpr int64_t kContext = 2048;

Tensor random_ids(int64_t B, int64_t L, uint64_t seed) {
  Generator g(seed);
  std::vector<int64_t> v(B * L);
  for (auto& x : v) x = g.randint(0, 256);
  return Tensor::from_ints({B, L}, v);
}

double min_of(std::vector<double> v) { return *std::min_element(v.begin(), v.end()); }
double median_of(std::vector<double> v) {
  std::sort(v.begin(), v.end());
  return v[v.size() / 2];
}

double seconds_of(const MambaLM& model, const Tensor& ids, const SimbaOptions& opt) {
  Stopwatch w;
  simba_forward(model, ids, kContext, opt);
  return w.seconds();
}

// Seconds spent in the score kernels of one pruned forward: simba_scores timed alone on the trace
// of each layer whose scores choose the next kept set.
double score_seconds(const MambaLM& model, const Tensor& ids, const SimbaOptions& opt, int reps) {
  const SimbaResult r = simba_forward(model, ids, kContext, opt, true);
  double total = 0;
  for (size_t l = 0; l + 1 < r.counts.size(); ++l) {
    if (r.counts[l + 1] == r.counts[l]) continue;
    const MixerTrace trace = simba_layer_trace(model, ids, r, static_cast<int64_t>(l));
    std::vector<double> t;
    for (int i = 0; i < reps; ++i) {
      Stopwatch w;
      simba_scores(trace, r.counts[l], opt.criterion);
      t.push_back(w.seconds());
    }
    total += min_of(t);
  }
  return total;
}

}  // namespace

int main(int argc, char** argv) {
  const int reps = argc > 1 ? std::atoi(argv[1]) : 15;
  const int64_t B = argc > 2 ? std::atoll(argv[2]) : 1;
  if (reps < 1 || B < 1) {
    std::fprintf(stderr, "usage: bench_simba [reps >= 1] [batch >= 1]\n");
    return 2;
  }
  int threads = 1;
#ifdef _OPENMP
  threads = omp_get_max_threads();
#endif
  const MambaConfig cfg = demo_model_config();
  const MambaLM model(cfg, 1);
  const SimbaOptions dense = parse_simba_options("keep=1", "bench");
  const SimbaOptions pruned = parse_simba_options("keep=0.1,schedule=linear,criterion=simba", "bench");
  NoGradGuard no_grad;
  std::printf("bench_simba: demo model (D %lld, %lld layers, N %lld), float32, n_0 = %lld, batch %lld, "
              "%d thread(s), min of %d runs\n",
              static_cast<long long>(cfg.hidden_size), static_cast<long long>(cfg.num_hidden_layers),
              static_cast<long long>(cfg.state_size), static_cast<long long>(kContext), static_cast<long long>(B),
              threads, reps);
  std::printf("%4s | %22s | %22s | %10s | %11s | %13s | %s\n", "m", "dense ms (min / med)", "pruned ms (min / med)",
              "time ratio", "FLOPs ratio", "time - FLOPs", "bound (+0.10)");
  for (int64_t m : {1, 16}) {
    const Tensor ids = random_ids(B, kContext + m, 7 + m);
    const SimbaResult fd = simba_forward(model, ids, kContext, dense);  // warm-up, and the FLOPs
    const SimbaResult fp = simba_forward(model, ids, kContext, pruned);
    std::vector<double> td, tp;
    for (int i = 0; i < reps; ++i) {
      td.push_back(seconds_of(model, ids, dense));
      tp.push_back(seconds_of(model, ids, pruned));
    }
    const double time_ratio = min_of(tp) / min_of(td);
    const double flops_ratio = double(fp.flops.total()) / double(fd.flops.total());
    std::printf("%4lld | %10.2f / %9.2f | %10.2f / %9.2f | %10.3f | %11.3f | %+13.3f | %s\n",
                static_cast<long long>(m), 1e3 * min_of(td), 1e3 * median_of(td), 1e3 * min_of(tp),
                1e3 * median_of(tp), time_ratio, flops_ratio, time_ratio - flops_ratio,
                time_ratio <= flops_ratio + 0.10 ? "met" : "NOT met");
  }
  // Where the pruned forward's time goes (m = 16).
  const Tensor ids = random_ids(B, kContext + 16, 23);
  std::vector<double> tp;
  for (int i = 0; i < reps; ++i) tp.push_back(seconds_of(model, ids, pruned));
  const SimbaResult fp = simba_forward(model, ids, kContext, pruned);
  int64_t score_flops_total = 0;
  for (const LayerFlops& l : fp.flops.layers) score_flops_total += l.score;
  const double ts = score_seconds(model, ids, pruned, reps);
  std::printf("pruned forward, m = 16: %.2f ms in all; score kernels %.2f ms (%.1f %% of the time, %.1f %% of the "
              "FLOPs)\n",
              1e3 * min_of(tp), 1e3 * ts, 100.0 * ts / min_of(tp),
              100.0 * double(score_flops_total) / double(fp.flops.total()));
  return 0;
}
