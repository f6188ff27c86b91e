// tests/test_hostile_input.cpp: the `simba` binary against hostile input.
//
// Each case once crashed (a signal), hung, exited 0 on garbage or printed an
// unclear message (issue 11). Run as a child process, every one must now end
// within the time limit with exit status 1 and a "simba: error:" message that
// names the file, flag or config field at fault. The binary is the one built
// next to this test; if it is missing the test fails (build the `simba`
// target), since a hardening test that does not run proves nothing.
#include <doctest/doctest.h>

#include <sys/wait.h>

#include <chrono>
#include <cmath>
#include <cstdio>
#include <cstring>
#include <filesystem>
#include <functional>
#include <regex>
#include <string>
#include <vector>

#include <nlohmann/json.hpp>

#include "nn/safetensors.h"
#include "ssm/mamba_model.h"
#include "tensor/file_io.h"

#include "tests/test_util.h"

using namespace simba;
namespace fs = std::filesystem;

namespace {

const TempDir g_tmp("test_hostile_input");

struct Outcome {
  bool exited = false;  // false: killed by a signal (a crash, or the time limit)
  int code = -1;
  std::string output;  // stdout + stderr
  double seconds = 0;
};

// Runs `simba args` under a 60 s limit (SIGKILL, so a hang reads as a
// signal, never as exit 1).
Outcome run(const std::string& args) {
  const fs::path exe = simba_binary();
  REQUIRE_MESSAGE(fs::exists(exe), exe.string() << " is not built; build the 'simba' target");
  const std::string cmd = "timeout -s KILL 60 " + exe.string() + " " + args + " 2>&1";
  const auto start = std::chrono::steady_clock::now();
  FILE* p = ::popen(cmd.c_str(), "r");
  REQUIRE(p != nullptr);
  Outcome o;
  char buf[4096];
  size_t n;
  while ((n = std::fread(buf, 1, sizeof buf, p)) > 0) o.output.append(buf, n);
  const int status = ::pclose(p);
  o.seconds = std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count();
  // The shell reports a child killed by signal s as exit status 128 + s.
  o.exited = WIFEXITED(status) && WEXITSTATUS(status) < 128;
  o.code = WIFEXITED(status) ? WEXITSTATUS(status) : -1;
  return o;
}

// `args` must fail cleanly: exit 1, the error prefix, every one of `parts`,
// and no negative number (an overflowed product) in the message.
void expect_error(const std::string& args, const std::vector<std::string>& parts) {
  const Outcome o = run(args);
  INFO("simba " << args << "\n" << o.output);
  CHECK(o.exited);
  CHECK(o.code == 1);
  CHECK(contains(o.output, "simba: error: "));
  for (const std::string& part : parts) CHECK(contains(o.output, part));
  CHECK_FALSE(std::regex_search(o.output, std::regex("[ (=]-[0-9]")));
}

std::string data_file() {
  const std::string path = g_tmp.file("data.txt");
  if (!fs::exists(path)) {
    std::string text;
    while (text.size() < 20000) text += "the quick brown fox jumps over the lazy dog. ";
    write_file_atomic(path, text);
  }
  return path;
}

// A small byte-level model directory; `edit` may change its weights first.
std::string model_dir(const std::string& name, const std::function<void(TensorMap&)>& edit = {}) {
  MambaConfig cfg;
  cfg.vocab_size = 256;
  cfg.hidden_size = 8;
  cfg.num_hidden_layers = 1;
  cfg.time_step_rank = 1;
  const std::string dir = g_tmp.file(name);
  MambaLM(cfg, 3).save(dir);
  if (edit) {
    SafetensorsMetadata meta;
    TensorMap tensors = load_safetensors(dir + "/model.safetensors", &meta);
    edit(tensors);
    save_safetensors(dir + "/model.safetensors", tensors, meta);
  }
  return dir;
}

// config.json of a valid model, with `patch` merged in (a null value deletes the key).
std::string config_file(const std::string& name, const nlohmann::json& patch) {
  nlohmann::json j = nlohmann::json::parse(read_file(model_dir("for_" + name) + "/config.json"));
  j.merge_patch(patch);
  const std::string path = g_tmp.file(name);
  write_file_atomic(path, j.dump());
  return path;
}

// A model directory whose config.json or model.safetensors is replaced by `bytes`.
std::string broken_model_dir(const std::string& name, const std::string& file, const std::string& bytes) {
  const std::string dir = model_dir(name);
  write_file_atomic(dir + "/" + file, bytes);
  return dir;
}

std::string safetensors_bytes(const std::string& header) {
  const uint64_t n = header.size();
  return std::string(reinterpret_cast<const char*>(&n), 8) + header;
}

const std::string kDeepJson = "{\"a\":" + std::string(100000, '[') + std::string(100000, ']') + "}";

std::string train(const std::string& flags) { return "train --data " + data_file() + " " + flags; }
std::string out_dir(const std::string& name) { return " --out " + g_tmp.file(name); }

}  // namespace

