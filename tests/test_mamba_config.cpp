// tests/test_mamba_config.cpp: MambaConfig parsing (HF config.json and the
// original mamba_ssm names), "auto" dt rank, legacy vocab padding, every
// rejection with its message, and the to_json/save round trip.
#include <doctest/doctest.h>

#include <unistd.h>

#include <filesystem>
#include <functional>

#include <nlohmann/json.hpp>

#include "ssm/mamba_config.h"
#include "tensor/error.h"
#include "tensor/file_io.h"

#include "tests/test_util.h"

using namespace simba;
using json = nlohmann::json;
namespace fs = std::filesystem;

namespace {

const TempDir g_tmp("test_mamba_config");

// state-spaces/mamba-130m-hf config.json (transformers 4.40), legacy keys included.
const char* kMamba130mHf = R"({
  "_name_or_path": "state-spaces/mamba-130m-hf",
  "architectures": ["MambaForCausalLM"],
  "bos_token_id": 0,
  "conv_kernel": 4,
  "d_inner": 1536,
  "d_model": 768,
  "eos_token_id": 0,
  "expand": 2,
  "fused_add_norm": true,
  "hidden_act": "silu",
  "hidden_size": 768,
  "initializer_range": 0.1,
  "intermediate_size": 1536,
  "layer_norm_epsilon": 1e-05,
  "model_type": "mamba",
  "n_layer": 24,
  "num_hidden_layers": 24,
  "pad_token_id": 0,
  "pad_vocab_size_multiple": 8,
  "rescale_prenorm_residual": false,
  "residual_in_fp32": true,
  "rms_norm": true,
  "ssm_cfg": {},
  "state_size": 16,
  "time_step_floor": 0.0001,
  "time_step_init_scheme": "random",
  "time_step_max": 0.1,
  "time_step_min": 0.001,
  "time_step_rank": 48,
  "time_step_scale": 1.0,
  "torch_dtype": "float32",
  "transformers_version": "4.40.0.dev0",
  "use_bias": false,
  "use_cache": true,
  "use_conv_bias": true,
  "vocab_size": 50280
})";

// state-spaces/mamba-130m config.json (mamba_ssm, no HF names at all).
const char* kMamba130mLegacy = R"({"d_model": 768, "n_layer": 24, "vocab_size": 50277, "ssm_cfg": {},
  "rms_norm": true, "residual_in_fp32": true, "fused_add_norm": true, "pad_vocab_size_multiple": 8})";

// from_json on the HF config with `patch` merged in must fail, naming the
// config and each of `parts`.
void check_rejected(const json& patch, std::vector<std::string> parts) {
  json j = json::parse(kMamba130mHf);
  j.merge_patch(patch);
  const std::string msg = error_of([&] { MambaConfig::from_json(j, "cfg/config.json"); });
  INFO("patch: " << patch.dump() << "\nmessage: " << msg);
  CHECK(msg.find("config 'cfg/config.json'") != std::string::npos);
  for (const std::string& p : parts) CHECK(msg.find(p) != std::string::npos);
}

}  // namespace

TEST_CASE("MambaConfig reads the mamba-130m-hf config.json from a file") {
  const std::string path = g_tmp.file("config.json");
  write_file_atomic(path, kMamba130mHf);
  const MambaConfig c = MambaConfig::from_json_file(path);
  CHECK(c.vocab_size == 50280);
  CHECK(c.hidden_size == 768);
  CHECK(c.state_size == 16);
  CHECK(c.num_hidden_layers == 24);
  CHECK(c.expand == 2);
  CHECK(c.intermediate_size() == 1536);
  CHECK(c.conv_kernel == 4);
  CHECK(c.time_step_rank == 48);
  CHECK(c.use_bias == false);
  CHECK(c.use_conv_bias == true);
  CHECK(c.tie_word_embeddings == true);  // absent: PretrainedConfig default
  CHECK(c.hidden_act == "silu");
  CHECK(c.layer_norm_epsilon == 1e-5);
  CHECK(c.residual_in_fp32 == true);
  CHECK(c.pad_vocab_size_multiple == 8);
  CHECK(c.initializer_range == 0.1);
  CHECK(c.rescale_prenorm_residual == false);
  CHECK(c.time_step_scale == 1.0);
  CHECK(c.time_step_min == 0.001);
  CHECK(c.time_step_max == 0.1);
  CHECK(c.time_step_floor == 1e-4);
  CHECK(c.time_step_init_scheme == "random");
  CHECK(c.bos_token_id == std::optional<int64_t>(0));
  CHECK(c.eos_token_id == std::optional<int64_t>(0));
  CHECK(c.pad_token_id == std::optional<int64_t>(0));
}

