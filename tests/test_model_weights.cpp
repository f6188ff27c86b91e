// tests/test_model_weights.cpp: sharded checkpoints (nn/model_weights.h) and
// `simba init` (train/cli_init.cpp).
//
// A model saved with a tiny shard limit comes back bit for bit and loads in
// the commands that take --model (forward, eval) exactly as the single-file
// copy does; each broken index (missing shard, a tensor in two shards, a
// tensor the shards lack, a shard holding a tensor elsewhere in the map,
// malformed JSON, both layouts at once) is refused with a message naming the
// file and what was expected; a new save leaves one copy of the model; init
// is deterministic in its seed and equals the trainer's initial model.
#include <doctest/doctest.h>

#include <cstring>
#include <filesystem>
#include <sstream>

#include <nlohmann/json.hpp>

#include "nn/model_weights.h"
#include "ssm/mamba_model.h"
#include "tensor/file_io.h"
#include "tests/model_util.h"
#include "tests/test_util.h"
#include "train/commands.h"

using namespace simba;
namespace fs = std::filesystem;

namespace {

const TempDir g_tmp("test_model_weights");

// A byte-vocabulary model (so eval can read text) whose embedding alone is larger than 4 KiB.
MambaConfig byte_config() {
  MambaConfig c = tiny_config();
  c.vocab_size = 256;
  c.rescale_prenorm_residual = false;
  return c;
}

constexpr uint64_t kTinyShard = 2048;  // bytes: every layer's tensors spill into several shards

// Whether two tensors have the same dtype, shape and bytes.
bool same_bits(const Tensor& a, const Tensor& b) {
  if (a.dtype() != b.dtype() || a.shape() != b.shape()) return false;
  const Tensor x = a.contiguous(), y = b.contiguous();
  return std::memcmp(x.raw_data(), y.raw_data(), static_cast<size_t>(x.numel()) * dtype_size(x.dtype())) == 0;
}

std::vector<std::string> files_of(const std::string& dir) {
  std::vector<std::string> names;
  for (const auto& e : fs::directory_iterator(dir)) names.push_back(e.path().filename().string());
  std::sort(names.begin(), names.end());
  return names;
}

// A sharded copy of a jittered byte model under g_tmp/name.
std::string sharded_model(const std::string& name, uint64_t seed = 5) {
  MambaLM model(byte_config(), seed);
  jitter(model, seed + 1, 0.2);
  const std::string dir = g_tmp.file(name);
  model.save(dir, {}, kTinyShard);
  return dir;
}

nlohmann::json read_index(const std::string& dir) {
  return nlohmann::json::parse(read_file(dir + "/" + kWeightsIndexFile));
}

void write_index(const std::string& dir, const nlohmann::json& index) {
  write_file_atomic(dir + "/" + kWeightsIndexFile, index.dump(2));
}

std::string load_error(const std::string& dir) { return error_of([&] { MambaLM::load(dir); }); }

}  // namespace

TEST_CASE("sharded save: several shards and an index, read back bit for bit") {
  MambaLM model(byte_config(), 3);
  jitter(model, 4, 0.2);
  const std::string dir = g_tmp.file("round_trip");
  model.save(dir, {{"step", "7"}}, kTinyShard);

  const nlohmann::json index = read_index(dir);
  const int64_t n = static_cast<int64_t>(files_of(dir).size()) - 2;  // minus config.json and the index
  CHECK(n >= 3);
  CHECK(!file_exists(dir + "/" + kWeightsFile));
  uint64_t total = 0;
  for (const auto& [name, t] : model.state_tensors()) {
    total += static_cast<uint64_t>(t.numel()) * 4;
    CHECK(index["weight_map"].contains(name));
  }
  CHECK(index["metadata"]["total_size"].get<uint64_t>() == total);
  for (int64_t k = 1; k <= n; ++k) CHECK(file_exists(dir + "/" + shard_file_name(k, n)));
  CHECK(shard_file_name(2, 11) == "model-00002-of-00011.safetensors");

  SafetensorsMetadata meta;
  const TensorMap loaded = load_model_weights(dir, &meta);
  CHECK(meta.at("step") == "7");
  CHECK(meta.at("format") == "pt");
  const auto reloaded = MambaLM::load(dir);
  for (const auto& [name, t] : model.state_tensors()) {
    INFO(name);
    CHECK(same_bits(loaded.at(name), t));
    CHECK(same_bits(reloaded->state_tensors().at(name), t));
  }
}

