// ssm/decode_step.h: one recurrent step of MambaLM for a fixed batch, set up once and run once
// per generated token.
//
// Dimension letters as in ssm/mamba_mixer.h (B, V).
//
// On a GPU the step is recorded as a CUDA graph when the object is made (CudaGraph,
// tensor/cuda_device.h), so a run() is one launch instead of about thirteen kernel launches a
// layer, which at the 130M shape and batch 1 cost more than the kernels themselves
// (bench/RESULTS.md). On the CPU run() calls MambaLM::step. Either way run() computes exactly
// what MambaLM::step computes on that device, with the same kernels in the same order.
//
// The graph keeps the addresses of `ids`, `logits` and every tensor of `state`: write into them
// (copy_, fill_, reset()), never assign new tensors to them. The model's weights must not move
// (to(), a new dtype) while the object lives.
#pragma once

#include <cstdint>
#include <memory>
#include <vector>

#include "ssm/mamba_model.h"
#include "tensor/cuda_device.h"

namespace simba {

class DecodeStep {
 public:
  DecodeStep(const MambaLM& model, int64_t batch);

  // Zeroes the recurrent state (a new sequence), in place.
  void reset();
  // logits = MambaLM::step(ids, state), state updated in place.
  void run();

  Tensor ids;                     // (B) int64 on the model's device: the tokens run() feeds
  Tensor logits;                  // (B, V): what run() produced
  std::vector<MixerState> state;  // the recurrent state of every layer

 private:
  void step();  // the recorded work

  const MambaLM& model_;
  std::unique_ptr<CudaGraph> graph_;  // null on the CPU
};

}  // namespace simba
