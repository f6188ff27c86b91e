// ssm/mamba_config.cpp: MambaConfig <-> config.json (HF names, mamba_ssm
// aliases), with type checks and validation that name the offending key.
#include "ssm/mamba_config.h"

#include <cmath>
#include <sstream>
#include <vector>

#include <nlohmann/json.hpp>

#include "tensor/checked_math.h"
#include "tensor/error.h"
#include "tensor/file_io.h"
#include "tensor/json.h"

namespace simba {

namespace {

using json = nlohmann::json;

// One spelling of a field that is present in the file.
struct Found {
  std::string key;  // as written in messages: "d_model", "ssm_cfg.d_state"
  const json* value;
};

// Typed access to the keys of one config object, with every error prefixed
// by the config's name.
class ConfigReader {
 public:
  ConfigReader(const json& j, const std::string& source) : j_(j), where_("config '" + source + "'") {
    SIMBA_CHECK(j.is_object(), where_ << ": expected a JSON object, got " << j.type_name());
    if (j.contains("ssm_cfg")) {
      SIMBA_CHECK(j["ssm_cfg"].is_object(),
                  where_ << ": key 'ssm_cfg': expected an object, got " << describe(j["ssm_cfg"]));
    }
  }

  const std::string& where() const { return where_; }

  // The spellings of one field that the file uses, HF name first. A key
  // "ssm_cfg.x" is x inside the legacy ssm_cfg object.
  std::vector<Found> find(std::initializer_list<const char*> keys) const {
    std::vector<Found> found;
    for (const std::string key : keys) {
      const json* obj = &j_;
      std::string leaf = key;
      const size_t dot = key.find('.');
      if (dot != std::string::npos) {
        const std::string parent = key.substr(0, dot);
        if (!j_.contains(parent)) continue;
        obj = &j_[parent];
        leaf = key.substr(dot + 1);
      }
      if (obj->contains(leaf)) found.push_back({key, &(*obj)[leaf]});
    }
    return found;
  }

  // Sets `field` from whichever spellings are present (leaves the default if
  // none is); all present spellings must convert to the same value.
  template <class T, class Convert>
  void read(T& field, std::initializer_list<const char*> keys, Convert convert) const {
    const std::vector<Found> found = find(keys);
    for (size_t i = 0; i < found.size(); ++i) {
      T value = convert(found[i]);
      if (i == 0)
        field = value;
      else
        SIMBA_CHECK(value == field, where_ << ": '" << found[0].key << "' = " << found[0].value->dump()
                                           << " and '" << found[i].key << "' = " << found[i].value->dump()
                                           << " are two spellings of the same setting and must agree");
    }
  }

  int64_t as_int(const Found& f) const {
    if (!f.value->is_number_integer()) type_error(f, "an integer");
    SIMBA_CHECK(!f.value->is_number_unsigned() ||
                    f.value->get<uint64_t>() <= static_cast<uint64_t>(INT64_MAX),
                where_ << ": key '" << f.key << "' = " << f.value->dump() << " is too large");
    return f.value->get<int64_t>();
  }
  double as_double(const Found& f) const {
    if (!f.value->is_number()) type_error(f, "a number");
    return f.value->get<double>();
  }
  bool as_bool(const Found& f) const {
    if (!f.value->is_boolean()) type_error(f, "true or false");
    return f.value->get<bool>();
  }
  std::string as_string(const Found& f) const {
    if (!f.value->is_string()) type_error(f, "a string");
    return f.value->get<std::string>();
  }
  std::optional<int64_t> as_optional_int(const Found& f) const {
    if (f.value->is_null()) return std::nullopt;
    if (!f.value->is_number_integer()) type_error(f, "an integer or null");
    return as_int(f);
  }

  [[noreturn]] void type_error(const Found& f, const char* expected) const {
    SIMBA_FAIL(where_ << ": key '" << f.key << "': expected " << expected << ", got " << describe(*f.value));
  }

 private:
  static std::string describe(const json& v) { return std::string(v.type_name()) + " " + v.dump(); }

