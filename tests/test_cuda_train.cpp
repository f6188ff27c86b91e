// tests/test_cuda_train.cpp: training on a CUDA device (train/trainer.h): the sync budget of a
// training step, stop-and-resume on the GPU, and checkpoints moving between the GPU and the CPU.
// Skipped without a CUDA device (tests/cuda_doctest_main.cpp).
//
// Mixed precision (--dtype bfloat16) is held to the same budget and the same resume bit-identity,
// and its steps to the CPU's bfloat16 run and the GPU's float32 run; Simba-aware training
// (--simba) to the CPU's run in both precisions. `simba train --gpus 1` (the
// multi-GPU path with one NCCL rank) must reproduce `--device cuda` bit for bit.
//
// Sync budget (issue 7, "No hidden host syncs"). The device layer counts every device-to-host
// copy and every synchronisation (tensor/cuda_device.h cuda_sync_counts). A training step reads
// one number, the gradient norm: exactly one device-to-host copy and no synchronisation. The
// losses stay on the device and are read once per log interval, in one copy for all its steps.
// A whole Trainer::run reads nothing else besides what its validations and checkpoint read.
//
// Tolerance of the GPU <-> CPU checks: the two devices sum in different orders, so their float32
// losses differ by rounding, which AdamW's first steps amplify (m / sqrt(v) with v near 0). A
// checkpoint moved from one to the other continues within 1e-3 relative of the run that stayed
// (issue 7's bound for the demo's loss at step 50); the same weights evaluate within 1e-5.
#include <doctest/doctest.h>

#include <cmath>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <iterator>
#include <memory>
#include <sstream>
#include <string>
#include <utility>
#include <vector>

#include <nlohmann/json.hpp>

#include "tensor/cuda_device.h"
#include "tests/cuda_test_util.h"
#include "tests/test_util.h"
#include "tests/trainer_state_check.h"
#include "train/byte_tokenizer.h"
#include "train/nccl_communicator.h"
#include "train/trainer.h"
#include "train/train_state.h"

using namespace simba;
using cuda_test::kGpu;
namespace fs = std::filesystem;

namespace {

const TempDir g_tmp("test_cuda_train");

TrainOptions small_options(const std::string& out_name) {
  TrainOptions o;
  o.batch_size = 2;
  o.seq_len = 16;
  o.grad_accum = 2;
  o.steps = 6;
  o.lr = 1e-2;
  o.warmup_steps = 2;
  o.grad_clip = 0.5;  // small, so that clipping is active
  o.eval_batches = 1;
  o.out_dir = g_tmp.file(out_name);
  fs::remove_all(o.out_dir);
  return o;
}

// A trainer on `device` whose model is initialised on the host from `model_seed`.
std::unique_ptr<Trainer> trainer_on(Device device, const TrainOptions& o, uint64_t model_seed = 5) {
  TextData data(ByteTokenizer().encode(toy_text()), o.val_fraction, o.seed, "toy text");
  return std::make_unique<Trainer>(o, std::make_shared<MambaLM>(tiny_train_config(), model_seed), std::move(data), device);
}

double loss_of(const StepStats& s) { return mean_losses({s.losses})[0]; }

struct Reads {
  int64_t copies = 0, syncs = 0;
};

// The device-to-host copies and synchronisations `f` makes.
template <class F>
Reads reads_of(F&& f) {
  const CudaSyncCounts before = cuda_sync_counts();
  f();
  const CudaSyncCounts after = cuda_sync_counts();
  return {after.device_to_host_copies - before.device_to_host_copies, after.synchronizations - before.synchronizations};
}

double relative(double a, double b) { return std::fabs(a - b) / std::fabs(b); }

}  // namespace