TEST_CASE("MambaConfig reads the original mamba_ssm config and pads its vocab like mamba_ssm") {
  const MambaConfig c = MambaConfig::from_json(json::parse(kMamba130mLegacy), "mamba-130m/config.json");
  CHECK(c.hidden_size == 768);
  CHECK(c.num_hidden_layers == 24);
  CHECK(c.vocab_size == 50280);  // 50277 rounded up to a multiple of 8
  CHECK(c.state_size == 16);
  CHECK(c.time_step_rank == 48);  // "auto" by default: ceil(768 / 16)
  CHECK(c.intermediate_size() == 1536);

  // An HF config states the embedding size itself: never padded.
  json hf = json::parse(kMamba130mHf);
  hf["vocab_size"] = 50277;
  CHECK(MambaConfig::from_json(hf, "hf.json").vocab_size == 50277);
}

TEST_CASE("MambaConfig maps every ssm_cfg alias onto its HF field") {
  const json j = json::parse(R"({"d_model": 64, "n_layer": 2, "vocab_size": 100, "pad_vocab_size_multiple": 1,
    "tie_embeddings": false,
    "ssm_cfg": {"d_state": 8, "d_conv": 3, "expand": 3, "dt_rank": 5, "dt_min": 0.002, "dt_max": 0.2,
                "dt_init": "constant", "dt_scale": 0.5, "dt_init_floor": 0.001, "conv_bias": false,
                "bias": true, "layer": "Mamba1"}})");
  const MambaConfig c = MambaConfig::from_json(j, "legacy.json");
  CHECK(c.hidden_size == 64);
  CHECK(c.num_hidden_layers == 2);
  CHECK(c.vocab_size == 100);
  CHECK(c.tie_word_embeddings == false);
  CHECK(c.state_size == 8);
  CHECK(c.conv_kernel == 3);
  CHECK(c.expand == 3);
  CHECK(c.intermediate_size() == 192);
  CHECK(c.time_step_rank == 5);
  CHECK(c.time_step_min == 0.002);
  CHECK(c.time_step_max == 0.2);
  CHECK(c.time_step_init_scheme == "constant");
  CHECK(c.time_step_scale == 0.5);
  CHECK(c.time_step_floor == 0.001);
  CHECK(c.use_conv_bias == false);
  CHECK(c.use_bias == true);
}

TEST_CASE("MambaConfig resolves time_step_rank \"auto\" (and absent) to ceil(hidden_size / 16)") {
  CHECK(MambaConfig::auto_time_step_rank(768) == 48);
  CHECK(MambaConfig::auto_time_step_rank(100) == 7);
  CHECK(MambaConfig::auto_time_step_rank(16) == 1);
  CHECK(MambaConfig::auto_time_step_rank(1) == 1);

  json j = json::parse(kMamba130mHf);
  j["hidden_size"] = 100;
  j["d_model"] = 100;
  j["intermediate_size"] = 200;
  j["d_inner"] = 200;
  j["time_step_rank"] = "auto";
  CHECK(MambaConfig::from_json(j, "auto.json").time_step_rank == 7);
  j.erase("time_step_rank");
  CHECK(MambaConfig::from_json(j, "absent.json").time_step_rank == 7);
  j["ssm_cfg"] = {{"dt_rank", "auto"}};
  CHECK(MambaConfig::from_json(j, "legacy_auto.json").time_step_rank == 7);
  // "auto" and an explicit number agree when the number is ceil(D/16).
  j["time_step_rank"] = 7;
  CHECK(MambaConfig::from_json(j, "both.json").time_step_rank == 7);
}