  const json& j_;
  std::string where_;
};

// mamba_ssm can build variants simba does not implement; their legacy keys
// must hold the plain Mamba-1 values.
void reject_unsupported_variants(const ConfigReader& r) {
  auto bool_of = [&](const Found& f) { return r.as_bool(f); };
  auto string_of = [&](const Found& f) { return r.as_string(f); };

  std::string model_type = "mamba";
  r.read(model_type, {"model_type"}, string_of);
  SIMBA_CHECK(model_type == "mamba", r.where() << ": model_type is '" << model_type
                                               << "'; simba implements only 'mamba' (Mamba-1)");
  std::string layer = "Mamba1";
  r.read(layer, {"ssm_cfg.layer"}, string_of);
  SIMBA_CHECK(layer == "Mamba1", r.where() << ": ssm_cfg.layer is '" << layer
                                           << "'; simba implements only 'Mamba1' blocks");
  bool rms_norm = true;
  r.read(rms_norm, {"rms_norm"}, bool_of);
  SIMBA_CHECK(rms_norm, r.where() << ": rms_norm is false (LayerNorm); simba implements only RMSNorm");
  int64_t d_intermediate = 0;
  r.read(d_intermediate, {"d_intermediate"}, [&](const Found& f) { return r.as_int(f); });
  SIMBA_CHECK(d_intermediate == 0, r.where() << ": d_intermediate is " << d_intermediate
                                             << "; simba has no MLP after the mixer (expected 0)");
  for (const Found& f : r.find({"attn_layer_idx"})) {
    if (!f.value->is_array()) r.type_error(f, "an array");
    SIMBA_CHECK(f.value->empty(), r.where() << ": attn_layer_idx is " << f.value->dump()
                                            << "; simba has no attention layers (expected [])");
  }
}

}  // namespace

// Written so that no hidden_size overflows (validate() reports the value).
int64_t MambaConfig::auto_time_step_rank(int64_t hidden_size) { return hidden_size / 16 + (hidden_size % 16 > 0); }

int64_t MambaConfig::intermediate_size() const {
  return checked_mul(expand, hidden_size, "intermediate_size = expand x hidden_size");
}

// One term per tensor of MambaLM (ssm/mamba_mixer.cpp, ssm/mamba_model.cpp).
int64_t MambaConfig::num_parameters() const {
  const int64_t D = hidden_size, Di = intermediate_size(), N = state_size, R = time_step_rank, K = conv_kernel;
  auto mul = [](int64_t a, int64_t b) { return checked_mul(a, b, "the parameter count of the config"); };
  auto add = [](int64_t a, int64_t b) { return checked_add(a, b, "the parameter count of the config"); };
  int64_t block = D;                                                            // norm
  block = add(block, add(mul(D, mul(2, Di)), use_bias ? mul(2, Di) : 0));       // in_proj
  block = add(block, add(mul(Di, K), use_conv_bias ? Di : 0));                  // conv1d
  block = add(block, mul(Di, add(R, mul(2, N))));                               // x_proj
  block = add(block, add(mul(R, Di), Di));                                      // dt_proj
  block = add(block, add(mul(Di, N), Di));                                      // A_log, D
  block = add(block, add(mul(Di, D), use_bias ? D : 0));                        // out_proj
  const int64_t embedding = mul(vocab_size, D);
  return add(add(mul(num_hidden_layers, block), add(embedding, D)), tie_word_embeddings ? 0 : embedding);
}

MambaConfig MambaConfig::from_json_file(const std::string& path) {
  return from_json(parse_json_bounded(read_file(path), "config '" + path + "'"), path);
}

MambaConfig MambaConfig::from_json(const json& j, const std::string& source_name) {
  const ConfigReader r(j, source_name);
  reject_unsupported_variants(r);

  auto int_of = [&](const Found& f) { return r.as_int(f); };
  auto double_of = [&](const Found& f) { return r.as_double(f); };
  auto bool_of = [&](const Found& f) { return r.as_bool(f); };
  auto string_of = [&](const Found& f) { return r.as_string(f); };
  auto id_of = [&](const Found& f) { return r.as_optional_int(f); };

  MambaConfig c;
  r.read(c.vocab_size, {"vocab_size"}, int_of);
  r.read(c.hidden_size, {"hidden_size", "d_model"}, int_of);
  r.read(c.state_size, {"state_size", "ssm_cfg.d_state"}, int_of);
  r.read(c.num_hidden_layers, {"num_hidden_layers", "n_layer"}, int_of);
  r.read(c.expand, {"expand", "ssm_cfg.expand"}, int_of);
  r.read(c.conv_kernel, {"conv_kernel", "ssm_cfg.d_conv"}, int_of);
  // HF's default is "auto", so an absent key resolves against this file's D.
  c.time_step_rank = auto_time_step_rank(c.hidden_size);
  r.read(c.time_step_rank, {"time_step_rank", "ssm_cfg.dt_rank"}, [&](const Found& f) {
    if (f.value->is_string() && f.value->get<std::string>() == "auto") return auto_time_step_rank(c.hidden_size);
    if (!f.value->is_number_integer()) r.type_error(f, "a positive integer or \"auto\"");
    return r.as_int(f);
  });

  r.read(c.use_bias, {"use_bias", "ssm_cfg.bias"}, bool_of);
  r.read(c.use_conv_bias, {"use_conv_bias", "ssm_cfg.conv_bias"}, bool_of);
  r.read(c.tie_word_embeddings, {"tie_word_embeddings", "tie_embeddings"}, bool_of);
  r.read(c.hidden_act, {"hidden_act"}, string_of);
  r.read(c.layer_norm_epsilon, {"layer_norm_epsilon"}, double_of);
  r.read(c.residual_in_fp32, {"residual_in_fp32"}, bool_of);
  r.read(c.pad_vocab_size_multiple, {"pad_vocab_size_multiple"}, int_of);

  r.read(c.initializer_range, {"initializer_range"}, double_of);
  r.read(c.rescale_prenorm_residual, {"rescale_prenorm_residual"}, bool_of);
  r.read(c.time_step_scale, {"time_step_scale", "ssm_cfg.dt_scale"}, double_of);
  r.read(c.time_step_min, {"time_step_min", "ssm_cfg.dt_min"}, double_of);
  r.read(c.time_step_max, {"time_step_max", "ssm_cfg.dt_max"}, double_of);
  r.read(c.time_step_floor, {"time_step_floor", "ssm_cfg.dt_init_floor"}, double_of);
  r.read(c.time_step_init_scheme, {"time_step_init_scheme", "ssm_cfg.dt_init"}, string_of);

  r.read(c.bos_token_id, {"bos_token_id"}, id_of);
  r.read(c.eos_token_id, {"eos_token_id"}, id_of);
  r.read(c.pad_token_id, {"pad_token_id"}, id_of);

  // A pure mamba_ssm config states the tokenizer vocab; its embedding has
  // that many rows rounded up to pad_vocab_size_multiple (see the header).
  // Non-positive values are left for validate() to report.
  const bool legacy_only = j.contains("d_model") && !j.contains("hidden_size");
  if (legacy_only && c.pad_vocab_size_multiple > 0 && c.vocab_size > 0) {
    const int64_t m = c.pad_vocab_size_multiple;
    c.vocab_size = checked_add(c.vocab_size, m - 1, [&] {
                     return r.where() + ": vocab_size rounded up to a multiple of pad_vocab_size_multiple";
                   }) / m * m;
  }

  c.validate(source_name);

  // HF writes the derived Di too (and mamba-130m-hf the legacy d_inner);
  // a value that does not match E·D describes some other model.
  int64_t inner = c.intermediate_size();
  r.read(inner, {"intermediate_size", "d_inner"}, int_of);
  SIMBA_CHECK(inner == c.intermediate_size(),
              r.where() << ": intermediate_size " << inner << " != expand (" << c.expand << ") x hidden_size ("
                        << c.hidden_size << ") = " << c.intermediate_size()
                        << "; simba derives the inner width from expand");
  return c;
}

json MambaConfig::to_json() const {
  auto id = [](const std::optional<int64_t>& v) { return v ? json(*v) : json(nullptr); };
  return json{
      {"model_type", "mamba"},
      {"architectures", json::array({"MambaForCausalLM"})},
      {"vocab_size", vocab_size},
      {"hidden_size", hidden_size},
      {"state_size", state_size},
      {"num_hidden_layers", num_hidden_layers},
      {"expand", expand},
      {"intermediate_size", intermediate_size()},
      {"conv_kernel", conv_kernel},
      {"time_step_rank", time_step_rank},
      {"use_bias", use_bias},
      {"use_conv_bias", use_conv_bias},
      {"tie_word_embeddings", tie_word_embeddings},
      {"hidden_act", hidden_act},
      {"layer_norm_epsilon", layer_norm_epsilon},
      {"residual_in_fp32", residual_in_fp32},
      {"pad_vocab_size_multiple", pad_vocab_size_multiple},
      {"initializer_range", initializer_range},
      // Always false in a written config: the rescale is an init step, already
      // applied to any weights saved beside this file, and transformers 5
      // applies it again to loaded weights (its _init_weights divides
      // out_proj.weight in place, outside the guard that spares loaded
      // parameters), which would shrink every out_proj by sqrt(num_hidden_layers).
      {"rescale_prenorm_residual", false},
      {"time_step_scale", time_step_scale},
      {"time_step_min", time_step_min},
      {"time_step_max", time_step_max},
      {"time_step_floor", time_step_floor},
      {"time_step_init_scheme", time_step_init_scheme},
      {"bos_token_id", id(bos_token_id)},
      {"eos_token_id", id(eos_token_id)},
      {"pad_token_id", id(pad_token_id)},
  };
}

void MambaConfig::save(const std::string& path) const {
  validate(path);
  write_file_atomic(path, to_json().dump(2) + "\n");
}

void MambaConfig::validate(const std::string& source_name) const {
  const std::string where = "config '" + source_name + "'";
  auto positive = [&](const char* key, int64_t v) {
    SIMBA_CHECK(v >= 1, where << ": " << key << " must be a positive integer, got " << v);
  };
  positive("vocab_size", vocab_size);
  positive("hidden_size", hidden_size);
  positive("state_size", state_size);
  positive("num_hidden_layers", num_hidden_layers);
  positive("expand", expand);
  positive("conv_kernel", conv_kernel);
  positive("time_step_rank", time_step_rank);
  positive("pad_vocab_size_multiple", pad_vocab_size_multiple);
  auto at_most = [&](const char* key, int64_t v, int64_t max) {
    SIMBA_CHECK_HINT(v <= max, where << ": " << key << " = " << v << " is larger than simba's limit of " << max,
                     "the limits (ssm/mamba_config.h) are far above any published Mamba model; check the value");
  };
  at_most("vocab_size", vocab_size, kMaxVocabSize);
  at_most("hidden_size", hidden_size, kMaxHiddenSize);
  at_most("state_size", state_size, kMaxStateSize);
  at_most("num_hidden_layers", num_hidden_layers, kMaxLayers);
  at_most("expand", expand, kMaxExpand);
  at_most("conv_kernel", conv_kernel, kMaxConvKernel);
  at_most("time_step_rank", time_step_rank, kMaxTimeStepRank);
  at_most("pad_vocab_size_multiple", pad_vocab_size_multiple, kMaxPadVocabMultiple);
  // The memory budget: the float32 weights alone must fit in physical memory.
  const int64_t params = num_parameters();
  const int64_t weight_bytes = checked_mul(params, 4, "the float32 weight bytes of the config");
  // Under the caps these products are far from overflowing.
  const int64_t embedding = vocab_size * hidden_size;
  const int64_t blocks = params - embedding * (tie_word_embeddings ? 1 : 2) - hidden_size;
  std::ostringstream what;
  what << where << ": the float32 weights of the model's " << params << " parameters (vocab_size " << vocab_size
       << " x hidden_size " << hidden_size << " = " << embedding << " in the embedding"
       << (tie_word_embeddings ? "" : " and as many in lm_head") << ", " << blocks << " in num_hidden_layers "
       << num_hidden_layers << " blocks of expand " << expand << ", state_size " << state_size << ")";
  check_memory_budget(weight_bytes, what.str(), "reduce hidden_size, num_hidden_layers, vocab_size, expand or state_size");

  SIMBA_CHECK(hidden_act == "silu",
              where << ": hidden_act is '" << hidden_act << "'; Mamba-1 in simba implements only 'silu'");
  // ε is added to mean(x²) before rsqrt; it must keep that strictly positive.
  SIMBA_CHECK(std::isfinite(layer_norm_epsilon) && layer_norm_epsilon > 0,
              where << ": layer_norm_epsilon must be a finite number > 0, got " << layer_norm_epsilon);
  SIMBA_CHECK(time_step_init_scheme == "random" || time_step_init_scheme == "constant",
              where << ": time_step_init_scheme is '" << time_step_init_scheme
                    << "'; expected 'random' or 'constant'");
  // Δ at init is exp(U(log min, log max)), so both ends must be > 0 and ordered.
  SIMBA_CHECK(std::isfinite(time_step_min) && std::isfinite(time_step_max) && time_step_min > 0 &&
                  time_step_min <= time_step_max,
              where << ": expected 0 < time_step_min <= time_step_max, got time_step_min = " << time_step_min
                    << ", time_step_max = " << time_step_max);
  SIMBA_CHECK(std::isfinite(time_step_floor) && time_step_floor >= 0,
              where << ": time_step_floor must be a finite number >= 0, got " << time_step_floor);
  SIMBA_CHECK(std::isfinite(time_step_scale) && time_step_scale >= 0,
              where << ": time_step_scale must be a finite number >= 0, got " << time_step_scale);
  SIMBA_CHECK(std::isfinite(initializer_range) && initializer_range >= 0,
              where << ": initializer_range must be a finite number >= 0, got " << initializer_range);
  for (const auto& [key, id] : {std::pair<const char*, const std::optional<int64_t>&>{"bos_token_id", bos_token_id},
                                {"eos_token_id", eos_token_id},
                                {"pad_token_id", pad_token_id}}) {
    SIMBA_CHECK(!id || (*id >= 0 && *id < vocab_size),
                where << ": " << key << " = " << *id << " is not a token id in [0, vocab_size = " << vocab_size << ")");
  }
}

}  // namespace simba