TEST_CASE("sync budget: a training step reads only the gradient norm, one step late; the losses once per interval") {
  const std::vector<std::pair<DType, bool>> runs = {
      {DType::F32, false}, {DType::F32, true}, {DType::BF16, false}, {DType::BF16, true}};
  for (const auto& [dtype, pruned] : runs) {
    INFO((pruned ? "--simba keep=0.4" : "dense") << ", --dtype " << dtype_name(dtype));
    TrainOptions o = small_options("budget");
    o.steps = 8;
    o.dtype = dtype;
    if (pruned) o.simba = parse_simba_options("keep=0.4", "test");
    auto t = trainer_on(kGpu, o);
    REQUIRE(t->device() == kGpu);
    REQUIRE(t->model().device() == kGpu);
    std::vector<Tensor> interval, norms;
    for (int64_t i = 0; i < o.steps; ++i) {
      INFO("step " << i + 1);
      StepStats s;
      const Reads r = reads_of([&] { s = t->train_step(); });
      CHECK(r.copies == 1);  // the gradient norm, queued (the previous one is read without a copy)
      CHECK(r.syncs == 0);
      CHECK(s.losses.device() == kGpu);
      CHECK(s.grad_norm.device() == kGpu);
      interval.push_back(s.losses);
      norms.push_back(s.grad_norm);
    }
    const Reads checked = reads_of([&] { t->check_step(); });
    CHECK(checked.copies == 0);
    CHECK(checked.syncs == 0);
    std::vector<double> losses;
    const Reads r = reads_of([&] { losses = mean_losses(interval); });
    CHECK(r.copies == 1);
    CHECK(r.syncs == 0);
    REQUIRE(losses.size() == static_cast<size_t>(o.steps));
    for (double loss : losses) CHECK(std::isfinite(loss));
    CHECK(losses.back() < losses.front());
    for (double norm : mean_losses(norms)) CHECK(std::isfinite(norm));
  }
}

TEST_CASE("sync budget: a run reads the norms, the losses once per log interval, and its validations and checkpoint") {
  TrainOptions o = small_options("budget_run");
  o.steps = 10;
  o.log_every = 5;
  o.eval_every = 0;  // validations at the start and the end only
  o.save_every = 0;  // one checkpoint, at the end
  auto t = trainer_on(kGpu, o);
  std::ostringstream out;
  const Reads run = reads_of([&] { t->run(out); });
  CHECK(contains(out.str(), "device: cuda:0 (" + cuda_device_name(0) + ")"));
  // The same validation and checkpoint again, measured alone.
  const Reads validation = reads_of([&] { t->validate(); });
  const Reads checkpoint = reads_of([&] { t->save_checkpoint(); });
  MESSAGE("run of 10 steps: " << run.copies << " copies, " << run.syncs << " syncs; a validation " << validation.copies
                              << " copies; the checkpoint " << checkpoint.copies << " copies");
  CHECK(run.copies == o.steps + o.steps / o.log_every + 2 * validation.copies + checkpoint.copies);
  CHECK(run.syncs == 2 * validation.syncs + checkpoint.syncs);
}

TEST_CASE("a GPU run stopped and resumed is bit-identical to one run straight through") {
  for (const DType dtype : {DType::F32, DType::BF16}) {
    INFO("--dtype " << dtype_name(dtype));
    const int64_t N = 6, K = 3;
    TrainOptions o = small_options("gpu_straight");
    o.dtype = dtype;
    auto straight = trainer_on(kGpu, o);
    std::vector<double> losses;
    for (int64_t i = 0; i < N; ++i) losses.push_back(loss_of(straight->train_step()));

    TrainOptions oa = small_options("gpu_split");
    oa.dtype = dtype;
    auto first = trainer_on(kGpu, oa);
    for (int64_t i = 0; i < K; ++i) CHECK(loss_of(first->train_step()) == losses[static_cast<size_t>(i)]);
    first->save_checkpoint();
    // Another init seed: everything the resumed run uses must come from the checkpoint.
    auto resumed = trainer_on(kGpu, oa, /*model_seed=*/99);
    resumed->restore(load_checkpoint(checkpoint_dir(oa.out_dir)));
    for (int64_t i = K; i < N; ++i) CHECK(loss_of(resumed->train_step()) == losses[static_cast<size_t>(i)]);  // exact
    check_same_state(*straight, *resumed);

    // The same seed and options give bit-identical runs: the kernels are deterministic.
    auto again = trainer_on(kGpu, o);
    for (int64_t i = 0; i < N; ++i) again->train_step();
    check_same_state(*straight, *again);
  }
}

