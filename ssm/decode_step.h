// ssm/decode_step.h: one recurrent step of MambaLM for a fixed batch, set up once and run once
// per generated token.
//
// Dimension letters as in ssm/mamba_mixer.h (B, D, V).
//
// On a GPU the step is recorded as a CUDA graph when the object is made (CudaGraph,
// tensor/cuda_device.h), so a run() is one launch instead of several a layer (add + RMSNorm,
// in_proj, the mixer step of ssm/mixer_step.h, out_proj), whose launch costs at the 130M shape
// and batch 1 exceeded the kernels' own time (bench/RESULTS.md). While it records,
// MambaLM::step_hidden adds nodes beside the chain that fetch the next layers' weights into the
// L2 cache (cuda_prefetch_l2). On the CPU run() calls the same functions directly.
//
// Parts. The batch may be cut into P parts of consecutive rows (as equal as can be), each
// stepped through the layers by itself (MambaLM::step_hidden on its ids and on views of its
// rows of the state), the head then applied to the whole batch at once. Every row's values
// depend on its own token and state only, so the parts are independent; on a GPU they are
// recorded as branches of the graph (cuda_branches), which may run at the same time. A decode
// step is a chain of small kernels, each waiting on its own memory round trips with much of
// the GPU idle (bench/RESULTS.md): two chains side by side fill those gaps with each other's
// work. Each part's products read the layer's weights again (from the L2 cache when the parts
// run side by side); the head, whose weight is larger than that cache, runs once.
//
// run() computes exactly what, for each part, MambaLM::step_hidden computes on that device on
// the part's rows, followed by the head over all rows: with one part, exactly MambaLM::step
// (the same kernels in the same order). With several, a part's products have fewer rows than
// the whole batch's, and cuBLAS may pick another algorithm for them: the logits can differ from
// MambaLM::step on the whole batch by float rounding.
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
  // parts: 1 to min(batch, kMaxCudaBranches), or 0 for default_parts(batch, device, dtype)
  // (dtype: the model's, that of its head weight).
  DecodeStep(const MambaLM& model, int64_t batch, int parts = 0);

  // The parts a batch is cut into unless the caller chooses: two for a float32 model on a GPU
  // from kMinRowsToSplit rows on, one otherwise. Float32 products of 5 to 32 rows run on simba's
  // row tiles, whose time grows with the rows, so two chains of half the rows overlap their
  // latencies (at batch 32 two parts were faster than one, four slower). bfloat16 products of
  // more than 4 rows run on cuBLAS's tensor-core tiles, which take about as long for 16 rows as
  // for 32, so two parts double the products' work: one part was faster at batch 32
  // (bench/RESULTS.md). The CPU's kernels already use every core.
  static constexpr int64_t kMinRowsToSplit = 16;
  static int default_parts(int64_t batch, Device device, DType dtype);

  // Zeroes the recurrent state (a new sequence), in place.
  void reset();
  // logits = the step on ids and state (the file comment), state updated in place.
  void run();
  int parts() const { return int(rows_.size()) - 1; }

  Tensor ids;                     // (B) int64 on the model's device: the tokens run() feeds
  Tensor logits;                  // (B, V): what run() produced
  std::vector<MixerState> state;  // the recurrent state of every layer

 private:
  void step();  // the recorded work

  const MambaLM& model_;
  std::vector<int64_t> rows_;                       // part p is rows [rows_[p], rows_[p + 1])
  std::vector<std::vector<MixerState>> part_state_;  // views of `state`, a part's rows
  Tensor hidden_;                                    // (B, D): the parts' step_hidden (P > 1)
  std::unique_ptr<CudaGraph> graph_;                 // null on the CPU
};

}  // namespace simba