TEST_CASE("crashes: sizes that overflow 64 bits are refused, naming the field or flag") {
  const std::string big_hidden =
      config_file("big_hidden.json", {{"hidden_size", 4611686018427387904LL}, {"intermediate_size", nullptr},
                                      {"time_step_rank", nullptr}});
  expect_error(train("--config " + big_hidden + out_dir("r1")),
               {big_hidden, "hidden_size = 4611686018427387904 is larger than simba's limit"});
  expect_error(train("--batch-size 4611686018427387904" + out_dir("r2")),
               {"--batch-size x --seq-len: 4611686018427387904 x 256 is larger than the largest size"});
  // Products are never printed wrapped around (the check above rejects negatives).
  expect_error(train("--batch-size 4611686018427387904 --seq-len 3" + out_dir("r3")), {"4611686018427387904 x 3"});
  expect_error(train("--grad-accum 4611686018427387904" + out_dir("r4")),
               {"--grad-accum x --batch-size x --seq-len"});
}

TEST_CASE("crashes: JSON nested 100,000 deep in config.json or a safetensors header") {
  const std::string deep_config = broken_model_dir("deep_config", "config.json", kDeepJson);
  expect_error("info --model " + deep_config, {deep_config + "/config.json", "JSON nested deeper than 64 levels"});
  const std::string deep_header = broken_model_dir("deep_header", "model.safetensors", safetensors_bytes(kDeepJson));
  expect_error("info --model " + deep_header,
               {deep_header + "/model.safetensors", "JSON nested deeper than 64 levels"});
  expect_error(train("--config " + deep_config + "/config.json" + out_dir("r5")), {"JSON nested deeper"});
}

TEST_CASE("crashes: a 300-character path component in --out") {
  const std::string component(300, 'a');
  expect_error(train("--steps 1 --out " + g_tmp.file(component) + "/run"), {"File name too long", component});
}

TEST_CASE("crashes: running out of memory while loading the data") {
  // A sparse 8 TiB file: reading it needs more memory than any test machine
  // has, so it is refused before the allocation, naming the file.
  const std::string sparse = g_tmp.file("sparse.txt");
  write_file_atomic(sparse, "x");
  fs::resize_file(sparse, uintmax_t(1) << 43);
  expect_error("train --data " + sparse + out_dir("r6") + " --steps 1",
               {"reading '" + sparse + "' whole would need 8796093022208 bytes, more than this machine's physical memory"});
}

TEST_CASE("hang: num_hidden_layers 1,000,000 is refused at once") {
  const std::string layers = config_file("layers.json", {{"num_hidden_layers", 1000000}});
  const auto start = std::chrono::steady_clock::now();
  expect_error(train("--config " + layers + out_dir("r7")), {layers, "num_hidden_layers = 1000000 is larger"});
  CHECK(std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count() < 10.0);
}

TEST_CASE("silent acceptance: a NUL and garbage after the JSON of config.json or a safetensors header") {
  const std::string config = read_file(model_dir("nul_src") + "/config.json");
  const std::string nul_config = broken_model_dir("nul_config", "config.json", config + '\0' + "garbage");
  expect_error("info --model " + nul_config, {nul_config + "/config.json", "NUL byte at offset"});

  const std::string weights = read_file(model_dir("nul_src2") + "/model.safetensors");
  uint64_t n = 0;
  std::memcpy(&n, weights.data(), 8);
  const std::string header = weights.substr(8, n), data = weights.substr(8 + n);
  const std::string padded = header + '\0' + "garbage";
  const uint64_t m = padded.size();
  const std::string nul_weights = broken_model_dir(
      "nul_header", "model.safetensors", std::string(reinterpret_cast<const char*>(&m), 8) + padded + data);
  expect_error("info --model " + nul_weights, {nul_weights + "/model.safetensors", "NUL byte at offset"});
}

