// train/sampler.cpp: greedy, temperature and top-k sampling.
#include "train/sampler.h"

#include <algorithm>
#include <cmath>
#include <numeric>

#include "tensor/error.h"

namespace simba {

namespace {

// logits (V) as doubles, after checking the rank, the size and the values.
std::vector<double> logit_values(const char* op, const Tensor& logits) {
  SIMBA_CHECK(logits.dim() == 1 && logits.numel() >= 1,
              op << ": expected logits (V) with V >= 1, got " << shape_str(logits.shape()));
  SIMBA_CHECK(is_floating(logits.dtype()), op << ": logits must be float32 or float64, got " << dtype_name(logits.dtype()));
  std::vector<double> v = logits.to_vector();
  for (size_t i = 0; i < v.size(); ++i)
    SIMBA_CHECK_HINT(!std::isnan(v[i]) && v[i] != INFINITY,
                     op << ": logit " << i << " of " << v.size() << " is " << v[i] << ", expected a number or -inf",
                     "the model produced NaN or +inf; check the checkpoint (simba info) and its training loss");
  SIMBA_CHECK(*std::max_element(v.begin(), v.end()) > -INFINITY,
              op << ": every one of the " << v.size() << " logits is -inf; there is no token to choose");
  return v;
}

int64_t argmax_of(const std::vector<double>& v) {
  return std::max_element(v.begin(), v.end()) - v.begin();  // the first maximum
}

}  // namespace

void check_sampling_options(const SamplingOptions& opt) {
  SIMBA_CHECK_HINT(std::isfinite(opt.temperature) && opt.temperature >= 0.0,
                   "sampling: --temperature must be a finite number >= 0, got " << opt.temperature,
                   "0 is greedy decoding, 1 samples from the model's distribution");
  SIMBA_CHECK_HINT(opt.top_k >= 0, "sampling: --top-k must be >= 0, got " << opt.top_k,
                   "0 keeps every token");
}

std::vector<double> sampling_distribution(const Tensor& logits, const SamplingOptions& opt) {
  check_sampling_options(opt);
  const std::vector<double> v = logit_values("sampling_distribution", logits);
  const int64_t V = static_cast<int64_t>(v.size());
  std::vector<double> p(v.size(), 0.0);
  if (opt.temperature == 0.0) {
    p[argmax_of(v)] = 1.0;
    return p;
  }
  // The kept ids: the k largest logits, larger first, the lower id first on ties.
  std::vector<int64_t> kept(v.size());
  std::iota(kept.begin(), kept.end(), 0);
  const int64_t k = (opt.top_k == 0 || opt.top_k > V) ? V : opt.top_k;
  std::nth_element(kept.begin(), kept.begin() + (k - 1), kept.end(),
                   [&](int64_t a, int64_t b) { return v[a] > v[b] || (v[a] == v[b] && a < b); });
  kept.resize(static_cast<size_t>(k));
  // softmax(v / T) over the kept ids; subtracting the max keeps every exp() <= 1
  // however small T is (T -> 0 approaches the one-hot of greedy decoding).
  double m = -INFINITY;
  for (int64_t i : kept) m = std::max(m, v[i]);
  double total = 0.0;
  for (int64_t i : kept) {
    p[i] = std::exp((v[i] - m) / opt.temperature);
    total += p[i];
  }
  for (int64_t i : kept) p[i] /= total;
  return p;
}

int64_t argmax_token(const Tensor& logits) { return argmax_of(logit_values("argmax_token", logits)); }

int64_t sample_token(const Tensor& logits, const SamplingOptions& opt, Generator& g) {
  check_sampling_options(opt);
  if (opt.temperature == 0.0) return argmax_token(logits);
  const std::vector<double> p = sampling_distribution(logits, opt);
  // Inverse CDF: the first id whose cumulative probability exceeds u. If
  // rounding leaves the total just below u, the last id with p > 0 is taken.
  const double u = g.uniform();
  double cumulative = 0.0;
  int64_t last = -1;
  for (size_t i = 0; i < p.size(); ++i) {
    if (p[i] == 0.0) continue;
    cumulative += p[i];
    last = static_cast<int64_t>(i);
    if (u < cumulative) return last;
  }
  return last;
}

}  // namespace simba
