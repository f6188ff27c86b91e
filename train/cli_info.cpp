// train/cli_info.cpp: `simba info`, what a model directory holds: the config's
// key sizes, the parameter count, and every tensor of model.safetensors with
// its shape and stored dtype.
//
// The weights are loaded into a model of the config's shape, so `simba info`
// also answers "will this checkpoint load?": a tensor missing, extra or of the
// wrong shape is reported as the same error `simba eval` would give.
#include <algorithm>
#include <cstdint>
#include <iomanip>
#include <iostream>
#include <memory>
#include <sstream>

#include "nn/safetensors.h"
#include "tensor/blas_core.h"
#include "tensor/error.h"
#include "train/cli.h"
#include "train/commands.h"
#include "train/model_dir.h"

namespace simba {

namespace {

void print_config(const MambaConfig& c, std::ostream& out) {
  auto row = [&](const char* key, const auto& value) { out << "  " << std::left << std::setw(26) << key << value << "\n"; };
  row("vocab_size (V)", c.vocab_size);
  row("hidden_size (D)", c.hidden_size);
  row("num_hidden_layers", c.num_hidden_layers);
  row("state_size (N)", c.state_size);
  row("expand (E)", c.expand);
  row("intermediate_size (Di)", c.intermediate_size());
  row("conv_kernel (K)", c.conv_kernel);
  row("time_step_rank (R)", c.time_step_rank);
  row("use_bias", c.use_bias ? "true" : "false");
  row("use_conv_bias", c.use_conv_bias ? "true" : "false");
  row("tie_word_embeddings", c.tie_word_embeddings ? "true" : "false");
  row("layer_norm_epsilon", c.layer_norm_epsilon);
}

}  // namespace

void run_info(const std::string& model_dir, std::ostream& out) {
  const ModelDir dir = locate_model_dir(model_dir);
  const MambaConfig cfg = MambaConfig::from_json_file(dir.config_path);
  SafetensorsMetadata metadata;
  const TensorMap tensors = load_model_weights(dir.dir, &metadata);
  const std::shared_ptr<MambaLM> model = MambaLM::unset(cfg);
  model->load_tensors(tensors, dir.weights_path);

  // Formatted in a string stream so that setw/left/fixed do not stick to `out`.
  std::ostringstream s;
  s << "model directory: " << dir.dir << "\n";
  s << "config (" << dir.config_path << "):\n";
  print_config(cfg, s);
  const int64_t n = model->num_parameters();
  s << "parameters: " << n;
  if (n >= 1000000) s << " (" << std::fixed << std::setprecision(1) << static_cast<double>(n) / 1e6 << "M)";
  s << "\n";

  size_t width = 4;
  for (const auto& [name, t] : tensors) width = std::max(width, name.size());
  s << dir.weights_path << ": " << tensors.size() << " tensors\n";
  for (const auto& [name, t] : tensors)
    s << "  " << std::left << std::setw(static_cast<int>(width) + 2) << name << std::setw(16) << shape_str(t.shape())
      << safetensors_dtype_name(t.dtype()) << "\n";
  if (!metadata.empty()) {
    s << "__metadata__:\n";
    for (const auto& [key, value] : metadata) s << "  " << key << " = " << value << "\n";
  }
  s << "cpu: OpenBLAS core " << blas_core_description() << "\n";
  out << s.str() << std::flush;
}

void add_info_command(CLI::App& app) {
  auto model_dir = std::make_shared<std::string>();
  CLI::App* cmd = app.add_subcommand(
      "info",
      "Describe a model directory: config, parameter count, and each tensor of model.safetensors\n"
      "(name, shape, stored dtype) and its metadata. For a training run OUT, pass OUT/checkpoint.");
  cmd->add_option("--model", *model_dir, "model directory (config.json + model.safetensors)")
      ->required()
      ->check(CLI::ExistingDirectory);
  cmd->callback([model_dir] { run_info(*model_dir, std::cout); });
}

}  // namespace simba
