// train/cli_generate.cpp: `simba generate`, text sampled from a model, one
// token at a time, in recurrent mode. Tokens are bytes, or the BPE tokens of
// the model directory's tokenizer.json when it has one.
//
// The prompt is fed token by token through MambaLM::step, which carries the
// per-layer conv and SSM state forward (constant memory and time per token,
// the reason Mamba generates cheaply), then each sampled token is printed and
// fed back. Bytes are written raw: a model that has not learnt UTF-8 may emit
// invalid sequences, and they are passed through as they are. With --device
// the model and its state live on that device; each step's V logits are the
// one thing read back to the host, where the sampler draws.
#include <iostream>
#include <limits>
#include <memory>

#include "tensor/error.h"
#include "ssm/decode_step.h"
#include "train/cli.h"
#include "train/cli_options.h"
#include "train/commands.h"
#include "train/model_dir.h"
#include "train/sampler.h"

namespace simba {

namespace {

// Writes the text of generated tokens as it becomes whole: a BPE token may
// end inside a UTF-8 character (byte-level BPE splits emoji and CJK), so ids
// are held back while their text ends in an incomplete sequence (decoded as
// U+FFFD), up to 4 tokens, the most one character can span. The byte
// tokenizer decodes bytes as they are (never to U+FFFD), so they are written
// as they come, valid UTF-8 or not.
class TextStream {
 public:
  TextStream(const Tokenizer& tokenizer, std::ostream& out) : tokenizer_(tokenizer), out_(out) {}
  void push(int64_t id) {
    pending_.push_back(id);
    const std::string text = tokenizer_.decode(pending_);
    const bool incomplete = text.size() >= 3 && text.compare(text.size() - 3, 3, "\xEF\xBF\xBD") == 0;
    if (incomplete && pending_.size() < 4) return;
    out_ << text << std::flush;
    pending_.clear();
  }
  void flush() {
    if (!pending_.empty()) out_ << tokenizer_.decode(pending_) << std::flush;
    pending_.clear();
  }

 private:
  const Tokenizer& tokenizer_;
  std::ostream& out_;
  std::vector<int64_t> pending_;
};

}  // namespace

std::string run_generate(const GenerateArgs& args, std::ostream& out) {
  SIMBA_CHECK_HINT(!args.prompt.empty(), "--prompt: expected a non-empty prompt, got an empty string",
                   "the model needs at least one token to condition on, e.g. --prompt \"The \"");
  SIMBA_CHECK(args.tokens >= 0, "--tokens: expected a number of tokens >= 0, got " << args.tokens);
  check_sampling_options(args.sampling);
  check_device(args.device);
  std::shared_ptr<MambaLM> model = load_model_dir(args.model_dir);
  model->to(args.device);
  // The model directory's tokenizer.json when it has one (a BPE run), else bytes.
  const std::shared_ptr<const Tokenizer> owned = model_tokenizer(args.model_dir, *model, "generate");
  const Tokenizer& tokenizer = *owned;

  DecodeStep step(*model, 1);  // on a GPU one recorded graph launch a token
  auto feed = [&](int64_t id) {
    step.ids.copy_(Tensor::from_ints({1}, {id}));
    step.run();
  };
  for (int64_t id : tokenizer.encode(args.prompt)) feed(id);
  out << args.prompt << std::flush;

  Generator g(args.seed);
  std::vector<int64_t> generated;
  TextStream stream(tokenizer, out);
  for (int64_t i = 0; i < args.tokens; ++i) {
    // Ids the tokenizer cannot decode (the embedding's padding rows) are never sampled.
    const int64_t id = sample_token(step.logits.select(0, 0).narrow(0, 0, tokenizer.vocab_size()), args.sampling, g);
    generated.push_back(id);
    stream.push(id);
    if (i + 1 < args.tokens) feed(id);
  }
  stream.flush();
  return tokenizer.decode(generated);
}

void add_generate_command(CLI::App& app) {
  auto args = std::make_shared<GenerateArgs>();
  CLI::App* cmd = app.add_subcommand(
      "generate",
      "Sample text from a model: the prompt, then --tokens sampled tokens, printed as they come.\n"
      "Tokens are bytes, or the BPE tokens of the model directory's tokenizer.json when it has one.\n"
      "--temperature 0 is greedy decoding (the most likely token each step).");
  cmd->add_option("--model", args->model_dir, "model directory (config.json + model.safetensors)")
      ->required()
      ->check(CLI::ExistingDirectory);
  cmd->add_option("--prompt", args->prompt, "text to continue (non-empty)")->required();
  cmd->add_option("--tokens", args->tokens, "number of tokens to generate")->required()->check(integer_in(0));
  cmd->add_option("--temperature", args->sampling.temperature,
                  "softmax temperature: 0 greedy, < 1 sharper, > 1 flatter")
      ->check(number_in(0.0, true, std::numeric_limits<double>::infinity(), false, "a finite number >= 0", ">=0"))
      ->capture_default_str();
  cmd->add_option("--top-k", args->sampling.top_k, "sample only among the k most likely tokens; 0 = all")
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
