// train/sampler.h: choosing the next token from a model's logits.
//
// Sampling draws from softmax(logits / T) (temperature T > 0), optionally
// restricted to the k largest logits (top-k) and renormalised over them.
// T = 0 is greedy decoding: the argmax, the first one on ties. T < 1 sharpens
// the distribution towards the argmax, T > 1 flattens it. Draws use a seeded
// Generator (inverse-CDF with one uniform per token), so a seed fixes the
// whole generated text.
#pragma once

#include <cstdint>
#include <vector>

#include "tensor/random.h"
#include "tensor/tensor.h"

namespace simba {

struct SamplingOptions {
  double temperature = 1.0;  // T; 0 = greedy (argmax)
  int64_t top_k = 0;         // keep the k largest logits; 0 (or >= V) keeps all
};

// Throws unless temperature is finite and >= 0 and top_k >= 0.
void check_sampling_options(const SamplingOptions& opt);

// The probabilities (V) that sample_token draws from, for logits (V) float32
// or float64: softmax(logits / T) over the top_k largest logits (ties at the
// cut broken towards the lower id), 0 elsewhere; one-hot at the argmax when
// T = 0. A logit may be -inf (a masked token) but not NaN or +inf, and some
// logit must be finite.
std::vector<double> sampling_distribution(const Tensor& logits, const SamplingOptions& opt);

// The argmax of logits (V): the first id on ties.
int64_t argmax_token(const Tensor& logits);

// One token id in [0, V) drawn from sampling_distribution(logits, opt).
// Greedy decoding draws nothing from `g`; sampling draws one uniform.
int64_t sample_token(const Tensor& logits, const SamplingOptions& opt, Generator& g);

}  // namespace simba