TEST_CASE("MambaConfig: an HF name and its legacy alias must agree") {
  check_rejected({{"d_model", 512}}, {"'hidden_size' = 768 and 'd_model' = 512", "must agree"});
  check_rejected({{"n_layer", 12}}, {"'num_hidden_layers' = 24 and 'n_layer' = 12"});
  check_rejected({{"ssm_cfg", {{"d_state", 8}}}}, {"'state_size' = 16 and 'ssm_cfg.d_state' = 8"});
  check_rejected({{"ssm_cfg", {{"dt_rank", "auto"}}}, {"time_step_rank", 40}},
                 {"'time_step_rank' = 40 and 'ssm_cfg.dt_rank' = \"auto\""});
  check_rejected({{"ssm_cfg", {{"bias", true}}}}, {"'use_bias' = false and 'ssm_cfg.bias' = true"});
  check_rejected({{"tie_embeddings", false}, {"tie_word_embeddings", true}},
                 {"'tie_word_embeddings' = true and 'tie_embeddings' = false"});
}

TEST_CASE("MambaConfig rejects values simba cannot honour, naming the key") {
  check_rejected({{"hidden_act", "gelu"}}, {"hidden_act is 'gelu'", "only 'silu'"});
  check_rejected({{"vocab_size", 0}}, {"vocab_size must be a positive integer, got 0"});
  check_rejected({{"hidden_size", 0}, {"d_model", 0}}, {"hidden_size must be a positive integer, got 0"});
  check_rejected({{"state_size", -4}}, {"state_size must be a positive integer, got -4"});
  check_rejected({{"num_hidden_layers", 0}, {"n_layer", 0}}, {"num_hidden_layers must be a positive integer, got 0"});
  check_rejected({{"conv_kernel", 0}}, {"conv_kernel must be a positive integer, got 0"});
  check_rejected({{"expand", 0}}, {"expand must be a positive integer, got 0"});
  check_rejected({{"expand", 1.5}}, {"key 'expand': expected an integer, got number 1.5"});
  check_rejected({{"time_step_rank", 0}}, {"time_step_rank must be a positive integer, got 0"});
  check_rejected({{"time_step_rank", "big"}}, {"key 'time_step_rank': expected a positive integer or \"auto\", got string \"big\""});
  check_rejected({{"time_step_rank", 4.5}}, {"key 'time_step_rank': expected a positive integer or \"auto\""});
  check_rejected({{"time_step_init_scheme", "xavier"}}, {"time_step_init_scheme is 'xavier'", "'random' or 'constant'"});
  check_rejected({{"layer_norm_epsilon", -1e-5}}, {"layer_norm_epsilon must be a finite number > 0, got -1e-05"});
  check_rejected({{"layer_norm_epsilon", 0}}, {"layer_norm_epsilon must be a finite number > 0"});
  check_rejected({{"time_step_min", 0.5}}, {"expected 0 < time_step_min <= time_step_max", "time_step_min = 0.5"});
  check_rejected({{"time_step_min", 0}}, {"expected 0 < time_step_min"});
  check_rejected({{"time_step_floor", -1}}, {"time_step_floor must be a finite number >= 0"});
  check_rejected({{"time_step_scale", -1}}, {"time_step_scale must be a finite number >= 0"});
  check_rejected({{"initializer_range", -0.1}}, {"initializer_range must be a finite number >= 0"});
  check_rejected({{"pad_vocab_size_multiple", 0}}, {"pad_vocab_size_multiple must be a positive integer"});
  check_rejected({{"bos_token_id", 50280}}, {"bos_token_id = 50280 is not a token id in [0, vocab_size = 50280)"});
  check_rejected({{"eos_token_id", -1}}, {"eos_token_id = -1 is not a token id"});
  check_rejected({{"intermediate_size", 2048}, {"d_inner", 2048}}, {"intermediate_size 2048 != expand (2) x hidden_size (768) = 1536"});
  check_rejected({{"d_inner", 1024}}, {"'intermediate_size' = 1536 and 'd_inner' = 1024"});
}

