// train/cli_generate.cpp: `simba generate`, text sampled from a model, one
// byte at a time, in recurrent mode.
//
// The prompt is fed token by token through MambaLM::step, which carries the
// per-layer conv and SSM state forward (constant memory and time per token,
// the reason Mamba generates cheaply), then each sampled byte is printed and
// fed back. Bytes are written raw: a model that has not learnt UTF-8 may emit
// invalid sequences, and they are passed through as they are. With --device
// the model and its state live on that device; each step's V logits are the
// one thing read back to the host, where the sampler draws.
#include <iostream>
#include <limits>
#include <memory>

#include "tensor/error.h"
#include "train/byte_tokenizer.h"
#include "train/cli.h"
#include "train/cli_options.h"
#include "train/commands.h"
#include "train/model_dir.h"
#include "train/sampler.h"

namespace simba {

std::string run_generate(const GenerateArgs& args, std::ostream& out) {
  SIMBA_CHECK_HINT(!args.prompt.empty(), "--prompt: expected a non-empty prompt, got an empty string",
                   "the model needs at least one byte to condition on, e.g. --prompt \"The \"");
  SIMBA_CHECK(args.tokens >= 0, "--tokens: expected a number of tokens >= 0, got " << args.tokens);
  check_sampling_options(args.sampling);
  check_device(args.device);
  std::shared_ptr<MambaLM> model = load_model_dir(args.model_dir);
  model->to(args.device);
  const ByteTokenizer tokenizer;
  const int64_t V = model->config().vocab_size;
  SIMBA_CHECK_HINT(V >= tokenizer.vocab_size(),
                   "generate: the model in '" << args.model_dir << "' has vocab_size " << V << ", but the "
                                              << tokenizer.name() << " tokenizer needs at least "
                                              << tokenizer.vocab_size(),
                   "generate uses the byte tokenizer; the model must have been trained on bytes");

  std::vector<MixerState> state = model->new_state(1);
  Tensor logits;  // (1, V) after the latest step
  for (int64_t id : tokenizer.encode(args.prompt))
    logits = model->step(Tensor::from_ints({1}, {id}, args.device), state);
  out << args.prompt << std::flush;

  Generator g(args.seed);
  std::vector<int64_t> generated;
  for (int64_t i = 0; i < args.tokens; ++i) {
    // Ids the tokenizer cannot decode (an embedding padded past 256 rows) are never sampled.
    const int64_t id = sample_token(logits.select(0, 0).narrow(0, 0, tokenizer.vocab_size()), args.sampling, g);
    generated.push_back(id);
    out << tokenizer.decode({id}) << std::flush;
    if (i + 1 < args.tokens) logits = model->step(Tensor::from_ints({1}, {id}, args.device), state);
  }
  return tokenizer.decode(generated);
}

void add_generate_command(CLI::App& app) {
  auto args = std::make_shared<GenerateArgs>();
  CLI::App* cmd = app.add_subcommand(
      "generate",
      "Sample text from a model (byte tokenizer): the prompt, then --tokens sampled bytes, printed\n"
      "as they come. --temperature 0 is greedy decoding (the most likely byte each step).");
  cmd->add_option("--model", args->model_dir, "model directory (config.json + model.safetensors)")
      ->required()
      ->check(CLI::ExistingDirectory);
  cmd->add_option("--prompt", args->prompt, "text to continue (non-empty)")->required();
  cmd->add_option("--tokens", args->tokens, "number of bytes to generate")->required()->check(integer_in(0));
  cmd->add_option("--temperature", args->sampling.temperature,
                  "softmax temperature: 0 greedy, < 1 sharper, > 1 flatter")
      ->check(number_in(0.0, true, std::numeric_limits<double>::infinity(), false, "a finite number >= 0", ">=0"))
      ->capture_default_str();
  cmd->add_option("--top-k", args->sampling.top_k, "sample only among the k most likely bytes; 0 = all")
      ->check(integer_in(0))
      ->capture_default_str();
  cmd->add_option("--seed", args->seed, "random seed of the sampler")->check(seed_value())->capture_default_str();
  add_device_option(cmd, args->device);
  cmd->callback([args] {
    run_generate(*args, std::cout);
    std::cout << "\n";
  });
}

}  // namespace simba
