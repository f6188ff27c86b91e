#include "ssm/mamba_model.h"

#include <algorithm>
#include <cmath>
#include <set>

#include "autograd/ops.h"
#include "nn/linear.h"
#include "nn/linear_cross_entropy.h"
#include "nn/model_weights.h"
#include "tensor/cuda_device.h"
#include "tensor/file_io.h"

namespace simba {

namespace {

// The flat index of the first NaN or ±Inf of a tensor (an int64 one has none), or -1. Runs on
// the host (a tensor on a GPU is copied first): it checks weights once, when they are loaded.
int64_t first_non_finite(const Tensor& t) {
  const Tensor c = t.to(cpu()).contiguous();
  return SIMBA_DISPATCH_ALL(c.dtype(), "first_non_finite", [&]() -> int64_t {
    const scalar_t* p = c.numel() ? c.data<scalar_t>() : nullptr;
    for (int64_t i = 0; i < c.numel(); ++i)
      if (!std::isfinite(static_cast<double>(p[i]))) return i;
    return -1;
  });
}

// Runs the layers of bb on the residual stream h (contiguous, updated in place) without
// autograd, each layer's residual add fused with the next norm (add_rms_norm_: one launch and
// one pass over h where the block's add and the following norm were two, the same values as
// h = layer(h) for every layer). mixer(l, normed) is layer l's mixer output for its normed
// input. Returns norm_f of the final stream. bb has at least one layer (MambaConfig).
template <class F>
Tensor residual_stream(const MambaBackbone& bb, Tensor& h, F&& mixer) {
  const auto& layers = bb.layers;
  Tensor normed = layers[0]->norm->forward(Variable(h)).data();
  for (size_t l = 0; l < layers.size(); ++l) {
    const Tensor out = mixer(l, normed);
    const RMSNorm& next = l + 1 < layers.size() ? *layers[l + 1]->norm : *bb.norm_f;
    normed = add_rms_norm_(h, out, next.weight.data(), next.eps);
  }
  return normed;
}

}  // namespace

MambaBackbone::MambaBackbone(const MambaConfig& cfg, Generator* g, DType dtype) {
  embeddings = register_module("embeddings", std::make_shared<Embedding>(cfg.vocab_size, cfg.hidden_size, g, dtype));
  // Official init: embeddings ~ N(0, 0.02) (mixer_seq_simple._init_weights).
  if (g) normal_(embeddings->weight.data(), *g, 0.0, 0.02);
  for (int64_t l = 0; l < cfg.num_hidden_layers; ++l)
    layers.push_back(register_module("layers." + std::to_string(l), std::make_shared<MambaBlock>(cfg, g, dtype)));
  norm_f = register_module("norm_f", std::make_shared<RMSNorm>(cfg.hidden_size, cfg.layer_norm_epsilon, dtype));
}

MambaLM::MambaLM(const MambaConfig& cfg, uint64_t seed, DType dtype) : cfg_(cfg) {
  Generator g(seed);
  build(&g, dtype);
}

MambaLM::MambaLM(const MambaConfig& cfg, Unset, DType dtype) : cfg_(cfg) { build(nullptr, dtype); }

std::shared_ptr<MambaLM> MambaLM::unset(const MambaConfig& cfg, DType dtype) {
  return std::shared_ptr<MambaLM>(new MambaLM(cfg, Unset{}, dtype));
}

void MambaLM::build(Generator* g, DType dtype) {
  cfg_.validate("MambaLM");
  backbone_ = register_module("backbone", std::make_shared<MambaBackbone>(cfg_, g, dtype));
  if (!cfg_.tie_word_embeddings) {
    Tensor w = Tensor::empty({cfg_.vocab_size, cfg_.hidden_size}, dtype);
    if (g) normal_(w, *g, 0.0, 0.02);
    lm_head_ = register_parameter("lm_head.weight", w);
  }
}

const Variable& MambaLM::head_weight() const {
  return cfg_.tie_word_embeddings ? backbone_->embeddings->weight : lm_head_;
}

Variable MambaLM::embed(const Tensor& ids) const {
  SIMBA_CHECK(ids.dtype() == DType::I64 && ids.dim() == 2,
              "MambaLM: expected int64 token ids (B, L), got " << dtype_name(ids.dtype()) << " " << shape_str(ids.shape()));
  return backbone_->embeddings->forward(ids);
}

Variable MambaLM::head(const Variable& hidden) const {
  return linear(backbone_->norm_f->forward(hidden), head_weight(), Variable());
}

Variable MambaLM::forward(const Tensor& ids) const {
  if (!grad_enabled()) {  // inference: the residual adds fused with the norms
    Tensor h = embed(ids).data().contiguous();  // (B, L, D)
    const Tensor normed = residual_stream(*backbone_, h, [&](size_t l, const Tensor& x) {
      return backbone_->layers[l]->mixer->forward(Variable(x)).data();
    });
    return linear(Variable(normed), head_weight(), Variable());  // (B, L, V)
  }
  Variable h = embed(ids);
  for (const auto& layer : backbone_->layers) h = layer->forward(h);
  return head(h);
}

Variable MambaLM::loss(const Tensor& inputs, const Tensor& targets) const {
  SIMBA_CHECK(targets.shape() == inputs.shape(), "MambaLM::loss: targets of shape " << shape_str(targets.shape())
                                                     << " for inputs of shape " << shape_str(inputs.shape()));
  Variable h = embed(inputs);
  for (const auto& layer : backbone_->layers) h = layer->forward(h);
  return linear_cross_entropy(backbone_->norm_f->forward(h), head_weight(), targets);
}

Variable MambaLM::loss(const Tensor& ids) const {
  SIMBA_CHECK(ids.dim() == 2 && ids.size(1) >= 2,
              "MambaLM::loss: need (B, L) ids with L >= 2, got " << shape_str(ids.shape()));
  const int64_t L = ids.size(1);
  return loss(ids.narrow(1, 0, L - 1), ids.narrow(1, 1, L - 1).contiguous());
}

std::vector<MixerState> MambaLM::new_state(int64_t batch) const {
  std::vector<MixerState> s;
  for (const auto& layer : backbone_->layers) s.push_back(layer->mixer->new_state(batch));
  return s;
}

Tensor MambaLM::step(const Tensor& ids_t, std::vector<MixerState>& state) const {
  NoGradGuard no_grad;
  return linear(Variable(step_hidden(ids_t, state)), head_weight(), Variable()).data();  // (B, V)
}

Tensor MambaLM::step_hidden(const Tensor& ids_t, std::vector<MixerState>& state) const {
  NoGradGuard no_grad;
  SIMBA_CHECK(ids_t.dim() == 1, "MambaLM::step: expected ids (B,), got " << shape_str(ids_t.shape()));
  SIMBA_CHECK(state.size() == backbone_->layers.size(),
              "MambaLM::step: state has " << state.size() << " layers, model has " << backbone_->layers.size());
  // The same values as h = layer->step(h, state) for every layer, then norm_f.
  Tensor h = embed(ids_t.unsqueeze(1)).data().squeeze(1).contiguous();  // (B, D)
  // Decoding reads every weight once a token, each product's from DRAM into a kernel of a few
  // microseconds that waits on it (bench/RESULTS.md). On a GPU the weights of the next
  // kPrefetchLayers layers are asked of the L2 cache one layer ahead of their use, one node for
  // the group (cuda_prefetch_l2, which acts while DecodeStep records its graph): each node
  // delays the chain beside it by about a launch, so a node a layer cost more than it saved. A
  // group is 22.6 MB in bfloat16 at the 130M shape, under half of the H100's and H200's 50 MB L2
  // (float32's 45 MB moved its decode rows by under 1 %). With the batch in parts
  // (DecodeStep) part 0 asks for every part.
  constexpr size_t kPrefetchLayers = 3;
  const auto& layers = backbone_->layers;
  const bool prefetch = !device().is_cpu() && cuda_branch() == 0;
  const auto prefetch_layers = [&](size_t first, size_t count) {
    std::vector<std::pair<const void*, size_t>> ranges;
    for (size_t l = first; l < std::min(layers.size(), first + count); ++l)
      for (const Variable& p : layers[l]->parameters())
        ranges.emplace_back(p.data().raw_data(), size_t(p.data().numel()) * dtype_size(p.data().dtype()));
    if (!ranges.empty()) cuda_prefetch_l2(device().index, ranges);
  };
  if (prefetch) prefetch_layers(0, 1);
  return residual_stream(*backbone_, h, [&](size_t l, const Tensor& x) {
    if (prefetch && l % kPrefetchLayers == 0) prefetch_layers(l + 1, kPrefetchLayers);
    return backbone_->layers[l]->mixer->step(x, state[l]);
  });
}

std::map<std::string, Tensor> MambaLM::state_tensors() const {
  std::map<std::string, Tensor> out;
  for (auto& [name, p] : named_parameters()) out[name] = p.data();
  return out;
}

void MambaLM::load_tensors(const std::map<std::string, Tensor>& tensors, const std::string& source) {
  std::set<std::string> used;
  for (auto& [name, p] : named_parameters()) {
    auto it = tensors.find(name);
    // The original state-spaces checkpoints spell the embedding in the singular.
    if (it == tensors.end() && name == "backbone.embeddings.weight") it = tensors.find("backbone.embedding.weight");
    SIMBA_CHECK_HINT(it != tensors.end(), source << ": missing tensor '" << name << "'",
                     "the file must hold every parameter of the config's model (HF MambaForCausalLM names)");
    SIMBA_CHECK(it->second.shape() == p.shape(), source << ": tensor '" << it->first << "' has shape "
                                                        << shape_str(it->second.shape()) << ", the config needs "
                                                        << shape_str(p.shape()));
    SIMBA_CHECK(is_floating(it->second.dtype()),
                source << ": tensor '" << it->first << "' is " << dtype_name(it->second.dtype()) << ", expected floats");
    // A NaN or Inf weight makes every output it touches NaN: refuse it here,
    // once for every command that loads weights, instead of reporting a NaN
    // loss or sampling from NaN logits.
    const int64_t bad = first_non_finite(it->second);
    SIMBA_CHECK_HINT(bad < 0, source << ": tensor '" << it->first << "' " << shape_str(it->second.shape())
                                     << " holds a non-finite value (" << it->second.flatten().select(0, bad).item()
                                     << ") at flat index " << bad,
                     "the checkpoint is damaged or comes from a diverged run; use an earlier checkpoint");
    // The file's dtype need not be the model's (fp16 and bf16 checkpoints, or float64 ones into
    // a float32 model): copy_ converts, exactly when widening, rounding once when narrowing.
    p.data().copy_(it->second);
    used.insert(it->first);
  }
  for (auto& [name, t] : tensors) {
    if (used.count(name)) continue;
    // A tied head may still be stored (transformers sometimes writes it); it is the embedding.
    if (name == "lm_head.weight" && cfg_.tie_word_embeddings) continue;
    SIMBA_FAIL_HINT(source << ": unexpected tensor '" << name << "' " << shape_str(t.shape()),
                    "the checkpoint does not match config.json (another architecture or layer count?)");
  }
}

std::shared_ptr<MambaLM> MambaLM::load(const std::string& dir, DType dtype) {
  MambaConfig cfg = MambaConfig::from_json_file(dir + "/config.json");
  auto model = MambaLM::unset(cfg, dtype);
  const TensorMap tensors = load_model_weights(dir);
  model->load_tensors(tensors, find_weights_file(dir));
  return model;
}

void MambaLM::save(const std::string& dir, const std::map<std::string, std::string>& metadata,
                   uint64_t shard_bytes) const {
  make_dirs(dir);
  // Weights first, config last: a directory whose config.json is new always
  // has weights at least as new. Each tensor is stored in its parameter's
  // dtype (a bfloat16 model saves bfloat16, as transformers does).
  TensorMap tensors;
  for (auto& [name, t] : state_tensors()) tensors[name] = t.to(cpu());
  SafetensorsMetadata all = metadata;
  all["format"] = "pt";  // what transformers' loader requires
  save_model_weights(dir, tensors, all, shard_bytes);
  cfg_.save(dir + "/config.json");
}

}  // namespace simba