TEST_CASE("bfloat16 and float16 weights are saved and read back as they are, sharded too") {
  for (DType dt : {DType::BF16, DType::F16}) {
    MambaLM model(byte_config(), 3);
    model.to(dt);
    const std::string dir = g_tmp.file(std::string("half_") + dtype_name(dt));
    model.save(dir, {}, kTinyShard);
    const TensorMap loaded = load_model_weights(dir);
    for (const auto& [name, t] : model.state_tensors()) {
      INFO(name);
      CHECK(loaded.at(name).dtype() == dt);
      CHECK(same_bits(loaded.at(name), t));
    }
  }
}

TEST_CASE("a new save replaces the weight files of the previous one: one copy of the model") {
  const std::string dir = g_tmp.file("resave");
  MambaLM a(byte_config(), 1), b(byte_config(), 2);
  a.save(dir, {}, kTinyShard);
  const size_t many = files_of(dir).size();
  b.save(dir);  // fits one file: the shards and the index go
  CHECK(files_of(dir) == std::vector<std::string>{"config.json", kWeightsFile});
  CHECK(same_bits(MambaLM::load(dir)->state_tensors().at("backbone.embeddings.weight"),
                  b.state_tensors().at("backbone.embeddings.weight")));
  a.save(dir, {}, kTinyShard);  // sharded again: model.safetensors goes
  CHECK(files_of(dir).size() == many);
  CHECK(!file_exists(dir + "/" + kWeightsFile));
  // A larger limit makes fewer shards; the old names not reused are removed.
  a.save(dir, {}, 4 * kTinyShard);
  const nlohmann::json index = read_index(dir);
  std::set<std::string> used;
  for (const auto& [name, file] : index["weight_map"].items()) used.insert(file.get<std::string>());
  CHECK(files_of(dir).size() == used.size() + 2);
  CHECK(used.size() < many - 2);
  for (const std::string& f : files_of(dir)) CHECK((f == "config.json" || f == kWeightsIndexFile || used.count(f)));
}