TEST_CASE("MambaConfig rejects other architectures and mamba_ssm variants") {
  check_rejected({{"model_type", "mamba2"}}, {"model_type is 'mamba2'", "only 'mamba'"});
  check_rejected({{"ssm_cfg", {{"layer", "Mamba2"}}}}, {"ssm_cfg.layer is 'Mamba2'"});
  check_rejected({{"rms_norm", false}}, {"rms_norm is false", "only RMSNorm"});
  check_rejected({{"d_intermediate", 3072}}, {"d_intermediate is 3072", "no MLP"});
  check_rejected({{"attn_layer_idx", {1, 3}}}, {"attn_layer_idx is [1,3]", "no attention"});
  check_rejected({{"attn_layer_idx", 1}}, {"key 'attn_layer_idx': expected an array, got number 1"});
  // The plain Mamba-1 values of those keys are accepted.
  json j = json::parse(kMamba130mHf);
  j.merge_patch({{"d_intermediate", 0}, {"attn_layer_idx", json::array()}, {"ssm_cfg", {{"layer", "Mamba1"}}}});
  CHECK(MambaConfig::from_json(j, "plain.json").hidden_size == 768);
}

TEST_CASE("MambaConfig: known keys with the wrong JSON type name key, expected type and value") {
  check_rejected({{"hidden_size", "768"}}, {"key 'hidden_size': expected an integer, got string \"768\""});
  check_rejected({{"vocab_size", 50280.0}}, {"key 'vocab_size': expected an integer, got number 50280.0"});
  check_rejected({{"use_bias", "false"}}, {"key 'use_bias': expected true or false, got string \"false\""});
  check_rejected({{"use_conv_bias", 1}}, {"key 'use_conv_bias': expected true or false, got number 1"});
  check_rejected({{"layer_norm_epsilon", "1e-5"}}, {"key 'layer_norm_epsilon': expected a number, got string"});
  check_rejected({{"hidden_act", 3}}, {"key 'hidden_act': expected a string, got number 3"});
  check_rejected({{"bos_token_id", "0"}}, {"key 'bos_token_id': expected an integer or null, got string"});
  check_rejected({{"ssm_cfg", json::array()}}, {"key 'ssm_cfg': expected an object, got array"});
  check_rejected({{"ssm_cfg", {{"d_state", true}}}}, {"key 'ssm_cfg.d_state': expected an integer, got boolean true"});
  check_rejected({{"d_model", 9223372036854775808ULL}}, {"key 'd_model' = 9223372036854775808 is too large"});
  const std::string msg = error_of([] { MambaConfig::from_json(json::array({1}), "arr.json"); });
  CHECK(msg.find("config 'arr.json': expected a JSON object, got array") != std::string::npos);
}

TEST_CASE("MambaConfig ignores unknown keys and accepts null token ids") {
  json j = json::parse(kMamba130mHf);
  j.merge_patch({{"use_mambapy", false}, {"some_future_key", {{"nested", {1, 2}}}}});
  j["pad_token_id"] = nullptr;  // (merge_patch would delete a key patched with null)
  const MambaConfig c = MambaConfig::from_json(j, "extra.json");
  CHECK_FALSE(c.pad_token_id.has_value());
  CHECK(c.to_json()["pad_token_id"].is_null());
}

TEST_CASE("MambaConfig file errors name the file") {
  const std::string missing = g_tmp.file("missing.json");
  std::string msg = error_of([&] { MambaConfig::from_json_file(missing); });
  CHECK(msg.find(missing) != std::string::npos);
  const std::string bad = g_tmp.file("bad.json");
  write_file_atomic(bad, "{\"hidden_size\": 768,");
  msg = error_of([&] { MambaConfig::from_json_file(bad); });
  CHECK(msg.find("config '" + bad + "': not valid JSON") != std::string::npos);
}