TEST_CASE("silent acceptance: NaN or Inf weights fail info, forward, eval and generate, naming the tensor") {
  const char* name = "backbone.layers.0.mixer.out_proj.weight";
  for (const double bad : {std::nan(""), HUGE_VAL}) {
    const std::string dir = model_dir(std::isnan(bad) ? "nan_model" : "inf_model", [&](TensorMap& t) {
      t[name].view({-1}).narrow(0, 3, 1).fill_(bad);
    });
    const std::string ids = g_tmp.file("ids.safetensors");
    save_safetensors(ids, {{"input_ids", Tensor::from_ints({1, 4}, {1, 2, 3, 4})}});
    const std::vector<std::string> parts = {dir + "/model.safetensors", std::string("tensor '") + name + "'",
                                            "holds a non-finite value"};
    expect_error("info --model " + dir, parts);
    expect_error("forward --model " + dir + " --ids " + ids + " --out " + g_tmp.file("fwd.safetensors"), parts);
    expect_error("eval --model " + dir + " --data " + data_file(), parts);
    expect_error("generate --model " + dir + " --prompt ab --tokens 2", parts);
  }
  // Finite weights whose forward pass overflows: eval's loss is NaN, an error.
  const std::string huge = model_dir("huge_model", [](TensorMap& t) { t["backbone.norm_f.weight"].fill_(3e38); });
  expect_error("eval --model " + huge + " --data " + data_file(), {"validation loss", "not a finite number"});
}

TEST_CASE("silent acceptance: out-of-range integers are refused, not clamped; seeds take one range everywhere") {
  expect_error(train("--steps 99999999999999999999" + out_dir("r8")),
               {"--steps: expected an integer <= 9223372036854775807 (2^63 - 1), got '99999999999999999999'"});
  expect_error(train("--warmup -1" + out_dir("r9")), {"--warmup: expected an integer >= 0"});
  const std::string dir = model_dir("seed_model");
  const std::string seed_error = "expected an integer in [0, 2^64), got '-1'";
  expect_error("generate --model " + dir + " --prompt ab --tokens 2 --seed -1", {"--seed: " + seed_error});
  expect_error(train("--seed -1" + out_dir("r10")), {"--seed: " + seed_error});
  expect_error("generate --model " + dir + " --prompt ab --tokens 2 --seed 18446744073709551616",
               {"--seed: expected an integer in [0, 2^64), got '18446744073709551616'"});
  const Outcome max_seed = run("generate --model " + dir + " --prompt ab --tokens 2 --seed 18446744073709551615");
  INFO(max_seed.output);
  CHECK(max_seed.code == 0);
  expect_error("generate --model " + dir + " --prompt ab --tokens 99999999999999999999",
               {"--tokens: expected an integer <= 9223372036854775807"});
  expect_error("eval --model " + dir + " --data " + data_file() + " --batch 0x10", {"--batch: expected an integer >= 1, got '0x10'"});
  expect_error("eval --model " + dir + " --data " + data_file() + " --context 8,-3", {"--context: expected an integer >= 1, got '-3'"});
  expect_error(train("--hidden-size 100000" + out_dir("r13")), {"--hidden-size: expected an integer <= 65536, got '100000'"});
}

TEST_CASE("unclear messages: an absurd model names its config fields, not an allocation size") {
  const std::string huge = config_file("huge.json", {{"vocab_size", 16000000}, {"hidden_size", 65536},
                                                     {"intermediate_size", nullptr}, {"time_step_rank", nullptr}});
  const Outcome o = run(train("--config " + huge + out_dir("r11")));
  INFO(o.output);
  CHECK(o.code == 1);
  CHECK(contains(o.output, "config '" + huge + "': the float32 weights of the model's"));
  CHECK(contains(o.output, "vocab_size 16000000 x hidden_size 65536"));
  CHECK_FALSE(contains(o.output, "out of host memory"));
  expect_error("eval --model " + model_dir("budget_model") + " --data " + data_file() + " --batch 1000000000 --len 1000",
               {"--batch x --len x vocab_size (256) x 4 bytes", "more than this machine's physical memory",
                "reduce --batch or --len"});
}

TEST_CASE("unclear messages: an unknown command is named, with the valid ones; --help still exits 0") {
  expect_error("frobnicate", {"unknown command 'frobnicate'", "train, eval, generate, info, forward, inspect, highway"});
  expect_error(train("--no-such-flag" + out_dir("r12")), {"--no-such-flag"});
  const Outcome help = run("--help");
  CHECK(help.code == 0);
  CHECK(contains(help.output, "train"));
  const Outcome sub_help = run("train --help");
  CHECK(sub_help.code == 0);
  CHECK(contains(sub_help.output, "--batch-size"));
}
