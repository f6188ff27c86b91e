// train/model_dir.cpp: the checks of a --model directory, and loading it.
#include "train/model_dir.h"

#include <filesystem>

#include "tensor/error.h"

namespace simba {

namespace fs = std::filesystem;

ModelDir locate_model_dir(const std::string& dir, const std::string& flag) {
  std::error_code ec;
  SIMBA_CHECK_HINT(fs::exists(dir, ec), flag << ": model directory '" << dir << "' does not exist",
                   "pass a directory holding config.json and model.safetensors (a training run's OUT/checkpoint)");
  SIMBA_CHECK_HINT(fs::is_directory(dir, ec), flag << ": '" << dir << "' is a file, expected a model directory",
                   "pass the directory that holds config.json and model.safetensors, not a file inside it");
  ModelDir m{dir, (fs::path(dir) / "config.json").string(), (fs::path(dir) / "model.safetensors").string()};
  const bool has_config = fs::exists(m.config_path, ec), has_weights = fs::exists(m.weights_path, ec);
  if (!has_config && !has_weights && fs::exists(fs::path(dir) / "checkpoint" / "config.json", ec))
    SIMBA_FAIL_HINT(flag << ": '" << dir << "' is a training run directory, not a model directory",
                    "pass its checkpoint: " << flag << " " << (fs::path(dir) / "checkpoint").string());
  SIMBA_CHECK_HINT(has_config, flag << ": model directory '" << dir << "' has no config.json",
                   "a model directory holds config.json and model.safetensors, as written by simba train "
                   "or transformers' save_pretrained");
  SIMBA_CHECK_HINT(has_weights, flag << ": model directory '" << dir << "' has no model.safetensors",
                   "a model directory holds config.json and model.safetensors, as written by simba train "
                   "or transformers' save_pretrained(safe_serialization=True)");
  return m;
}

std::shared_ptr<MambaLM> load_model_dir(const std::string& dir, DType dtype, const std::string& flag) {
  locate_model_dir(dir, flag);
  return MambaLM::load(dir, dtype);
}

}  // namespace simba
