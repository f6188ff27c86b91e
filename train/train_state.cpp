// train/train_state.cpp: writing and reading a run's checkpoint directory
// (layout and consistency rules in train/train_state.h).
#include "train/train_state.h"

#include <charconv>
#include <cmath>
#include <csignal>
#include <cstdlib>
#include <cstring>
#include <filesystem>

#include "nn/model_weights.h"
#include "tensor/error.h"
#include "tensor/file_io.h"
#include "tensor/json.h"

namespace simba {

namespace {

const char* const kStateFormat = "simba-training-state";
const char* const kStateVersion = "1";
const char* const kStateFile = "training_state.safetensors";
const char* const kConfigFile = "config.json";
const char* const kTokenizerFile = "tokenizer.json";

// The value of metadata entry `key` of the safetensors file at `path`.
const std::string& metadata_entry(const SafetensorsMetadata& metadata, const std::string& key,
                                  const std::string& path, const std::string& hint) {
  auto it = metadata.find(key);
  SIMBA_CHECK_HINT(it != metadata.end(), "'" << path << "' has no '" << key << "' entry in its __metadata__", hint);
  return it->second;
}

// A step count written by save_checkpoint: decimal digits only.
int64_t parse_step(const std::string& text, const std::string& path) {
  int64_t value = -1;
  const char* end = text.data() + text.size();
  const auto [ptr, ec] = std::from_chars(text.data(), end, value);
  SIMBA_CHECK(ec == std::errc() && ptr == end && value >= 0,
              "'" << path << "': metadata 'step' is '" << text << "', expected a non-negative integer");
  return value;
}

double parse_seconds(const std::string& text, const std::string& path) {
  double value = -1.0;
  const char* end = text.data() + text.size();
  const auto [ptr, ec] = std::from_chars(text.data(), end, value);
  SIMBA_CHECK(ec == std::errc() && ptr == end && std::isfinite(value) && value >= 0.0,
              "'" << path << "': metadata 'elapsed_seconds' is '" << text << "', expected a number >= 0");
  return value;
}

// Shortest text that reads back as exactly `value`.
std::string exact_text(double value) {
  char buf[64];
  const auto [ptr, ec] = std::to_chars(buf, buf + sizeof buf, value);
  SIMBA_CHECK(ec == std::errc(), "cannot format " << value);
  return std::string(buf, ptr);
}

// The test hook of train/train_state.h: SIGKILL at the stage named by
// SIMBA_TEST_KILL_IN_CHECKPOINT.
void crash_point(const char* stage) {
  static const char* const target = std::getenv("SIMBA_TEST_KILL_IN_CHECKPOINT");
  if (target != nullptr && std::strcmp(target, stage) == 0) std::raise(SIGKILL);
}

// Steps 3 and 4 of the sequence in train/train_state.h: the complete
// checkpoint dir.new becomes dir. A dir.old left by an earlier interrupted
// switch is stale (dir.new or dir is complete whenever it exists) and goes first.
void switch_in(const std::string& dir) {
  const std::string fresh = dir + ".new", old = dir + ".old";
  remove_tree(old);
  if (file_exists(dir)) {
    rename_durable(dir, old);
    crash_point("moved-old");
  }
  rename_durable(fresh, dir);
  crash_point("switched");
  remove_tree(old);
}

}  // namespace

std::string checkpoint_dir(const std::string& out_dir) { return out_dir + "/checkpoint"; }

void save_checkpoint(const std::string& dir, const MambaLM& model, const TrainingState& state,
                     uint64_t shard_bytes) {
  SIMBA_CHECK(state.options.is_object(), "save_checkpoint: options must be a JSON object, got "
                                             << state.options.type_name());
  const std::string step = std::to_string(state.step);
  recover_checkpoint(dir);  // whatever an earlier failed or killed save left
  const std::string staging = temp_path_for(dir);
  model.save(staging, {{"step", step}}, shard_bytes);
  crash_point("weights");
  TensorMap tensors;
  for (const auto& [name, t] : state.optimizer) tensors[name] = t;
  save_safetensors(staging + "/" + kStateFile, tensors,
                   {{"format", kStateFormat},
                    {"version", kStateVersion},
                    {"step", step},
                    {"data_cursor", state.data_cursor},
                    {"options", state.options.dump()},
                    {"elapsed_seconds", exact_text(state.elapsed_seconds)}});
  if (!state.tokenizer_json.empty()) write_file_atomic(staging + "/" + kTokenizerFile, state.tokenizer_json);
  rename_durable(staging, dir + ".new");
  crash_point("staged");
  switch_in(dir);
}

void recover_checkpoint(const std::string& dir) {
  remove_stale_temps(dir);
  if (file_exists(dir + ".new")) switch_in(dir);
  else if (file_exists(dir + ".old")) remove_tree(dir + ".old");
}

Checkpoint load_checkpoint(const std::string& dir) {
  SIMBA_CHECK_HINT(std::filesystem::is_directory(dir), "checkpoint directory '" << dir << "' does not exist",
                   "a run keeps its checkpoint in OUT/checkpoint; check --out");
  Checkpoint c;
  c.dir = dir;
  const std::string config_path = dir + "/" + kConfigFile;
  c.weights_path = find_weights_file(dir);
  c.state_path = dir + "/" + kStateFile;
  const std::string incomplete = std::string("the directory is incomplete; a checkpoint written by simba train has ") +
                                 kConfigFile + ", " + kWeightsFile + " (or its shards and " + kWeightsIndexFile +
                                 ") and " + kStateFile;
  SIMBA_CHECK_HINT(file_exists(config_path), "checkpoint '" << dir << "' has no " << kConfigFile, incomplete);
  SIMBA_CHECK_HINT(!c.weights_path.empty(), "checkpoint '" << dir << "' has no " << kWeightsFile, incomplete);
  SIMBA_CHECK_HINT(file_exists(c.state_path),
                   "checkpoint '" << dir << "' has no " << kStateFile << ": it holds model weights only, "
                                  << "without the optimiser state and data cursor a resume needs",
                   "start a new run from these weights with --init " << dir);

  c.config = MambaConfig::from_json_file(config_path);
  SafetensorsMetadata weights_meta, state_meta;
  c.weights = load_model_weights(dir, &weights_meta);
  const TensorMap optimizer = load_safetensors(c.state_path, &state_meta);

  const std::string& format = metadata_entry(state_meta, "format", c.state_path, "the file is not a simba training state");
  SIMBA_CHECK(format == kStateFormat, "'" << c.state_path << "' is not a simba training state: metadata 'format' is '"
                                          << format << "', expected '" << kStateFormat << "'");
  const std::string& version = metadata_entry(state_meta, "version", c.state_path, "");
  SIMBA_CHECK(version == kStateVersion, "'" << c.state_path << "' has training-state version '" << version
                                            << "'; this simba reads version " << kStateVersion);

  c.state.step = parse_step(metadata_entry(state_meta, "step", c.state_path, ""), c.state_path);
  const int64_t weights_step = parse_step(
      metadata_entry(weights_meta, "step", c.weights_path,
                     std::string("these weights were not saved by simba train together with ") + kStateFile),
      c.weights_path);
  SIMBA_CHECK_HINT(weights_step == c.state.step,
                   "torn checkpoint '" << dir << "': " << kWeightsFile << " is at step " << weights_step << " but "
                                       << kStateFile << " is at step " << c.state.step
                                       << " (files of two different checkpoints)",
                   "the weights cannot be resumed with another step's optimiser state; start a new run "
                   "from them with --init " << dir << ", or restore a whole copy of the directory");

  c.state.data_cursor = metadata_entry(state_meta, "data_cursor", c.state_path, "");
  const std::string& options = metadata_entry(state_meta, "options", c.state_path, "");
  c.state.options = parse_json_bounded(options, "'" + c.state_path + "': metadata 'options'");
  SIMBA_CHECK(c.state.options.is_object(), "'" << c.state_path << "': metadata 'options' is not a JSON object: '"
                                               << options.substr(0, 80) << (options.size() > 80 ? "..." : "") << "'");
  c.state.elapsed_seconds = parse_seconds(metadata_entry(state_meta, "elapsed_seconds", c.state_path, ""), c.state_path);
  for (const auto& [name, t] : optimizer) c.state.optimizer.emplace_back(name, t);
  if (file_exists(dir + "/" + kTokenizerFile)) c.state.tokenizer_json = read_file(dir + "/" + kTokenizerFile);
  return c;
}

}  // namespace simba
