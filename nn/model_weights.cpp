// nn/model_weights.cpp: single or sharded weights of a model directory
// (layouts and rules in nn/model_weights.h).
#include "nn/model_weights.h"

#include <algorithm>
#include <cctype>
#include <cstdio>
#include <filesystem>
#include <map>
#include <set>
#include <vector>

#include <nlohmann/json.hpp>

#include "tensor/error.h"
#include "tensor/file_io.h"
#include "tensor/json.h"

namespace simba {

const char* const kWeightsFile = "model.safetensors";
const char* const kWeightsIndexFile = "model.safetensors.index.json";

namespace {

namespace fs = std::filesystem;
using json = nlohmann::json;

constexpr int64_t kMaxShards = 99999;  // the five digits of the shard names

std::string join(const std::string& dir, const std::string& name) { return (fs::path(dir) / name).string(); }

// Whether `name` has the form model-DDDDD-of-DDDDD.safetensors.
bool is_shard_name(const std::string& name) {
  const std::string pattern = "model-#####-of-#####.safetensors";
  if (name.size() != pattern.size()) return false;
  for (size_t i = 0; i < name.size(); ++i)
    if (pattern[i] == '#' ? !std::isdigit(static_cast<unsigned char>(name[i])) : name[i] != pattern[i]) return false;
  return true;
}

std::string show(const SafetensorsMetadata& m) { return json(m).dump(); }

TensorMap load_sharded(const std::string& dir, const std::string& index_path, SafetensorsMetadata* metadata) {
  const std::string where = "weights index '" + index_path + "'";
  const json index = parse_json_bounded(read_file(index_path), where);
  SIMBA_CHECK(index.is_object(), where << ": expected a JSON object with a 'weight_map', got " << index.type_name());
  SIMBA_CHECK(index.contains("weight_map") && index["weight_map"].is_object(),
              where << ": expected 'weight_map', an object mapping each tensor name to its shard file");
  const json& weight_map = index["weight_map"];
  SIMBA_CHECK(!weight_map.empty(), where << ": 'weight_map' names no tensors");

  // Shard file -> the tensors the map puts there, shards in name order.
  std::map<std::string, std::set<std::string>> shards;
  for (const auto& [name, file] : weight_map.items()) {
    SIMBA_CHECK(file.is_string(), where << ": 'weight_map' entry of tensor '" << name
                                        << "' must be a shard file name (a string), got " << file.type_name());
    const std::string f = file.get<std::string>();
    SIMBA_CHECK(!f.empty() && f != "." && f != ".." && f.find('/') == std::string::npos,
                where << ": 'weight_map' entry of tensor '" << name << "' is '" << f
                      << "'; expected the name of a file in the same directory");
    shards[f].insert(name);
  }

  TensorMap out;
  std::map<std::string, std::string> found_in;  // tensor -> the shard it was read from
  std::string first_shard;
  SafetensorsMetadata first_meta;
  for (const auto& [file, names] : shards) {
    const std::string path = join(dir, file);
    SIMBA_CHECK_HINT(file_exists(path), where << ": shard '" << file << "' (holding tensor '" << *names.begin()
                                              << "' and " << names.size() - 1 << " more) does not exist",
                     "copy every shard the index names into '" << dir << "'");
    SafetensorsMetadata meta;
    TensorMap tensors = load_safetensors(path, &meta);
    if (first_shard.empty()) {
      first_shard = file;
      first_meta = meta;
    }
    SIMBA_CHECK_HINT(meta == first_meta, where << ": shard '" << file << "' has __metadata__ " << show(meta)
                                               << " but shard '" << first_shard << "' has " << show(first_meta),
                     "the shards come from different saves; restore the directory from one save");
    for (auto& [name, t] : tensors) {
      auto seen = found_in.find(name);
      SIMBA_CHECK(seen == found_in.end(), where << ": tensor '" << name << "' is stored in two shards, '"
                                                << seen->second << "' and '" << file << "'");
      SIMBA_CHECK(weight_map.contains(name),
                  where << ": shard '" << file << "' holds tensor '" << name << "', which the index does not list");
      const std::string mapped = weight_map[name].get<std::string>();
      SIMBA_CHECK(mapped == file, where << ": shard '" << file << "' holds tensor '" << name
                                        << "', but the index maps it to '" << mapped << "'");
      found_in[name] = file;
      out.emplace(name, std::move(t));
    }
    for (const std::string& name : names)
      SIMBA_CHECK(found_in.count(name), where << ": the index maps tensor '" << name << "' to '" << file
                                              << "', but that shard does not hold it");
  }
  if (metadata) *metadata = first_meta;
  return out;
}

// Removes DIR/name if it exists, naming it in the error if that fails.
void remove_file(const std::string& dir, const std::string& name) {
  std::error_code ec;
  fs::remove(join(dir, name), ec);
  SIMBA_CHECK(!ec, "cannot remove the stale weights file '" << join(dir, name) << "': " << ec.message());
}

// Removes the weight files of an earlier save that `keep` (the files just written) does not include.
void remove_stale_weights(const std::string& dir, const std::set<std::string>& keep) {
  std::vector<std::string> stale;
  for (const fs::directory_entry& e : fs::directory_iterator(dir)) {
    const std::string name = e.path().filename().string();
    if (keep.count(name)) continue;
    if (name == kWeightsFile || name == kWeightsIndexFile || is_shard_name(name)) stale.push_back(name);
  }
  // The index goes first, so a crash part-way leaves no index naming removed shards.
  std::sort(stale.begin(), stale.end(), [](const std::string& a, const std::string& b) {
    return (a == kWeightsIndexFile) != (b == kWeightsIndexFile) ? a == kWeightsIndexFile : a < b;
  });
  for (const std::string& name : stale) remove_file(dir, name);
  if (!stale.empty()) fsync_dir(dir);
}

}  // namespace

std::string shard_file_name(int64_t k, int64_t n) {
  SIMBA_CHECK(1 <= k && k <= n && n <= kMaxShards, "shard_file_name: need 1 <= k <= n <= " << kMaxShards
                                                                                          << ", got k " << k << ", n " << n);
  char buf[64];
  std::snprintf(buf, sizeof buf, "model-%05lld-of-%05lld.safetensors", static_cast<long long>(k),
                static_cast<long long>(n));
  return buf;
}

std::string find_weights_file(const std::string& dir) {
  const std::string single = join(dir, kWeightsFile), index = join(dir, kWeightsIndexFile);
  const bool has_single = file_exists(single), has_index = file_exists(index);
  SIMBA_CHECK_HINT(!(has_single && has_index),
                   "model directory '" << dir << "' holds both " << kWeightsFile << " and " << kWeightsIndexFile
                                       << ": two copies of the weights, and it is ambiguous which one is meant",
                   "remove the stale one (a save interrupted part-way leaves both)");
  return has_index ? index : has_single ? single : std::string();
}

TensorMap load_model_weights(const std::string& dir, SafetensorsMetadata* metadata) {
  const std::string path = find_weights_file(dir);
  SIMBA_CHECK_HINT(!path.empty(), "model directory '" << dir << "' has no " << kWeightsFile << " (nor a sharded "
                                                      << kWeightsIndexFile << ")",
                   "a model directory holds config.json and the weights, as written by simba or transformers' "
                   "save_pretrained");
  if (fs::path(path).filename() == kWeightsFile) return load_safetensors(path, metadata);
  return load_sharded(dir, path, metadata);
}

void save_model_weights(const std::string& dir, const TensorMap& tensors, const SafetensorsMetadata& metadata,
                        uint64_t shard_bytes) {
  SIMBA_CHECK(shard_bytes > 0, "save_model_weights: the shard size must be > 0 bytes");
  // Tensors in name order into shards of at most shard_bytes (one larger tensor alone).
  std::vector<TensorMap> groups(1);
  uint64_t group_bytes = 0, total = 0;
  for (const auto& [name, t] : tensors) {
    const uint64_t nbytes = static_cast<uint64_t>(t.numel()) * dtype_size(t.dtype());
    if (!groups.back().empty() && group_bytes + nbytes > shard_bytes) {
      groups.emplace_back();
      group_bytes = 0;
    }
    groups.back().emplace(name, t);
    group_bytes += nbytes;
    total += nbytes;
  }
  if (groups.size() == 1) {
    save_safetensors(join(dir, kWeightsFile), tensors, metadata);
    remove_stale_weights(dir, {kWeightsFile});
    return;
  }
  const int64_t n = static_cast<int64_t>(groups.size());
  SIMBA_CHECK_HINT(n <= kMaxShards, "saving '" << dir << "': " << n << " shards of at most " << shard_bytes
                                               << " bytes, more than the " << kMaxShards << " the file names allow",
                   "use a larger shard size");
  json weight_map = json::object();
  std::set<std::string> written;
  for (int64_t k = 0; k < n; ++k) {
    const std::string file = shard_file_name(k + 1, n);
    save_safetensors(join(dir, file), groups[k], metadata);
    for (const auto& [name, t] : groups[k]) weight_map[name] = file;
    written.insert(file);
  }
  const json index = {{"metadata", {{"total_size", total}}}, {"weight_map", weight_map}};
  write_file_atomic(join(dir, kWeightsIndexFile), index.dump(2) + "\n");
  written.insert(kWeightsIndexFile);
  remove_stale_weights(dir, written);
}

}  // namespace simba
