// train/model_dir.cpp: the checks of a --model directory, and loading it.
#include "train/model_dir.h"

#include <filesystem>

#include "nn/model_weights.h"
#include "tensor/error.h"
#include "tensor/file_io.h"

namespace simba {

namespace fs = std::filesystem;

namespace {
const char* const kTokenizerFile = "tokenizer.json";
}  // namespace

ModelDir locate_model_dir(const std::string& dir, const std::string& flag) {
  std::error_code ec;
  SIMBA_CHECK_HINT(fs::exists(dir, ec), flag << ": model directory '" << dir << "' does not exist",
                   "pass a directory holding config.json and model.safetensors (a training run's OUT/checkpoint)");
  SIMBA_CHECK_HINT(fs::is_directory(dir, ec), flag << ": '" << dir << "' is a file, expected a model directory",
                   "pass the directory that holds config.json and model.safetensors, not a file inside it");
  const std::string config_path = (fs::path(dir) / "config.json").string();
  const std::string weights_path = find_weights_file(dir);
  const bool has_config = fs::exists(config_path, ec), has_weights = !weights_path.empty();
  if (!has_config && !has_weights && fs::exists(fs::path(dir) / "checkpoint" / "config.json", ec))
    SIMBA_FAIL_HINT(flag << ": '" << dir << "' is a training run directory, not a model directory",
                    "pass its checkpoint: " << flag << " " << (fs::path(dir) / "checkpoint").string());
  SIMBA_CHECK_HINT(has_config, flag << ": model directory '" << dir << "' has no config.json",
                   "a model directory holds config.json and model.safetensors, as written by simba train "
                   "or transformers' save_pretrained");
  SIMBA_CHECK_HINT(has_weights, flag << ": model directory '" << dir << "' has no model.safetensors (nor a sharded "
                                     << kWeightsIndexFile << ")",
                   "a model directory holds config.json and model.safetensors (or shards and their index), as "
                   "written by simba train or transformers' save_pretrained(safe_serialization=True)");
  return ModelDir{dir, config_path, weights_path};
}

BpeTokenizer load_tokenizer_flag(const std::string& path, const std::string& flag) {
  std::error_code ec;
  SIMBA_CHECK_HINT(fs::is_regular_file(path, ec), flag << ": tokenizer file '" << path << "' does not exist",
                   "pass a Hugging Face tokenizer.json (e.g. the GPT-NeoX one of the mamba-*-hf checkpoints)");
  try {
    return BpeTokenizer::from_file(path);
  } catch (const Error& e) {
    throw_error(e.file(), e.line(), flag + ": " + e.message(), e.hint());
  }
}

std::optional<BpeTokenizer> load_model_tokenizer(const std::string& dir) {
  const std::string path = (fs::path(dir) / kTokenizerFile).string();
  if (!file_exists(path)) return std::nullopt;
  return BpeTokenizer::from_file(path);
}

std::shared_ptr<const Tokenizer> model_tokenizer(const std::string& dir, const MambaLM& model,
                                                 const std::string& command) {
  std::optional<BpeTokenizer> bpe = load_model_tokenizer(dir);
  std::shared_ptr<const Tokenizer> tokenizer;
  if (bpe) tokenizer = std::make_shared<BpeTokenizer>(std::move(*bpe));
  else tokenizer = std::make_shared<ByteTokenizer>();
  const int64_t V = model.config().vocab_size;
  SIMBA_CHECK_HINT(V >= tokenizer->vocab_size(),
                   command << ": the model in '" << dir << "' has vocab_size " << V << ", but the "
                           << tokenizer->name() << " tokenizer needs at least " << tokenizer->vocab_size(),
                   (bpe ? "the tokenizer.json beside config.json does not belong to this model"
                        : "without a tokenizer.json in the model directory, text is read as bytes; the model must "
                          "have been trained on bytes"));
  return tokenizer;
}

void save_model_tokenizer(const std::string& path, const BpeTokenizer& tokenizer, int64_t vocab_size,
                          const std::string& dir) {
  SIMBA_CHECK_HINT(tokenizer.vocab_size() <= vocab_size,
                   "tokenizer '" << path << "' has " << tokenizer.vocab_size() << " ids, more than the model's "
                                 << "vocab_size " << vocab_size,
                   "the embedding needs a row for every token id; raise vocab_size in the config");
  write_file_atomic((fs::path(dir) / kTokenizerFile).string(), read_file(path));
}

std::shared_ptr<MambaLM> load_model_dir(const std::string& dir, DType dtype, const std::string& flag) {
  locate_model_dir(dir, flag);
  return MambaLM::load(dir, dtype);
}

}  // namespace simba
