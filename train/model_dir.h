// train/model_dir.h: finding and loading the model directory a `simba`
// command is pointed at (--model DIR).
//
// A model directory is what MambaLM::save writes and transformers'
// save_pretrained produces: DIR/config.json + DIR/model.safetensors. A
// training run keeps its latest one at OUT/checkpoint (other files next to
// them, such as optimiser state, are ignored here). The checks below turn the
// usual mistakes (a typo in DIR, passing the run directory OUT instead of
// OUT/checkpoint, a half-copied directory) into one error that names the path
// and says what was expected, before any file is parsed.
#pragma once

#include <memory>
#include <string>

#include "ssm/mamba_model.h"

namespace simba {

struct ModelDir {
  std::string dir;
  std::string config_path;   // dir/config.json
  std::string weights_path;  // dir/model.safetensors
};

// Checks that `dir` is a directory holding config.json and model.safetensors;
// `flag` (e.g. "--model") names the option in the errors.
ModelDir locate_model_dir(const std::string& dir, const std::string& flag = "--model");

// locate_model_dir, then MambaLM::load with parameters in `dtype`.
std::shared_ptr<MambaLM> load_model_dir(const std::string& dir, DType dtype = DType::F32,
                                        const std::string& flag = "--model");

}  // namespace simba
