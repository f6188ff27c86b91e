// train/cli_init.cpp: `simba init`, a model directory holding a freshly
// initialised model: the starting point of a full-size checkpoint (e.g. the
// mamba-130m shape) without a training run, for transformers interop checks,
// load-time measurements or a later `simba train --init`.
#include <iostream>
#include <memory>

#include "tensor/error.h"
#include "train/cli.h"
#include "train/cli_options.h"
#include "train/commands.h"
#include "train/model_dir.h"

namespace simba {

void run_init(const InitArgs& args, std::ostream& out) {
  SIMBA_CHECK(!args.out_dir.empty(), "--out: expected a directory, got an empty string");
  SIMBA_CHECK(args.dtype == DType::F32 || args.dtype == DType::BF16 || args.dtype == DType::F16,
              "--dtype: expected float32, bfloat16 or float16, got " << dtype_name(args.dtype));
  SIMBA_CHECK(args.shard_bytes > 0, "--shard-size: expected a size in bytes > 0, got 0");
  const MambaConfig cfg = MambaConfig::from_json_file(args.config_path);
  std::optional<BpeTokenizer> tokenizer;
  if (!args.tokenizer_path.empty()) tokenizer = load_tokenizer_flag(args.tokenizer_path, "--tokenizer");

  MambaLM model(cfg, args.seed);  // the init of simba train, in float32
  model.to(args.dtype);
  model.save(args.out_dir, {}, args.shard_bytes);
  if (tokenizer) save_model_tokenizer(args.tokenizer_path, *tokenizer, cfg.vocab_size, args.out_dir);
  out << "initialised " << model.num_parameters() << " parameters (seed " << args.seed << ", "
      << dtype_name(args.dtype) << ") in " << args.out_dir << ": " << find_weights_file(args.out_dir) << "\n";
}

void add_init_command(CLI::App& app) {
  auto args = std::make_shared<InitArgs>();
  auto dtype = std::make_shared<std::string>("float32");
  CLI::App* cmd = app.add_subcommand(
      "init",
      "Write a freshly initialised model: config.json and the weights simba train starts from\n"
      "with the same --config and --seed, as model.safetensors or, above --shard-size, as\n"
      "model-0000k-of-0000n.safetensors shards with model.safetensors.index.json (the Hugging Face\n"
      "layout). Saving over an earlier model removes its weight files.");
  cmd->add_option("--config", args->config_path, "model config.json (Hugging Face MambaConfig)")
      ->required()
      ->check(CLI::ExistingFile);
  cmd->add_option("--out", args->out_dir, "model directory to write (created)")->required();
  cmd->add_option("--seed", args->seed, "seed of the initialisation (as simba train --seed)")
      ->check(seed_value())
      ->capture_default_str();
  cmd->add_option("--dtype", *dtype, "dtype the weights are stored in")
      ->check(CLI::IsMember({"float32", "bfloat16", "float16"}))
      ->capture_default_str();
  cmd->add_option("--shard-size", args->shard_bytes,
                  "most bytes of tensor data per weights file; a larger model is sharded [default: 2GB]")
      ->transform(byte_size());
  cmd->add_option("--tokenizer", args->tokenizer_path, "tokenizer.json to copy into the model directory");
  cmd->callback([args, dtype] {
    args->dtype = *dtype == "bfloat16" ? DType::BF16 : *dtype == "float16" ? DType::F16 : DType::F32;
    run_init(*args, std::cout);
  });
}

}  // namespace simba
