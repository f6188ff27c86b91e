// tests/model_util.h: tiny models and random inputs shared by the model tests.
#pragma once

#include <vector>

#include "autograd/ops.h"
#include "nn/linear.h"
#include "nn/module.h"
#include "ssm/mamba_config.h"
#include "ssm/mamba_model.h"
#include "tensor/random.h"
#include "tensor/shape_ops.h"

namespace simba {

// A model small enough for finite differences over every parameter
// (V 11, D 6, Di 12, N 3, K 3, R 2), with the out_proj rescale on.
inline MambaConfig tiny_config(int64_t layers = 2) {
  MambaConfig c;
  c.vocab_size = 11;
  c.hidden_size = 6;
  c.state_size = 3;
  c.num_hidden_layers = layers;
  c.expand = 2;
  c.conv_kernel = 3;
  c.time_step_rank = 2;
  c.rescale_prenorm_residual = true;
  return c;
}

// (B, L) int64 ids uniform in [0, V).
inline Tensor random_ids(int64_t B, int64_t L, int64_t V, uint64_t seed) {
  Generator g(seed);
  std::vector<int64_t> v(B * L);
  for (auto& x : v) x = g.randint(0, V);
  return Tensor::from_ints({B, L}, v);
}

// Moves every parameter away from its structured init (ones, zeros, log(n))
// by N(0, scale²) noise, so that no gradient is accidentally zero or symmetric.
inline void jitter(Module& m, uint64_t seed, double scale) {
  Generator g(seed);
  NoGradGuard ng;
  for (auto& [name, p] : m.named_parameters())
    p.data().copy_(add(p.data(), affine(randn(p.shape(), g, p.dtype()), scale, 0.0)));
}

// DecodeStep's step in P parts (ssm/decode_step.h) spelled out: the rows [B·p/P, B·(p+1)/P) of
// ids (B) stepped by MambaLM::step_hidden on states[p], that part's own state (new_state of
// its rows), then the head over all B rows at once. P = states.size().
inline Tensor step_in_parts(const MambaLM& model, const Tensor& ids, std::vector<std::vector<MixerState>>& states) {
  const int64_t B = ids.size(0), P = int64_t(states.size());
  std::vector<Tensor> hidden;
  for (int64_t p = 0; p < P; ++p)
    hidden.push_back(model.step_hidden(ids.narrow(0, B * p / P, B * (p + 1) / P - B * p / P), states[p]));
  NoGradGuard ng;
  return linear(Variable(cat(hidden, 0)), model.head_weight(), Variable()).data();
}

}  // namespace simba