TEST_CASE("a broken index is refused with a message naming the file and what was expected") {
  SUBCASE("a shard is missing") {
    const std::string dir = sharded_model("missing_shard");
    const std::string shard = read_index(dir)["weight_map"]["backbone.norm_f.weight"];
    fs::remove(dir + "/" + shard);
    const std::string e = load_error(dir);
    CHECK(contains(e, "weights index '" + dir + "/" + kWeightsIndexFile + "'"));
    CHECK(contains(e, "shard '" + shard + "'"));
    CHECK(contains(e, "does not exist"));
  }
  SUBCASE("a tensor stored in two shards") {
    const std::string dir = sharded_model("two_shards");
    nlohmann::json index = read_index(dir);
    const std::string home = index["weight_map"]["backbone.norm_f.weight"];
    const std::string other = index["weight_map"]["backbone.embeddings.weight"];
    REQUIRE(home != other);
    SafetensorsMetadata meta;
    TensorMap tensors = load_safetensors(dir + "/" + other, &meta);
    tensors["backbone.norm_f.weight"] = load_safetensors(dir + "/" + home).at("backbone.norm_f.weight");
    save_safetensors(dir + "/" + other, tensors, meta);
    const std::string e = load_error(dir);
    CHECK(contains(e, "tensor 'backbone.norm_f.weight'"));
    CHECK((contains(e, "is stored in two shards") || contains(e, "but the index maps it to '" + home + "'")));
  }
  SUBCASE("the index maps a tensor to a shard that lacks it") {
    const std::string dir = sharded_model("lacking");
    nlohmann::json index = read_index(dir);
    const std::string home = index["weight_map"]["backbone.norm_f.weight"];
    const std::string other = index["weight_map"]["backbone.embeddings.weight"];
    index["weight_map"]["backbone.norm_f.weight"] = other;
    write_index(dir, index);
    const std::string e = load_error(dir);
    CHECK(contains(e, kWeightsIndexFile));
    CHECK(contains(e, "tensor 'backbone.norm_f.weight'"));
    CHECK((contains(e, "the index maps it to '" + other + "'") ||
           contains(e, "to '" + other + "', but that shard does not hold it")));
  }
  SUBCASE("a tensor missing from the index and the shards") {
    const std::string dir = sharded_model("tensor_missing");
    nlohmann::json index = read_index(dir);
    const std::string home = index["weight_map"]["backbone.norm_f.weight"];
    index["weight_map"].erase("backbone.norm_f.weight");
    write_index(dir, index);
    // First the shard that still holds it is refused...
    CHECK(contains(load_error(dir), "shard '" + home + "' holds tensor 'backbone.norm_f.weight', which the index "
                                    "does not list"));
    // ...and without it in the shard too, the model names the missing parameter.
    SafetensorsMetadata meta;
    TensorMap tensors = load_safetensors(dir + "/" + home, &meta);
    tensors.erase("backbone.norm_f.weight");
    save_safetensors(dir + "/" + home, tensors, meta);
    const std::string e = load_error(dir);
    CHECK(contains(e, dir + "/" + kWeightsIndexFile));
    CHECK(contains(e, "missing tensor 'backbone.norm_f.weight'"));
  }
  SUBCASE("shards of two saves (different metadata)") {
    const std::string dir = sharded_model("mixed_saves");
    const std::string shard = read_index(dir)["weight_map"]["backbone.norm_f.weight"];
    const TensorMap tensors = load_safetensors(dir + "/" + shard);
    save_safetensors(dir + "/" + shard, tensors, {{"format", "pt"}, {"step", "3"}});
    const std::string e = load_error(dir);
    CHECK(contains(e, "shard '" + shard + "' has __metadata__"));
    CHECK(contains(e, "different saves"));
  }
  SUBCASE("malformed JSON, a missing weight_map, a path outside the directory") {
    const std::string dir = sharded_model("malformed");
    write_file_atomic(dir + "/" + kWeightsIndexFile, "{\"weight_map\": {\"a\": ");
    CHECK(contains(load_error(dir), "weights index '" + dir + "/" + kWeightsIndexFile + "'"));
    write_index(dir, {{"metadata", {{"total_size", 4}}}});
    CHECK(contains(load_error(dir), "expected 'weight_map', an object mapping each tensor name to its shard file"));
    write_index(dir, {{"weight_map", {{"backbone.norm_f.weight", "../elsewhere.safetensors"}}}});
    CHECK(contains(load_error(dir), "is '../elsewhere.safetensors'; expected the name of a file in the same directory"));
    write_index(dir, {{"weight_map", {{"backbone.norm_f.weight", 3}}}});
    CHECK(contains(load_error(dir), "must be a shard file name (a string), got number"));
  }
  SUBCASE("both layouts at once") {
    const std::string dir = sharded_model("both");
    MambaLM(byte_config(), 1).save(g_tmp.file("single"));
    fs::copy_file(g_tmp.file("single") + "/" + kWeightsFile, dir + "/" + kWeightsFile);
    const std::string e = load_error(dir);
    CHECK(contains(e, "holds both model.safetensors and model.safetensors.index.json"));
  }
  SUBCASE("neither layout") {
    const std::string dir = g_tmp.file("no_weights");
    make_dirs(dir);
    CHECK(contains(error_of([&] { load_model_weights(dir); }),
                   "has no model.safetensors (nor a sharded model.safetensors.index.json)"));
  }
}