TEST_CASE("MambaConfig to_json / save round trip, HF-loadable keys") {
  MambaConfig c;
  c.vocab_size = 1000;
  c.hidden_size = 96;
  c.state_size = 8;
  c.num_hidden_layers = 3;
  c.expand = 3;
  c.conv_kernel = 2;
  c.time_step_rank = MambaConfig::auto_time_step_rank(96);
  c.use_bias = true;
  c.use_conv_bias = false;
  c.tie_word_embeddings = false;
  c.layer_norm_epsilon = 1.0 / 3.0 * 1e-5;  // not a short decimal: must survive exactly
  c.residual_in_fp32 = false;
  c.pad_vocab_size_multiple = 16;
  c.initializer_range = 0.02;
  c.rescale_prenorm_residual = true;
  c.time_step_scale = 2.0;
  c.time_step_min = 0.0005;
  c.time_step_max = 0.05;
  c.time_step_floor = 0.0;
  c.time_step_init_scheme = "constant";
  c.bos_token_id = 1;
  c.eos_token_id = 2;
  c.pad_token_id = std::nullopt;

  const json j = c.to_json();
  CHECK(j["model_type"] == "mamba");
  CHECK(j["architectures"] == json::array({"MambaForCausalLM"}));
  CHECK(j["intermediate_size"] == 288);
  CHECK(j["time_step_rank"] == 6);
  CHECK(MambaConfig::from_json(j, "j").to_json() == j);
  // The one field that does not survive: an init step, written as false (to_json).
  CHECK(j["rescale_prenorm_residual"] == false);

  const std::string path = g_tmp.file("saved/config.json");
  make_dirs(g_tmp.file("saved"));
  c.save(path);
  const std::string text = read_file(path);
  CHECK(text.find("\n  \"architectures\": [") != std::string::npos);  // pretty-printed
  const MambaConfig back = MambaConfig::from_json_file(path);
  CHECK(back.to_json() == j);
  CHECK(back.layer_norm_epsilon == c.layer_norm_epsilon);
  CHECK(back.rescale_prenorm_residual == false);
  CHECK(back.bos_token_id == std::optional<int64_t>(1));
  CHECK_FALSE(back.pad_token_id.has_value());

  // A default config round-trips too (HF defaults, D = 768).
  CHECK(MambaConfig::from_json(MambaConfig().to_json(), "default").to_json() == MambaConfig().to_json());
}

TEST_CASE("MambaConfig::save validates first and writes nothing for a bad config") {
  MambaConfig c;
  c.hidden_act = "relu";
  const std::string path = g_tmp.file("bad_config.json");
  const std::string msg = error_of([&] { c.save(path); });
  CHECK(msg.find("config '" + path + "': hidden_act is 'relu'") != std::string::npos);
  CHECK_FALSE(file_exists(path));
}

// transformers 5 re-runs part of its init on every model it loads: with
// rescale_prenorm_residual true it divides each loaded out_proj.weight by
// sqrt(num_hidden_layers) (a simba checkpoint then gave logits 7-13% off).
// A config simba writes must never ask for that, whatever the model was
// initialised with.
TEST_CASE("a saved config never makes transformers change the loaded weights") {
  MambaConfig c;
  c.hidden_size = 32;
  c.num_hidden_layers = 4;
  c.vocab_size = 64;
  c.time_step_rank = MambaConfig::auto_time_step_rank(c.hidden_size);
  c.rescale_prenorm_residual = true;  // as simba's default training model is initialised
  const std::string path = g_tmp.file("rescaled/config.json");
  make_dirs(g_tmp.file("rescaled"));
  c.save(path);
  const json saved = json::parse(read_file(path));
  REQUIRE(saved.contains("rescale_prenorm_residual"));  // written explicitly: transformers' default may change
  CHECK(saved["rescale_prenorm_residual"] == false);
}

