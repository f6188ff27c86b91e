// train/cli_forward.cpp: `simba forward`, the logits, loss and parameter
// gradients of given token ids, written to a safetensors file.
//
// It exists to compare simba with transformers number for number: a script
// runs MambaForCausalLM(input_ids, labels=input_ids) on the same checkpoint
// and ids, calls loss.backward(), and diffs every tensor of the output file.
// So the loss is computed the way transformers does it: the logits of the
// full sequence, the last position dropped, labels shifted by one. With
// --device the computation runs there; the file gets host copies.
#include <memory>

#include "autograd/ops.h"
#include "nn/cross_entropy.h"
#include "nn/safetensors.h"
#include "tensor/error.h"
#include "train/cli.h"
#include "train/cli_options.h"
#include "train/commands.h"
#include "train/ids_file.h"
#include "train/model_dir.h"

namespace simba {

void run_forward(const ForwardArgs& args) {
  SIMBA_CHECK(is_floating(args.dtype),
              "--dtype: expected float32 or float64, got " << dtype_name(args.dtype));
  SIMBA_CHECK(!args.out_path.empty(), "--out: expected an output file path, got an empty string");
  check_device(args.device);
  std::shared_ptr<MambaLM> model = load_model_dir(args.model_dir, args.dtype);
  model->to(args.device);
  const int64_t V = model->config().vocab_size;
  const Tensor ids = read_input_ids(args.ids_path, V, 2, "the loss needs a next token").to(args.device);
  const int64_t L = ids.size(1);

  // As MambaForCausalLM: logits of every position, then the loss of positions
  // 0..L-2 against ids[1..L-1] (the last position has no next token).
  Variable logits = model->forward(ids);                                      // (B, L, V)
  Tensor labels = ids.narrow(1, 1, L - 1).contiguous();                       // (B, L-1)
  Variable loss = cross_entropy(narrow(logits, 1, 0, L - 1), labels);        // ()
  loss.backward();

  TensorMap out;
  out["logits"] = logits.data().to(DType::F32);
  out["loss"] = loss.data().to(DType::F32);
  for (const auto& [name, p] : model->named_parameters()) {
    SIMBA_CHECK(p.grad().defined(), "forward: parameter '" << name << "' received no gradient");
    out["grad." + name] = p.grad().to(DType::F32);
  }
  save_safetensors(args.out_path, out,
                   {{"format", "pt"}, {"compute_dtype", dtype_name(args.dtype)}, {"model", args.model_dir}});
}

void add_forward_command(CLI::App& app) {
  auto args = std::make_shared<ForwardArgs>();
  auto dtype = std::make_shared<std::string>("float32");
  CLI::App* cmd = app.add_subcommand(
      "forward",
      "Logits, loss and parameter gradients of given token ids, for comparison with transformers.\n"
      "Writes 'logits' (B, L, V), 'loss' (mean next-token cross-entropy, labels = ids shifted by one, as\n"
      "MambaForCausalLM(input_ids, labels=input_ids).loss) and 'grad.<parameter name>' for every\n"
      "parameter, all float32.");
  cmd->add_option("--model", args->model_dir, "model directory (config.json + model.safetensors)")
      ->required()
      ->check(CLI::ExistingDirectory);
  cmd->add_option("--ids", args->ids_path, "safetensors file holding int64 'input_ids' of shape (B, L), L >= 2")
      ->required()
      ->check(CLI::ExistingFile);
  cmd->add_option("--out", args->out_path, "output safetensors file (written atomically)")->required();
  cmd->add_option("--dtype", *dtype, "compute precision")
      ->check(CLI::IsMember({"float32", "float64"}))
      ->capture_default_str();
  add_device_option(cmd, args->device);
  cmd->callback([args, dtype] {
    args->dtype = *dtype == "float64" ? DType::F64 : DType::F32;
    run_forward(*args);
  });
}

}  // namespace simba