TEST_CASE("mixed precision on the GPU: the steps follow the CPU's bfloat16 run and the GPU's float32 run") {
  // bfloat16 on both devices rounds the same float32 sums made in different orders, so the losses
  // agree to bfloat16 precision (2e-2 relative, as tests/test_trainer.cpp holds bfloat16 against
  // float32), not to float32's 1e-3.
  TrainOptions o = small_options("mixed_gpu");
  o.dtype = DType::BF16;
  TrainOptions o32 = small_options("mixed_gpu_f32");
  auto gpu = trainer_on(kGpu, o), cpu16 = trainer_on(cpu(), o), gpu32 = trainer_on(kGpu, o32);
  REQUIRE(gpu->compute_model().device() == kGpu);
  for (int64_t i = 0; i < o.steps; ++i) {
    INFO("step " << i + 1);
    const double l = loss_of(gpu->train_step()), lc = loss_of(cpu16->train_step()), l32 = loss_of(gpu32->train_step());
    CHECK(relative(l, lc) <= 2e-2);
    CHECK(relative(l, l32) <= 2e-2);
  }
  CHECK(relative(gpu->validate().loss, cpu16->validate().loss) <= 2e-2);
}

TEST_CASE("Simba-aware training on the GPU follows the CPU's run: float32 1e-3, bfloat16 2e-2") {
  // --simba: every window split at a point c drawn from (seed, step, micro-batch), the context
  // pruned, the loss on the continuation alone. Both devices draw the same c and (from equal
  // weights) keep the same sets, so their losses differ only by rounding, within the bounds of
  // the dense runs above.
  for (DType dt : {DType::F32, DType::BF16}) {
    INFO(dtype_name(dt));
    TrainOptions o = small_options(std::string("simba_aware_") + dtype_name(dt));
    o.dtype = dt;
    o.simba = parse_simba_options("keep=0.5", "test");
    auto gpu = trainer_on(kGpu, o), host = trainer_on(cpu(), o);
    const double bound = dt == DType::F32 ? 1e-3 : 2e-2;
    for (int64_t i = 0; i < o.steps; ++i) {
      INFO("step " << i + 1);
      CHECK(relative(loss_of(gpu->train_step()), loss_of(host->train_step())) <= bound);
    }
    CHECK(relative(gpu->validate().loss, host->validate().loss) <= bound);
  }
}

TEST_CASE("checkpoints do not depend on the device: GPU -> CPU and CPU -> GPU resumes continue the loss") {
  const int64_t N = 6, K = 3;  // small_options: a run of 6 steps
  const TrainOptions o = small_options("cpu_straight");
  auto cpu_run = trainer_on(cpu(), o);
  std::vector<double> cpu_losses;
  for (int64_t i = 0; i < N; ++i) cpu_losses.push_back(loss_of(cpu_run->train_step()));

  for (const bool gpu_first : {true, false}) {
    const Device from = gpu_first ? kGpu : cpu(), to = gpu_first ? cpu() : kGpu;
    INFO(from.str() << " -> " << to.str());
    TrainOptions oa = small_options(gpu_first ? "from_gpu" : "from_cpu");
    auto first = trainer_on(from, oa);
    for (int64_t i = 0; i < K; ++i) {
      const double loss = loss_of(first->train_step());
      INFO("step " << i + 1 << ": " << loss << " vs the CPU's " << cpu_losses[static_cast<size_t>(i)]);
      CHECK(relative(loss, cpu_losses[static_cast<size_t>(i)]) <= 1e-3);
    }
    first->save_checkpoint();
    const Checkpoint c = load_checkpoint(checkpoint_dir(oa.out_dir));
    for (const auto& [name, t] : c.weights) CHECK(t.device() == cpu());
    for (const auto& [name, t] : c.state.optimizer) CHECK(t.device() == cpu());

    auto resumed = trainer_on(to, oa, /*model_seed=*/99);
    resumed->restore(c);
    CHECK(resumed->model().device() == to);
    // The weights as saved, on the new device: the same validation loss to float32 rounding.
    const double saved_val = first->validate().loss, resumed_val = resumed->validate().loss;
    CHECK(relative(resumed_val, saved_val) <= 1e-5);
    for (int64_t i = K; i < N; ++i) {
      const double loss = loss_of(resumed->train_step());
      INFO("step " << i + 1 << ": " << loss << " vs the CPU's " << cpu_losses[static_cast<size_t>(i)]);
      CHECK(relative(loss, cpu_losses[static_cast<size_t>(i)]) <= 1e-3);
    }
    CHECK(resumed->step() == N);
  }
}