TEST_CASE("MambaConfig: absurd sizes are refused before any allocation, naming the field") {
  // hidden_size 2^62 without intermediate_size: E·D would overflow int64.
  // (The mamba-130m-hf config also spells the sizes the mamba_ssm way: d_model,
  // d_inner, n_layer; those spellings are deleted with null.)
  const json no_d = {{"d_model", nullptr}, {"d_inner", nullptr}, {"intermediate_size", nullptr}};
  json patch = no_d;
  patch["hidden_size"] = 4611686018427387904LL;
  check_rejected(patch,
                 {"hidden_size = 4611686018427387904 is larger than simba's limit of 65536"});
  check_rejected({{"num_hidden_layers", 1000000}, {"n_layer", nullptr}}, {"num_hidden_layers = 1000000 is larger than simba's limit of 4096"});
  check_rejected({{"vocab_size", 9223372036854775807LL}}, {"vocab_size = 9223372036854775807 is larger than"});
  check_rejected({{"state_size", 1 << 20}}, {"state_size = 1048576 is larger than"});
  patch = no_d;
  patch["expand"] = 1000;
  check_rejected(patch, {"expand = 1000 is larger than"});
  check_rejected({{"conv_kernel", 1 << 20}}, {"conv_kernel = 1048576 is larger than"});
  check_rejected({{"time_step_rank", 1 << 20}}, {"time_step_rank = 1048576 is larger than"});
  // Within every cap, but 2^24 x 2^16 embedding rows need 2^42 x 4 bytes (16 TiB):
  // the memory budget names the fields that make it up, never an allocation size.
  patch = no_d;
  patch["vocab_size"] = 1 << 24;
  patch["hidden_size"] = 1 << 16;
  check_rejected(patch,
                 {"the float32 weights of the model's", "vocab_size 16777216 x hidden_size 65536",
                  "more than this machine's physical memory", "reduce hidden_size, num_hidden_layers, vocab_size"});
}

TEST_CASE("MambaConfig: legacy vocab padding and the auto dt rank cannot overflow") {
  const std::string msg = error_of([] {
    MambaConfig::from_json({{"d_model", 64}, {"n_layer", 1}, {"vocab_size", 9223372036854775807LL}}, "legacy.json");
  });
  CHECK(contains(msg, "config 'legacy.json': vocab_size rounded up to a multiple of pad_vocab_size_multiple"));
  CHECK(contains(msg, "9223372036854775807 + 7 is larger than the largest size simba supports"));
  CHECK(MambaConfig::auto_time_step_rank(9223372036854775807LL) == 576460752303423488LL);  // ceil((2^63 - 1) / 16)
  CHECK(MambaConfig::auto_time_step_rank(17) == 2);
}

TEST_CASE("MambaConfig file: trailing bytes after a NUL and deep nesting are refused") {
  const std::string nul = g_tmp.file("nul.json");
  write_file_atomic(nul, std::string(kMamba130mHf) + std::string(1, '\0') + "garbage");
  std::string msg = error_of([&] { MambaConfig::from_json_file(nul); });
  CHECK(contains(msg, "config '" + nul + "': NUL byte at offset"));
  const std::string trailing = g_tmp.file("trailing.json");
  write_file_atomic(trailing, std::string(kMamba130mHf) + " {}");
  msg = error_of([&] { MambaConfig::from_json_file(trailing); });
  CHECK(contains(msg, "config '" + trailing + "': not valid JSON"));
  const std::string deep = g_tmp.file("deep.json");
  write_file_atomic(deep, "{\"a\":" + std::string(100000, '[') + std::string(100000, ']') + "}");
  msg = error_of([&] { MambaConfig::from_json_file(deep); });
  CHECK(contains(msg, "config '" + deep + "': JSON nested deeper than 64 levels"));
  const std::string dup = g_tmp.file("dup.json");
  write_file_atomic(dup, R"({"hidden_size": 64, "hidden_size": 768})");
  CHECK(contains(error_of([&] { MambaConfig::from_json_file(dup); }), "duplicate key 'hidden_size' in the top level"));
}
