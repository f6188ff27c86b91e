// ssm/mamba_model.h: the Mamba language model (Hugging Face MambaForCausalLM).
//
// Dimension letters as in ssm/mamba_mixer.h (B, L, D, Di, N, R, K, V).
//
//   h_0   = embeddings[ids]                       (B, L, D)
//   h_ℓ+1 = h_ℓ + mixer_ℓ(RMSNorm_ℓ(h_ℓ))          ℓ = 0 .. num_hidden_layers−1
//   logits = RMSNorm_f(h) · Wᵀ                     (B, L, V), W = embeddings (tied) or lm_head
//
// Parameter names are Hugging Face's (backbone.embeddings.weight,
// backbone.layers.ℓ.norm.weight, backbone.layers.ℓ.mixer.in_proj.weight, ...,
// backbone.norm_f.weight, lm_head.weight when untied), so a checkpoint directory
// (config.json + model.safetensors) moves between simba and transformers as is.
#pragma once

#include <map>
#include <memory>
#include <string>
#include <vector>

#include "nn/embedding.h"
#include "nn/model_weights.h"
#include "nn/module.h"
#include "nn/rmsnorm.h"
#include "ssm/mamba_config.h"
#include "ssm/mamba_mixer.h"

namespace simba {

class MambaBackbone : public Module {
 public:
  MambaBackbone(const MambaConfig& cfg, Generator* g, DType dtype);  // g as MambaMixer's
  std::shared_ptr<Embedding> embeddings;
  std::vector<std::shared_ptr<MambaBlock>> layers;
  std::shared_ptr<RMSNorm> norm_f;
};

class MambaLM : public Module {
 public:
  // A freshly initialised model (official mamba_ssm init, seeded).
  MambaLM(const MambaConfig& cfg, uint64_t seed, DType dtype = DType::F32);
  // Every parameter allocated with its shape and dtype, its values unspecified: for a caller
  // that fills every one (load; the trainer's bfloat16 copy). It skips the initialisation's
  // draws, most of the time a large model takes to construct.
  static std::shared_ptr<MambaLM> unset(const MambaConfig& cfg, DType dtype = DType::F32);

  // Loads `dir`/config.json and the weights, model.safetensors or sharded
  // (nn/model_weights.h; HF layout). Accepts
  // F32/F64/F16/BF16 tensors (converted to `dtype`), the original
  // `backbone.embedding.weight` spelling, and a missing lm_head.weight when
  // tied. Shapes are checked against the config; missing, unexpected and
  // non-finite tensors are errors naming them.
  static std::shared_ptr<MambaLM> load(const std::string& dir, DType dtype = DType::F32);
  // Writes config.json and the weights into `dir` (created), atomically each:
  // model.safetensors, or shards of at most `shard_bytes` of tensor data and
  // their index when the model is larger (nn/model_weights.h). Tensors keep
  // the parameters' dtype. `metadata` entries are added to the weight files'
  // __metadata__ next to {"format": "pt"} (a training run stamps its step there).
  void save(const std::string& dir, const std::map<std::string, std::string>& metadata = {},
            uint64_t shard_bytes = kDefaultShardBytes) const;
  // Copies named tensors into the parameters (the map uses HF names),
  // converting each to the parameters' dtype. Every value must be finite: a
  // NaN or Inf is an error naming the tensor, so load, simba info and --resume
  // all refuse a damaged checkpoint.
  void load_tensors(const std::map<std::string, Tensor>& tensors, const std::string& source);
  std::map<std::string, Tensor> state_tensors() const;  // HF name -> parameter data

  // ids (B, L) int64 -> logits (B, L, V). Without autograd (NoGradGuard) each layer's residual
  // add is fused with the next norm, as in step (the same values in fewer passes), and in_proj
  // is one product (ssm/mamba_mixer.cpp: equal to the recorded forward up to float rounding).
  Variable forward(const Tensor& ids) const;
  // Mean cross-entropy of the predictions at inputs (B, L) against targets (B, L) int64: the
  // training loss. The head and the loss are one node, linear_cross_entropy
  // (nn/linear_cross_entropy.h), so the (B, L, V) logits are never formed whole.
  Variable loss(const Tensor& inputs, const Tensor& targets) const;
  // Mean next-token cross-entropy: position t predicts ids[t+1] (labels are the
  // ids shifted by one, as MambaForCausalLM computes it with labels = input_ids).
  Variable loss(const Tensor& ids) const;

  // The pieces of forward, for callers that walk the layers themselves (Simba).
  Variable embed(const Tensor& ids) const;              // (B, L) -> (B, L, D)
  Variable head(const Variable& hidden) const;          // (B, L, D) -> (B, L, V), norm_f then head
  const Variable& head_weight() const;                  // (V, D)

  // Recurrent generation: one token per sequence at a time.
  std::vector<MixerState> new_state(int64_t batch) const;
  Tensor step(const Tensor& ids_t, std::vector<MixerState>& state) const;  // (B) -> logits (B, V)
  // step without the head: (B) -> the final RMSNorm's output (B, D), of which step's logits are
  // the product with head_weight()ᵀ. Every row is computed from its own id and state alone, so a
  // part of the batch (its ids and views of its rows of the state) can be stepped by itself.
  Tensor step_hidden(const Tensor& ids_t, std::vector<MixerState>& state) const;

  const MambaConfig& config() const { return cfg_; }
  const MambaBackbone& backbone() const { return *backbone_; }

 private:
  struct Unset {};
  MambaLM(const MambaConfig& cfg, Unset, DType dtype);
  // What both constructors do: the parameters, drawn from g, or left unset when g is null.
  void build(Generator* g, DType dtype);

  MambaConfig cfg_;
  std::shared_ptr<MambaBackbone> backbone_;
  Variable lm_head_;  // untied only
};

}  // namespace simba
