// train/model_dir.h: finding and loading the model directory a `simba`
// command is pointed at (--model DIR).
//
// A model directory is what MambaLM::save writes and transformers'
// save_pretrained produces: DIR/config.json + DIR/model.safetensors, or the
// weights sharded with their index (nn/model_weights.h). A
// training run keeps its latest one at OUT/checkpoint (other files next to
// them, such as optimiser state, are ignored here). The checks below turn the
// usual mistakes (a typo in DIR, passing the run directory OUT instead of
// OUT/checkpoint, a half-copied directory) into one error that names the path
// and says what was expected, before any file is parsed.
#pragma once

#include <memory>
#include <optional>
#include <string>

#include "ssm/mamba_model.h"
#include "train/bpe_tokenizer.h"

namespace simba {

struct ModelDir {
  std::string dir;
  std::string config_path;   // dir/config.json
  std::string weights_path;  // dir/model.safetensors or dir/model.safetensors.index.json
};

// Checks that `dir` is a directory holding config.json and weights (single or sharded);
// `flag` (e.g. "--model") names the option in the errors.
ModelDir locate_model_dir(const std::string& dir, const std::string& flag = "--model");

// The tokenizer.json a flag names (--tokenizer): BpeTokenizer::from_file,
// every error (a missing file, malformed JSON, an unsupported component)
// prefixed with the flag so the user knows which argument is wrong.
BpeTokenizer load_tokenizer_flag(const std::string& path, const std::string& flag);

// DIR/tokenizer.json, the tokenizer a model directory may carry beside
// config.json (simba init --tokenizer, simba train --tokenizer, the
// mamba-*-hf repos): loaded when present, nothing when absent.
std::optional<BpeTokenizer> load_model_tokenizer(const std::string& dir);

// The tokenizer of the text the model in `dir` reads and writes:
// DIR/tokenizer.json when present, else the byte tokenizer. An error starting
// with `command` if the model's vocab_size does not cover its ids.
std::shared_ptr<const Tokenizer> model_tokenizer(const std::string& dir, const MambaLM& model,
                                                 const std::string& command);

// Copies the tokenizer.json at `path` into `dir` (atomically), after checking
// that a model of vocabulary `vocab_size` has a row for each of its ids.
void save_model_tokenizer(const std::string& path, const BpeTokenizer& tokenizer, int64_t vocab_size,
                          const std::string& dir);

// locate_model_dir, then MambaLM::load with parameters in `dtype`.
std::shared_ptr<MambaLM> load_model_dir(const std::string& dir, DType dtype = DType::F32,
                                        const std::string& flag = "--model");

}  // namespace simba
