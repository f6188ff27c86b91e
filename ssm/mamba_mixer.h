// ssm/mamba_mixer.h: the Mamba-1 mixer (selective SSM block) and its residual block.
//
// Glossary of dimension letters, used in every shape comment of simba:
//   B   batch size                      L   sequence length (tokens a layer processes)
//   D   d_model, residual stream width  Di  inner channels = expand · D
//   N   SSM state size per channel      R   rank of the Δ projection (time_step_rank)
//   K   causal conv width               V   vocabulary size (embedding rows)
//
// The mixer, exactly as state-spaces/mamba's Mamba.forward (mamba_simple.py) and
// transformers' MambaMixer.slow_forward compute it:
//   xz          = in_proj(h)                              (B, L, 2Di)   x = xz[..., :Di], z = xz[..., Di:]
//   u           = SiLU(conv1d(x))                         (B, L, Di)    causal depthwise, width K
//   [δ, Bm, Cm] = x_proj(u)                               (B, L, R+2N)
//   Δ           = softplus(dt_proj(δ))                    (B, L, Di)    dt_proj has a bias
//   A           = −exp(A_log)                             (Di, N)
//   y           = scan(u, Δ, A, Bm, Cm) + D·u             (B, L, Di)    ssm/selective_scan.h
//   out         = out_proj(y · SiLU(z))                   (B, L, D)
// The block is h + mixer(RMSNorm(h)) (the official Add→Norm→Mixer order is the
// same computation, reorganised to fuse add and norm).
#pragma once

#include <memory>

#include "nn/causal_conv1d.h"
#include "nn/linear.h"
#include "nn/module.h"
#include "nn/rmsnorm.h"
#include "ssm/mamba_config.h"
#include "tensor/random.h"

namespace simba {

// What a mixer computed internally for the tokens it processed, kept when the
// caller asks (Simba's token score reads the layer's own Δ, A, B, C and u).
struct MixerTrace {
  Tensor u;      // (B, L, Di) SSM input after conv and SiLU
  Tensor delta;  // (B, L, Di) Δ after softplus
  Tensor A;      // (Di, N)
  Tensor Bm;     // (B, L, N)
  Tensor Cm;     // (B, L, N)
};

// Recurrent state of one mixer for step-by-step generation (HF MambaCache layout).
struct MixerState {
  Tensor conv;  // (B, Di, K) last K inputs of the conv, newest in column K−1
  Tensor ssm;   // (B, Di, N) h_t
};

class MambaMixer : public Module {
 public:
  // Official initialisation (mamba_ssm's Mamba.__init__), drawn from g in a fixed order;
  // g null: the values are left unset, for a caller that fills them.
  MambaMixer(const MambaConfig& cfg, Generator* g, DType dtype = DType::F32);

  // hidden (B, L, D) -> (B, L, D). With `trace`, also returns the SSM inputs.
  Variable forward(const Variable& hidden, MixerTrace* trace = nullptr) const;
  // One token per sequence: hidden (B, D) -> (B, D), updating `state`. No autograd.
  Tensor step(const Tensor& hidden, MixerState& state) const;
  MixerState new_state(int64_t batch) const;

  int64_t D, Di, N, R, K;
  std::shared_ptr<Linear> in_proj;      // D -> 2Di
  std::shared_ptr<CausalConv1d> conv1d; // (Di, 1, K)
  std::shared_ptr<Linear> x_proj;       // Di -> R + 2N, no bias
  std::shared_ptr<Linear> dt_proj;      // R -> Di, with bias
  Variable A_log;                       // (Di, N)
  Variable Dskip;                       // (Di), HF name "D"
  std::shared_ptr<Linear> out_proj;     // Di -> D
};

class MambaBlock : public Module {
 public:
  MambaBlock(const MambaConfig& cfg, Generator* g, DType dtype = DType::F32);  // g as MambaMixer's
  Variable forward(const Variable& hidden, MixerTrace* trace = nullptr) const;  // h + mixer(norm(h))
  Tensor step(const Tensor& hidden, MixerState& state) const;

  std::shared_ptr<RMSNorm> norm;
  std::shared_ptr<MambaMixer> mixer;
};

}  // namespace simba