namespace {

// The numbers of a metrics log that a deterministic run reproduces (not its timings): each
// line's step with its loss, gradient norm and validation loss, in order.
std::vector<std::vector<double>> logged_numbers(const std::filesystem::path& metrics) {
  std::vector<std::vector<double>> rows;
  std::ifstream in(metrics);
  for (std::string line; std::getline(in, line);) {
    const nlohmann::json j = nlohmann::json::parse(line);
    if (!j.contains("step")) continue;
    std::vector<double> row{j["step"].get<double>()};
    for (const char* k : {"loss", "grad_norm", "val_loss"}) row.push_back(j.contains(k) ? j[k].get<double>() : -1.0);
    rows.push_back(row);
  }
  return rows;
}

std::string file_bytes(const std::filesystem::path& p) {
  std::ifstream in(p, std::ios::binary);
  return std::string(std::istreambuf_iterator<char>(in), std::istreambuf_iterator<char>());
}

}  // namespace

// Issue 12, acceptance 1 on one GPU: `--gpus 1` runs the whole multi-GPU path (the launcher's
// worker process, an NCCL communicator of one rank, the bucketed gradient all-reduce, rank 0's
// broadcast and checkpoint) and must change nothing: a sum over one rank is the value itself.
TEST_CASE("simba train --gpus 1 (one worker process, NCCL) is bit-identical to simba train --device cuda") {
  TempDir dir("gpus1");
  const std::string text = dir.file("text.txt");
  std::ofstream(text) << toy_text(400);
  const std::string common = "train --data " + text +
                             " --steps 8 --batch-size 4 --seq-len 64 --hidden-size 64 --layers 2 --eval-every 4"
                             " --eval-batches 2 --save-every 0 --log-every 2";
  const auto [rc_plain, out_plain] = run_simba(common + " --device cuda --out " + dir.file("plain"));
  INFO(out_plain);
  REQUIRE(rc_plain == 0);
  const auto [rc_nccl, out_nccl] = run_simba(common + " --gpus 1 --out " + dir.file("nccl"));
  INFO(out_nccl);
  if (!nccl_compiled_in()) {
    MESSAGE("this build has no NCCL: --gpus must refuse, naming it");
    CHECK(rc_nccl != 0);
    CHECK(contains(out_nccl, "without NCCL"));
    return;
  }
  REQUIRE(rc_nccl == 0);
  const auto plain = logged_numbers(dir.path / "plain" / "metrics.jsonl");
  CHECK(plain.size() >= 8);
  CHECK(logged_numbers(dir.path / "nccl" / "metrics.jsonl") == plain);
  const std::string weights = file_bytes(dir.path / "plain" / "checkpoint" / "model.safetensors");
  CHECK(weights.size() > 1000);
  CHECK(file_bytes(dir.path / "nccl" / "checkpoint" / "model.safetensors") == weights);
}