TEST_CASE("forward and eval load a sharded model directory as they load the single-file one") {
  MambaLM model(byte_config(), 8);
  jitter(model, 9, 0.2);
  const std::string single = g_tmp.file("cmd_single"), sharded = g_tmp.file("cmd_sharded");
  model.save(single);
  model.save(sharded, {}, kTinyShard);
  REQUIRE(file_exists(sharded + "/" + kWeightsIndexFile));

  const std::string ids = g_tmp.file("ids.safetensors");
  save_safetensors(ids, {{"input_ids", random_ids(2, 6, 256, 4)}});
  run_forward({single, ids, g_tmp.file("f_single.safetensors"), DType::F32, cpu()});
  run_forward({sharded, ids, g_tmp.file("f_sharded.safetensors"), DType::F32, cpu()});
  CHECK(read_file(g_tmp.file("f_single.safetensors")) != "");
  CHECK(same_bits(load_safetensors(g_tmp.file("f_single.safetensors")).at("logits"),
                  load_safetensors(g_tmp.file("f_sharded.safetensors")).at("logits")));

  const std::string text = g_tmp.file("text.txt");
  std::string t;
  for (int i = 0; i < 40; ++i) t += "the quick brown fox jumps over the lazy dog. ";
  write_file_atomic(text, t);
  std::ostringstream o1, o2;
  EvalArgs a;
  a.data_path = text;
  a.batch = 2;
  a.len = 16;
  a.model_dir = single;
  const EvalResult r1 = run_eval(a, o1);
  a.model_dir = sharded;
  const EvalResult r2 = run_eval(a, o2);
  CHECK(r1.loss == r2.loss);
  CHECK(r1.tokens == r2.tokens);

  const auto [code, out] = run_simba("info --model " + sharded);
  CHECK(code == 0);
  CHECK(contains(out, sharded + "/" + kWeightsIndexFile + ": "));
}

TEST_CASE("simba init: the trainer's initial model, deterministic in the seed, sharded and typed as asked") {
  const std::string config = g_tmp.file("init_config.json");
  byte_config().save(config);
  InitArgs args;
  args.config_path = config;
  args.seed = 42;
  args.shard_bytes = kTinyShard;
  std::ostringstream out;
  args.out_dir = g_tmp.file("init_a");
  run_init(args, out);
  args.out_dir = g_tmp.file("init_b");
  run_init(args, out);
  CHECK(contains(out.str(), "(seed 42, float32)"));
  const std::vector<std::string> files = files_of(g_tmp.file("init_a"));
  REQUIRE(files == files_of(g_tmp.file("init_b")));
  CHECK(files.size() > 3);
  for (const std::string& f : files) CHECK(read_file(g_tmp.file("init_a") + "/" + f) == read_file(g_tmp.file("init_b") + "/" + f));

  const MambaLM trainer_start(MambaConfig::from_json_file(config), 42);
  const auto loaded = MambaLM::load(g_tmp.file("init_a"));
  for (const auto& [name, t] : trainer_start.state_tensors()) CHECK(same_bits(loaded->state_tensors().at(name), t));

  args.seed = 43;
  args.out_dir = g_tmp.file("init_c");
  run_init(args, out);
  CHECK(read_file(g_tmp.file("init_a") + "/" + files[1]) != read_file(g_tmp.file("init_c") + "/" + files[1]));

  args.seed = 42;
  args.dtype = DType::BF16;
  args.shard_bytes = kDefaultShardBytes;
  args.out_dir = g_tmp.file("init_bf16");
  run_init(args, out);
  const TensorMap bf16 = load_model_weights(args.out_dir);
  for (const auto& [name, t] : trainer_start.state_tensors()) CHECK(same_bits(bf16.at(name), t.to(DType::BF16)));
}

