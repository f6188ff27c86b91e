// ssm/mamba_config.h: the hyperparameters of a Mamba-1 language model, in the
// Hugging Face `MambaConfig` vocabulary (config.json of the mamba-*-hf repos).
//
// Members carry the HF field names and HF defaults, so a config.json written
// by transformers maps onto this struct key for key, and save() writes one
// that `MambaForCausalLM.from_pretrained` reads back. Dimension letters as in
// the rest of simba: V vocab, D d_model, Di = E·D inner channels, N state
// size, R dt rank, K conv kernel.
//
// Loading also understands the original mamba_ssm config (state-spaces/
// mamba-130m: d_model, n_layer, ssm_cfg{d_state, ...}): those names are
// aliases of the HF ones (listed per field below as "alias:"). When a file
// carries both spellings (mamba-130m-hf does), they must agree. A pure
// mamba_ssm config (d_model but no hidden_size) gives the tokenizer's vocab
// size, which mamba_ssm pads up to pad_vocab_size_multiple for the embedding
// (50277 -> 50280); from_json applies the same padding there. HF configs give
// the embedding size itself and are never padded.
//
// Anything simba cannot honour (another activation, LayerNorm instead of
// RMSNorm, Mamba-2 or attention layers, non-positive sizes, ...) is refused
// with an error naming the config and the key. Keys we do not know are
// ignored, since HF configs carry many that do not affect the model
// (use_cache, torch_dtype, transformers_version, ...); keys we do know must
// have the right JSON type.
//
// Sizes are bounded before anything is allocated, in two steps, so that an
// absurd config is refused at once with the name of the field instead of
// overflowing 64 bits, allocating for minutes or running out of memory:
//  1. Hard caps per field (kMax* below), far above every published Mamba
//     model (mamba-2.8b: V 50280, D 2560, 64 layers, N 16, E 2, K 4, R 160)
//     and low enough that every derived size (Di, parameter counts, bytes)
//     fits in int64 with room to spare.
//  2. A memory budget: the weights alone, as float32 (4 bytes per parameter,
//     the least any command needs; training needs about four times that for
//     gradients and AdamW moments), must fit in the host's physical memory.
// Derived sizes are computed with tensor/checked_math.h all the same.
#pragma once

#include <cstdint>
#include <optional>
#include <string>

#include <nlohmann/json_fwd.hpp>

namespace simba {

struct MambaConfig {
  // Hard caps of step 1 above, inclusive.
  static constexpr int64_t kMaxVocabSize = int64_t(1) << 24;    // 16.7M rows; large tokenizers have ~256k
  static constexpr int64_t kMaxHiddenSize = int64_t(1) << 16;   // 65536
  static constexpr int64_t kMaxStateSize = int64_t(1) << 12;    // 4096
  static constexpr int64_t kMaxLayers = int64_t(1) << 12;       // 4096
  static constexpr int64_t kMaxExpand = int64_t(1) << 6;        // 64
  static constexpr int64_t kMaxConvKernel = int64_t(1) << 12;   // 4096
  static constexpr int64_t kMaxTimeStepRank = kMaxHiddenSize;  // R is normally ceil(D / 16)
  static constexpr int64_t kMaxPadVocabMultiple = kMaxVocabSize;

  // --- sizes ---
  int64_t vocab_size = 50280;     // V: rows of the embedding and of lm_head (already padded)
  int64_t hidden_size = 768;      // D: width of the residual stream. alias: d_model
  int64_t state_size = 16;        // N: SSM state per inner channel. alias: ssm_cfg.d_state
  int64_t num_hidden_layers = 32; // number of Mamba blocks. alias: n_layer
  int64_t expand = 2;             // E: Di = E·D (an integer, as in HF). alias: ssm_cfg.expand
  int64_t conv_kernel = 4;        // K: depthwise causal conv width. alias: ssm_cfg.d_conv
  // R: rank of the Δ projection (x_proj -> dt_proj). JSON may say "auto",
  // which means ceil(D / 16); here it is always the resolved number.
  // alias: ssm_cfg.dt_rank
  int64_t time_step_rank = 48;

  // --- structure ---
  bool use_bias = false;             // biases on in_proj and out_proj. alias: ssm_cfg.bias
  bool use_conv_bias = true;         // bias on conv1d. alias: ssm_cfg.conv_bias
  bool tie_word_embeddings = true;   // lm_head.weight is the embedding matrix. alias: tie_embeddings
  std::string hidden_act = "silu";   // gate and conv activation; only "silu" exists in Mamba-1
  double layer_norm_epsilon = 1e-5;  // ε of every RMSNorm (HF's class default 1e-6 is not used)
  bool residual_in_fp32 = true;      // keep the residual stream in fp32 (simba always computes in fp32 or fp64)
  int64_t pad_vocab_size_multiple = 8;  // legacy mamba_ssm: embedding rows rounded up to this

  // --- initialisation (official mamba_ssm init; HF names) ---
  double initializer_range = 0.1;         // std of HF's from-scratch Linear init
  // Scale out_proj's init by 1/sqrt(num_hidden_layers). Read from a config
  // that initialises a new model; to_json always writes false (see there).
  bool rescale_prenorm_residual = false;
  double time_step_scale = 1.0;           // dt_proj weight init std = R^-0.5 · scale. alias: ssm_cfg.dt_scale
  double time_step_min = 0.001;           // Δ at init drawn log-uniform in [min, max]. alias: ssm_cfg.dt_min
  double time_step_max = 0.1;             // alias: ssm_cfg.dt_max
  double time_step_floor = 1e-4;          // Δ at init clamped below to this. alias: ssm_cfg.dt_init_floor
  std::string time_step_init_scheme = "random";  // dt_proj weight init: "random" (uniform) or "constant". alias: ssm_cfg.dt_init

  // --- special tokens (JSON null = none) ---
  std::optional<int64_t> bos_token_id = 0;
  std::optional<int64_t> eos_token_id = 0;
  std::optional<int64_t> pad_token_id = 0;

  int64_t intermediate_size() const;                         // Di = E·D, overflow-checked
  static int64_t auto_time_step_rank(int64_t hidden_size);   // ceil(D / 16)
  // Parameters of MambaLM(*this) (the lm_head only when untied), computed
  // from the sizes with overflow checks; needs no allocation.
  int64_t num_parameters() const;

  // Parses and validates; `source_name` (normally the file path) names the
  // config in every error message.
  static MambaConfig from_json_file(const std::string& path);
  static MambaConfig from_json(const nlohmann::json& j, const std::string& source_name);

  // HF-style JSON: every field above under its HF name, plus the derived
  // intermediate_size, "model_type": "mamba" and "architectures":
  // ["MambaForCausalLM"], so transformers can load the directory. It
  // describes a model whose weights exist, so no option in it makes
  // transformers change loaded weights (rescale_prenorm_residual is false).
  nlohmann::json to_json() const;
  void save(const std::string& path) const;  // pretty-printed, atomic

  // Throws if any field is out of range (including the caps and the memory
  // budget above) or names something simba does not implement. Called by
  // from_json, save and the MambaLM constructor; call it after building a
  // config by hand.
  void validate(const std::string& source_name) const;
};

}  // namespace simba