TEST_CASE("simba init from the command line: tokenizer copied, errors name the flag or config field") {
  const std::string config = g_tmp.file("cli_config.json");
  MambaConfig c = byte_config();
  c.vocab_size = 50280;
  c.save(config);
  const std::string tok = "tests/fixtures/gpt-neox-tokenizer/tokenizer.json";
  const std::string dir = g_tmp.file("cli_init");
  auto [code, out] = run_simba("init --config " + config + " --out " + dir + " --seed 3 --shard-size 256KiB --tokenizer " + tok);
  INFO(out);
  CHECK(code == 0);
  CHECK(file_exists(dir + "/" + kWeightsIndexFile));
  CHECK(read_file(dir + "/tokenizer.json") == read_file(tok));

  std::tie(code, out) = run_simba("init --config " + config + " --out " + dir + " --shard-size 0");
  CHECK(code != 0);
  CHECK(contains(out, "--shard-size"));
  std::tie(code, out) = run_simba("init --config " + config + " --out " + dir + " --shard-size 2XB");
  CHECK(contains(out, "expected a size in bytes > 0"));
  std::tie(code, out) = run_simba("init --config " + config + " --out " + dir + " --tokenizer " + g_tmp.file("nope.json"));
  CHECK(code != 0);
  CHECK(contains(out, "--tokenizer: tokenizer file '" + g_tmp.file("nope.json") + "' does not exist"));
  write_file_atomic(g_tmp.file("bad_tok.json"), "{\"model\": ");
  std::tie(code, out) = run_simba("init --config " + config + " --out " + dir + " --tokenizer " + g_tmp.file("bad_tok.json"));
  CHECK(code != 0);
  CHECK(contains(out, "--tokenizer: tokenizer '" + g_tmp.file("bad_tok.json") + "'"));

  // The tokenizer needs more ids than the byte model has rows.
  const std::string small = g_tmp.file("small_config.json");
  byte_config().save(small);
  std::tie(code, out) = run_simba("init --config " + small + " --out " + g_tmp.file("cli_small") + " --tokenizer " + tok);
  CHECK(code != 0);
  CHECK(contains(out, "more than the model's vocab_size 256"));

  nlohmann::json j = nlohmann::json::parse(read_file(config));
  j["num_hidden_layers"] = -2;
  write_file_atomic(g_tmp.file("bad_config.json"), j.dump());
  std::tie(code, out) = run_simba("init --config " + g_tmp.file("bad_config.json") + " --out " + g_tmp.file("cli_bad"));
  CHECK(code != 0);
  CHECK(contains(out, "num_hidden_layers"));
}

TEST_CASE("simba train --shard-size: sharded checkpoints that --resume reads") {
  const std::string data = g_tmp.file("train.txt"), out = g_tmp.file("train_run");
  std::string t;
  for (int i = 0; i < 200; ++i) t += "the quick brown fox jumps over the lazy dog. ";
  write_file_atomic(data, t);
  const std::string flags = " --hidden-size 32 --layers 1 --state-size 4 --batch-size 2 --seq-len 16 --eval-every 0"
                            " --eval-batches 1 --log-every 1 --save-every 0 --shard-size 16KiB";
  auto [code, text] = run_simba("train --data " + data + " --out " + out + " --steps 2" + flags);
  INFO(text);
  REQUIRE(code == 0);
  const std::string ckpt = out + "/checkpoint";
  CHECK(file_exists(ckpt + "/" + kWeightsIndexFile));
  CHECK(!file_exists(ckpt + "/" + kWeightsFile));
  CHECK(read_index(ckpt)["weight_map"].size() == MambaLM::load(ckpt)->state_tensors().size());

  std::tie(code, text) = run_simba("train --data " + data + " --out " + out + " --steps 3 --resume --shard-size 16KiB");
  CHECK(code == 0);
  SafetensorsMetadata meta;
  load_model_weights(ckpt, &meta);
  CHECK(meta.at("step") == "3");
  CHECK(file_exists(ckpt + "/" + kWeightsIndexFile));

  std::tie(code, text) = run_simba("train --data " + data + " --out " + g_tmp.file("train_bad") + " --steps 1 --shard-size 0");
  CHECK(code != 0);
  CHECK(contains(text, "--shard-size"));
}
