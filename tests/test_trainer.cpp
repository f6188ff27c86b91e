// tests/test_trainer.cpp: the trainer (train/trainer.h), its checkpoint
// directory (train/train_state.h) and the `simba train` command
// (train/cli_train.cpp).
//
// Bit-identity claims (resume, determinism) compare every tensor's bytes; the
// gradient-accumulation equivalence is a float32 rounding claim and uses a
// relative tolerance. Every error case asserts the message text.
#include <doctest/doctest.h>

#include <cmath>
#include <cstring>
#include <filesystem>
#include <functional>
#include <iostream>
#include <map>
#include <set>
#include <sstream>

#include <nlohmann/json.hpp>

#include "nn/cross_entropy.h"
#include "nn/model_weights.h"
#include "nn/safetensors.h"
#include "ssm/simba_forward.h"
#include "tensor/file_io.h"
#include "tests/cli_parse_only.h"
#include "tests/test_util.h"
#include "tests/trainer_state_check.h"
#include "train/byte_tokenizer.h"
#include "train/cli.h"
#include "train/trainer.h"
#include "train/train_state.h"

using namespace simba;
namespace fs = std::filesystem;

namespace {

const TempDir g_tmp("test_trainer");

TextData toy_data(const TrainOptions& o, const std::string& text = toy_text(120)) {
  return TextData(ByteTokenizer().encode(text), o.val_fraction, o.seed, "toy text");
}

TrainOptions tiny_options(const std::string& out_name) {
  TrainOptions o;
  o.batch_size = 2;
  o.seq_len = 16;
  o.grad_accum = 2;
  o.steps = 6;
  o.lr = 1e-2;
  o.warmup_steps = 2;
  o.grad_clip = 0.5;  // small, so that clipping is active in these runs
  o.eval_batches = 1;
  o.out_dir = g_tmp.file(out_name);
  return o;
}

// A step's training loss, read from wherever the step left it.
double loss_of(const StepStats& s) { return mean_losses({s.losses})[0]; }

std::unique_ptr<Trainer> tiny_trainer(const TrainOptions& o, uint64_t model_seed = 5) {
  return std::make_unique<Trainer>(o, std::make_shared<MambaLM>(tiny_train_config(), model_seed), toy_data(o));
}

std::string write_text(const std::string& name, const std::string& text) {
  const std::string path = g_tmp.file(name);
  write_file_atomic(path, text);
  return path;
}

// Runs `simba <command line>` through add_train_command; returns what it
// printed. CLI11 and simba errors propagate to the caller.
std::string run_cli(const std::string& command_line) {
  CLI::App app{"simba"};
  app.require_subcommand(1);
  add_train_command(app);
  std::ostringstream captured;
  std::streambuf* old = std::cout.rdbuf(captured.rdbuf());
  try {
    app.parse(command_line, false);
  } catch (...) {
    std::cout.rdbuf(old);
    throw;
  }
  std::cout.rdbuf(old);
  return captured.str();
}

// The message of the CLI11 parse error the command line raises, or "".
// Parsing only (tests/cli_parse_only.h), so a command line that parses fine
// returns "" instead of starting a training run.
std::string cli_parse_error(const std::string& command_line) {
  ParseOnlyApp app{"simba"};
  app.require_subcommand(1);
  add_train_command(app);
  try {
    app.parse(command_line, false);
  } catch (const CLI::ParseError& e) {
    return e.what();
  } catch (const ParsedOnly&) {
  }
  return "";
}

std::string cli_error(const std::string& command_line) {
  return error_of([&] { run_cli(command_line); });
}

// The tiny model and options as `simba train` flags (without the schedule's).
const std::string kTinyFlags =
    " --hidden-size 16 --layers 2 --state-size 4 --batch-size 2 --seq-len 16 --grad-accum 2 --lr 0.01 "
    "--grad-clip 0.5 --eval-batches 1 --log-every 2";

// Rewrites the metadata of a safetensors file, keeping its tensors.
void edit_metadata(const std::string& path, const std::function<void(SafetensorsMetadata&)>& edit) {
  SafetensorsMetadata meta;
  const TensorMap tensors = load_safetensors(path, &meta);
  edit(meta);
  save_safetensors(path, tensors, meta);
}

}  // namespace

TEST_CASE("resume: N steps straight equals K steps + save + load + N-K steps, bitwise") {
  const int64_t N = 6, K = 3;
  const TrainOptions o = tiny_options("resume_straight");
  auto straight = tiny_trainer(o);
  std::vector<double> straight_losses;
  for (int64_t i = 0; i < N; ++i) straight_losses.push_back(loss_of(straight->train_step()));

  TrainOptions oa = o;
  oa.out_dir = g_tmp.file("resume_split");
  auto first = tiny_trainer(oa);
  for (int64_t i = 0; i < K; ++i) CHECK(loss_of(first->train_step()) == straight_losses[static_cast<size_t>(i)]);
  first->save_checkpoint();

  // Another init seed: everything the resumed run uses must come from the checkpoint.
  auto resumed = tiny_trainer(oa, /*model_seed=*/99);
  resumed->restore(load_checkpoint(checkpoint_dir(oa.out_dir)));
  CHECK(resumed->step() == K);
  for (int64_t i = K; i < N; ++i) {
    const StepStats s = resumed->train_step();
    CHECK(s.step == i + 1);
    CHECK(loss_of(s) == straight_losses[static_cast<size_t>(i)]);  // exact
  }
  check_same_state(*straight, *resumed);

  SUBCASE("the same seed and options give bit-identical runs") {
    auto again = tiny_trainer(o);
    for (int64_t i = 0; i < N; ++i) again->train_step();
    check_same_state(*straight, *again);
  }
}

TEST_CASE("checkpoint layout: HF model directory with the step stamped, and the training state") {
  TrainOptions o = tiny_options("layout");
  auto t = tiny_trainer(o);
  t->train_step();
  t->train_step();
  t->save_checkpoint();
  const std::string dir = checkpoint_dir(o.out_dir);
  CHECK(dir == o.out_dir + "/checkpoint");
  SafetensorsMetadata model_meta, state_meta;
  load_safetensors(dir + "/model.safetensors", &model_meta);
  CHECK(model_meta.at("format") == "pt");
  CHECK(model_meta.at("step") == "2");
  const TensorMap state = load_safetensors(dir + "/training_state.safetensors", &state_meta);
  CHECK(state_meta.at("format") == "simba-training-state");
  CHECK(state_meta.at("version") == "1");
  CHECK(state_meta.at("step") == "2");
  CHECK(state_meta.at("data_cursor") == t->data().cursor_state());
  CHECK(nlohmann::json::parse(state_meta.at("options")) == o.to_json());
  CHECK(state.count("step") == 1);
  CHECK(state.count("exp_avg.backbone.layers.0.mixer.A_log") == 1);
  CHECK(state.count("exp_avg_sq.backbone.norm_f.weight") == 1);
  // The weights alone are a model directory MambaLM::load reads, equal to the trainer's.
  const auto loaded = MambaLM::load(dir);
  for (const auto& [name, p] : t->model().state_tensors()) CHECK(same_bytes(p, loaded->state_tensors().at(name)));
}

TEST_CASE("checkpoint switch: a kill at any stage leaves the old or the new checkpoint, and recovery picks the newest") {
  TrainOptions o = tiny_options("switch");
  auto t = tiny_trainer(o);
  const std::string dir = checkpoint_dir(o.out_dir);
  t->train_step();
  t->save_checkpoint();  // step 1
  const std::string one = g_tmp.file("switch_step1");
  fs::remove_all(one);
  fs::copy(dir, one, fs::copy_options::recursive);
  t->train_step();
  t->save_checkpoint();  // step 2
  const std::string two = g_tmp.file("switch_step2");
  fs::remove_all(two);
  fs::copy(dir, two, fs::copy_options::recursive);
  // A save leaves exactly the checkpoint and the metrics log's directory entries behind.
  std::set<std::string> entries;
  for (const auto& e : fs::directory_iterator(o.out_dir)) entries.insert(e.path().filename().string());
  CHECK(entries == std::set<std::string>{"checkpoint"});

  // Each state a kill can leave (train/train_state.h), and the step recovery must end at.
  auto put = [&](const std::string& from, const std::string& to) {
    fs::copy(from, to, fs::copy_options::recursive);
  };
  struct Case {
    const char* name;
    std::function<void()> make;
    int64_t expected_step;
  };
  const std::string partial = dir + ".tmp.4242";
  const std::vector<Case> cases = {
      {"an unfinished first write", [&] { put(one, partial); fs::remove(partial + "/training_state.safetensors"); }, -1},
      {"an unfinished write next to the checkpoint",
       [&] {
         put(one, dir);
         put(two, partial);
         fs::remove(partial + "/training_state.safetensors");
       },
       1},
      {"committed, not switched in", [&] { put(one, dir); put(two, dir + ".new"); }, 2},
      {"between the two renames", [&] { put(one, dir + ".old"); put(two, dir + ".new"); }, 2},
      {"switched, the old one not yet removed", [&] { put(one, dir + ".old"); put(two, dir); }, 2},
      {"the old one half removed", [&] { put(one, dir + ".old"); fs::remove(dir + ".old/config.json"); put(two, dir); },
       2},
  };
  for (const Case& c : cases) {
    INFO(c.name);
    fs::remove_all(o.out_dir);
    fs::create_directories(o.out_dir);
    c.make();
    recover_checkpoint(dir);
    entries.clear();
    for (const auto& e : fs::directory_iterator(o.out_dir)) entries.insert(e.path().filename().string());
    if (c.expected_step < 0) {
      CHECK(entries.empty());
    } else {
      CHECK(entries == std::set<std::string>{"checkpoint"});
      CHECK(load_checkpoint(dir).state.step == c.expected_step);
    }
  }

  // A save after a kill first finishes the interrupted switch, then replaces the result.
  fs::remove_all(o.out_dir);
  fs::create_directories(o.out_dir);
  put(one, dir + ".old");
  put(two, dir + ".new");
  t->train_step();
  t->save_checkpoint();  // step 3
  entries.clear();
  for (const auto& e : fs::directory_iterator(o.out_dir)) entries.insert(e.path().filename().string());
  CHECK(entries == std::set<std::string>{"checkpoint"});
  CHECK(load_checkpoint(dir).state.step == 3);
}

TEST_CASE("NaN/Inf: the step stops with a clear message, updates nothing and keeps the last good checkpoint") {
  TrainOptions o = tiny_options("nan");
  auto t = tiny_trainer(o);
  t->train_step();
  t->train_step();
  t->save_checkpoint();
  const std::string dir = checkpoint_dir(o.out_dir);
  const std::string model_bytes = read_file(dir + "/model.safetensors");
  const std::string state_bytes = read_file(dir + "/training_state.safetensors");

  // Poison one parameter: the next loss is NaN.
  const Variable w = t->model().parameter("backbone.layers.1.mixer.out_proj.weight");
  w.data().data<float>()[3] = std::nanf("");
  const Tensor embeddings_before = t->model().parameter("backbone.embeddings.weight").data().clone();
  // Step 3's update skips where the norm is computed; the host reads that norm in the next
  // step, which reports step 3 before it updates anything itself.
  t->train_step();
  CHECK(same_bytes(t->model().parameter("backbone.embeddings.weight").data(), embeddings_before));
  const std::string msg = error_of([&] { t->train_step(); });
  CHECK(contains(msg, "training stopped at step 3: the loss is not finite (loss nan"));
  CHECK(contains(msg, "no parameter was updated"));
  CHECK(contains(msg, "lower the learning rate (--lr 0.01"));
  CHECK(contains(msg, "the last good checkpoint, '" + dir + "' (step 2), was kept"));
  CHECK(t->step() == 2);
  CHECK(t->optimizer().step_count() == 2);
  CHECK(same_bytes(t->model().parameter("backbone.embeddings.weight").data(), embeddings_before));

  // check_step and save_checkpoint report it as well, without another step.
  t->train_step();
  CHECK(contains(error_of([&] { t->check_step(); }), "training stopped at step 3: the loss is not finite"));
  CHECK(t->step() == 2);
  t->train_step();
  CHECK(contains(error_of([&] { t->save_checkpoint(); }), "training stopped at step 3: the loss is not finite"));
  CHECK(t->step() == 2);
  CHECK(t->optimizer().step_count() == 2);
  CHECK(same_bytes(t->model().parameter("backbone.embeddings.weight").data(), embeddings_before));

  // A checkpoint of non-finite parameters is refused; the files stay as they were.
  const std::string save_msg = error_of([&] { t->save_checkpoint(); });
  CHECK(contains(save_msg, "refusing to save a checkpoint at step 2: parameter "
                           "'backbone.layers.1.mixer.out_proj.weight' holds NaN or Inf"));
  CHECK(read_file(dir + "/model.safetensors") == model_bytes);
  CHECK(read_file(dir + "/training_state.safetensors") == state_bytes);

  SUBCASE("an absurd learning rate diverges and Trainer::run stops with the message") {
    TrainOptions big = tiny_options("nan_lr");
    big.lr = 1e30;
    big.steps = 20;
    big.save_every = 0;
    auto diverging = tiny_trainer(big);
    std::ostringstream out;
    const std::string run_msg = error_of([&] { diverging->run(out); });
    CHECK(contains(run_msg, "is not finite"));
    CHECK(contains(run_msg, "lower the learning rate (--lr 1e+30"));
    CHECK(contains(run_msg, "no checkpoint had been written yet"));
    CHECK(!fs::exists(checkpoint_dir(big.out_dir)));
  }
}

TEST_CASE("divergence guard: exploded but finite weights are not saved over the last good checkpoint") {
  TrainOptions o = tiny_options("diverged");
  auto t = tiny_trainer(o);
  t->train_step();
  t->train_step();
  t->save_checkpoint();
  const std::string dir = checkpoint_dir(o.out_dir);
  const std::string model_bytes = read_file(dir + "/model.safetensors");

  // About what one AdamW step at lr 1e6 does: every weight moves by 1e6. All finite.
  for (const auto& [name, p] : t->model().named_parameters()) {
    Tensor weights = p.data();  // shares the parameter's storage
    weights.fill_(1e6);
  }
  const std::string msg = error_of([&] { t->save_checkpoint(); });
  CHECK(contains(msg, "training stopped at step 2: the model has diverged: its loss on the first validation batch is "));
  CHECK(contains(msg, "a checkpoint needs a finite loss of at most 2 ln V = 11.09"));
  CHECK(contains(msg, "the checkpoint of step 2 was not written"));
  CHECK(contains(msg, "the last good checkpoint, '" + dir + "' (step 2), was kept"));
  CHECK(read_file(dir + "/model.safetensors") == model_bytes);

  // The last good checkpoint loads and has a finite loss below the bound.
  const auto good = MambaLM::load(dir);
  const double good_loss = evaluate(*good, t->data(), o.batch_size, o.seq_len, o.eval_batches).loss;
  CHECK(std::isfinite(good_loss));
  CHECK(good_loss < 2.0 * std::log(256.0));
}

TEST_CASE("simba train: --lr 1e6 --grad-clip 0 --warmup 0 --save-every 1 stops without writing exploded weights") {
  const std::string data = write_text("diverge_data.txt", toy_text(120));
  const std::string out = g_tmp.file("cli_diverge");
  const std::string model = " --hidden-size 16 --layers 2 --state-size 4 --batch-size 2 --seq-len 16 --eval-batches 1";
  fs::remove_all(out);
  const std::string msg =
      cli_error("train --data " + data + " --out " + out + model + " --lr 1e6 --grad-clip 0 --warmup 0 --save-every 1");
  CHECK(contains(msg, "training stopped at step 1: the model has diverged: its loss on the first validation batch is "));
  CHECK(contains(msg, "no checkpoint had been written yet"));
  CHECK(!fs::exists(checkpoint_dir(out)));

  // A learning rate that warms up into divergence: checkpoints are written until the
  // model diverges, and the error names the last one, which evaluates to a finite loss.
  // Which peak rate first diverges after a checkpoint depends on the platform's rounding
  // (FMA, BLAS kernels), so the rates are tried in increasing order until one does.
  const std::string named = "the last good checkpoint, '" + checkpoint_dir(out) + "' (step ";
  std::string later;
  for (const char* lr : {"1", "3", "10", "30", "100"}) {
    fs::remove_all(out);
    later = cli_error("train --data " + data + " --out " + out + model + " --steps 30 --lr " + lr +
                      " --grad-clip 0 --warmup 10 --save-every 1");
    if (contains(later, "the model has diverged") && contains(later, named)) break;
  }
  INFO(later);
  CHECK(contains(later, "the model has diverged"));
  REQUIRE(contains(later, named));
  const int64_t good_step = std::stoll(later.substr(later.find(named) + named.size()));
  CHECK(good_step >= 1);
  CHECK(contains(later, "training stopped at step " + std::to_string(good_step + 1) + ": "));
  const Checkpoint good = load_checkpoint(checkpoint_dir(out));
  CHECK(good.state.step == good_step);
  const TrainOptions defaults;
  const TextData text = TextData::from_file(data, ByteTokenizer(), defaults.val_fraction, defaults.seed);
  const double good_loss = evaluate(*MambaLM::load(checkpoint_dir(out)), text, 2, 16, 1).loss;
  MESSAGE("--lr 3 --warmup 10: diverged after step " << good_step << ", whose checkpoint has loss " << good_loss);
  CHECK(std::isfinite(good_loss));
  CHECK(good_loss <= 2.0 * std::log(256.0));
}

TEST_CASE("weight decay groups: norms, biases, A_log and D are not decayed, and nothing else") {
  MambaConfig cfg = tiny_train_config();
  cfg.use_bias = true;  // in_proj/out_proj biases exist too
  cfg.tie_word_embeddings = false;
  TrainOptions o = tiny_options("groups");
  o.weight_decay = 0.25;
  Trainer t(o, std::make_shared<MambaLM>(cfg, 1), toy_data(o));
  const auto& groups = t.optimizer().groups();
  REQUIRE(groups.size() == 2);
  CHECK(groups[0].weight_decay == 0.25);
  CHECK(groups[1].weight_decay == 0.0);
  std::set<std::string> no_decay, decay;
  for (const auto& [name, p] : groups[1].params) no_decay.insert(name);
  for (const auto& [name, p] : groups[0].params) decay.insert(name);
  std::set<std::string> expected_no_decay = {"backbone.norm_f.weight"};
  std::set<std::string> expected_decay = {"backbone.embeddings.weight", "lm_head.weight"};
  for (int l = 0; l < 2; ++l) {
    const std::string p = "backbone.layers." + std::to_string(l) + ".";
    for (const char* n : {"norm.weight", "mixer.A_log", "mixer.D", "mixer.conv1d.bias", "mixer.dt_proj.bias",
                          "mixer.in_proj.bias", "mixer.out_proj.bias"})
      expected_no_decay.insert(p + n);
    for (const char* n : {"mixer.in_proj.weight", "mixer.conv1d.weight", "mixer.x_proj.weight", "mixer.dt_proj.weight",
                          "mixer.out_proj.weight"})
      expected_decay.insert(p + n);
  }
  CHECK(no_decay == expected_no_decay);
  CHECK(decay == expected_decay);
  CHECK(!is_no_decay_parameter("backbone.layers.0.mixer.Dx"));
  CHECK(!is_no_decay_parameter("backbone.layers.0.mixer.x_proj.weight"));
}

TEST_CASE("gradient accumulation: 2 micro-batches of B give the gradient of one batch of 2B") {
  TrainOptions accum = tiny_options("accum2"), single = tiny_options("accum1");
  accum.batch_size = 3;
  accum.grad_accum = 2;
  single.batch_size = 6;
  single.grad_accum = 1;
  // Two draws of B windows take the same starts as one draw of 2B, so both see the same 6 windows.
  auto a = tiny_trainer(accum), b = tiny_trainer(single);
  const double loss_a = mean_losses({a->accumulate_gradients()})[0];
  const double loss_b = mean_losses({b->accumulate_gradients()})[0];
  CHECK(std::abs(loss_a - loss_b) <= 1e-6 * std::abs(loss_b));
  double max_rel = 0.0;
  for (const auto& [name, p] : a->model().named_parameters()) {
    const std::vector<double> ga = p.grad().to_vector(), gb = b->model().parameter(name).grad().to_vector();
    double scale = 0.0, diff = 0.0;
    for (size_t i = 0; i < ga.size(); ++i) {
      scale = std::max(scale, std::abs(gb[i]));
      diff = std::max(diff, std::abs(ga[i] - gb[i]));
    }
    INFO(name << ": max |diff| " << diff << ", max |grad| " << scale);
    CHECK(diff <= 1e-5 * scale + 1e-9);
    if (scale > 0.0) max_rel = std::max(max_rel, diff / scale);
  }
  MESSAGE("accumulation vs one batch: max relative gradient difference " << max_rel);
  // A batch of 2B with no accumulation is not the same draw order as B with 2 steps: the test would be vacuous otherwise.
  CHECK(a->data().batches_drawn() == 2);
  CHECK(b->data().batches_drawn() == 1);
}

TEST_CASE("training reduces the validation loss on a repetitive toy text within a few dozen steps") {
  TrainOptions o = tiny_options("learns");
  o.steps = 40;
  o.lr = 0.03;
  o.batch_size = 4;
  o.grad_accum = 1;
  o.seq_len = 32;
  o.warmup_steps = 4;
  o.grad_clip = 1.0;
  o.eval_every = 20;
  o.save_every = 0;
  o.log_every = 10;
  auto t = tiny_trainer(o);
  const ValidationResult before = t->validate();
  std::ostringstream out;
  const ValidationResult after = t->run(out);
  MESSAGE("toy text: validation bits/byte " << before.bits_per_byte << " -> " << after.bits_per_byte);
  CHECK(before.bits_per_byte > 7.5);  // a fresh model is near uniform over 256 bytes (8 bits)
  CHECK(after.bits_per_byte < 2.5);  // observed 1.53
  CHECK(after.bits_per_byte == doctest::Approx(after.loss / std::log(2.0)).epsilon(1e-12));
  CHECK(t->step() == 40);

  // What the run printed and logged.
  const std::string printed = out.str();
  CHECK(contains(printed, "validation bits/byte: "));
  CHECK(contains(printed, "step 10/40 | loss "));
  CHECK(contains(printed, "step 40/40 | loss "));
  CHECK(contains(printed, "checkpoint: '" + checkpoint_dir(o.out_dir) + "' (step 40)"));
  std::istringstream log(read_file(o.out_dir + "/metrics.jsonl"));
  std::string line;
  int step_records = 0, validation_records = 0;
  while (std::getline(log, line)) {
    const nlohmann::json r = nlohmann::json::parse(line);
    if (r.contains("loss")) {
      ++step_records;
      for (const char* key : {"step", "lr", "grad_norm", "tokens_per_sec", "elapsed"}) CHECK(r.contains(key));
    }
    if (r.contains("val_bpb")) {
      ++validation_records;
      CHECK(r.contains("val_loss"));
    }
  }
  CHECK(step_records == 40);
  CHECK(validation_records == 3);  // step 0, step 20, the end
}

TEST_CASE("mixed precision: bfloat16 copy of float32 master weights, its gradients widened, resume bit-identical") {
  TrainOptions o = tiny_options("mixed_straight");
  o.dtype = DType::BF16;
  auto t = tiny_trainer(o);
  const MambaLM& master = t->model();
  const MambaLM& copy = t->compute_model();
  REQUIRE(&copy != &master);
  // The copy holds the master's values rounded to bfloat16, before the first step and after each.
  auto check_copy = [](const Trainer& tr) {
    const auto m = tr.model().named_parameters(), c = tr.compute_model().named_parameters();
    REQUIRE(m.size() == c.size());
    for (size_t i = 0; i < m.size(); ++i) {
      INFO("parameter " << m[i].first);
      CHECK(m[i].first == c[i].first);
      CHECK(m[i].second.dtype() == DType::F32);
      CHECK(same_bytes(c[i].second.data(), m[i].second.data().to(DType::BF16)));
    }
  };
  check_copy(*t);

  // Backward runs on the copy; the master's gradients are the copy's, widened exactly.
  const Tensor losses = t->accumulate_gradients();
  CHECK(std::isfinite(mean_losses({losses})[0]));
  for (const auto& [name, p] : master.named_parameters()) {
    INFO("parameter " << name);
    REQUIRE(p.grad().defined());
    CHECK(p.grad().dtype() == DType::F32);
    // A float32 gradient that came from bfloat16 survives rounding back to bfloat16 unchanged.
    CHECK(same_bytes(p.grad().to(DType::BF16).to(DType::F32), p.grad()));
  }
  for (const auto& [name, p] : copy.named_parameters()) CHECK(!p.grad().defined());  // released after the transfer

  // The same run in float32 from the same model: every step's loss agrees to bfloat16 precision.
  TrainOptions o32 = o;
  o32.dtype = DType::F32;
  o32.out_dir = g_tmp.file("mixed_f32");
  auto t32 = tiny_trainer(o32);
  auto t16 = tiny_trainer(o);
  std::vector<double> losses16;
  for (int64_t i = 0; i < o.steps; ++i) {
    const double l32 = loss_of(t32->train_step()), l16 = loss_of(t16->train_step());
    CHECK(std::fabs(l16 - l32) <= 2e-2 * std::fabs(l32));
    CHECK(l16 != l32);  // the steps did run in bfloat16
    losses16.push_back(l16);
  }
  CHECK(t16->validate().loss == doctest::Approx(t32->validate().loss).epsilon(2e-2));

  // Stopped after K steps and resumed (a fresh trainer, another init seed): bit-identical to t16.
  TrainOptions ok = o;
  ok.out_dir = g_tmp.file("mixed_split");
  auto first = tiny_trainer(ok);
  for (int64_t i = 0; i < 3; ++i) CHECK(loss_of(first->train_step()) == losses16[static_cast<size_t>(i)]);
  first->save_checkpoint();
  // The checkpoint holds the float32 master.
  for (const auto& [name, t] : load_model_weights(checkpoint_dir(ok.out_dir))) CHECK(t.dtype() == DType::F32);
  auto resumed = tiny_trainer(ok, /*model_seed=*/99);
  resumed->restore(load_checkpoint(checkpoint_dir(ok.out_dir)));
  for (int64_t i = 3; i < o.steps; ++i) CHECK(loss_of(resumed->train_step()) == losses16[static_cast<size_t>(i)]);
  check_same_state(*t16, *resumed);
  check_copy(*resumed);

  SUBCASE("the dtype is an optimisation option: saved, enforced on resume, float32 for older checkpoints") {
    CHECK(o.to_json()["dtype"] == "bfloat16");
    CHECK(TrainOptions::from_json(o.to_json(), "src").dtype == DType::BF16);
    nlohmann::json j = o.to_json();
    j.erase("dtype");  // a run saved before --dtype existed
    CHECK(TrainOptions::from_json(j, "src").dtype == DType::F32);
    j["dtype"] = "float16";
    CHECK(contains(error_of([&] { TrainOptions::from_json(j, "src"); }),
                   "src: training option 'dtype' must be \"float32\" or \"bfloat16\", got \"float16\""));
    CHECK(contains(error_of([&] { o32.check_resumable(o, 3, "ckpt"); }),
                   "--dtype is float32, but the run in 'ckpt' was trained with --dtype bfloat16"));
    CHECK(o32.overridden_by(o, {"--dtype"}).dtype == DType::BF16);
    TrainOptions bad = o;
    bad.dtype = DType::F64;
    CHECK(contains(error_of([&] { bad.validate(); }), "--dtype must be float32 or bfloat16, got float64"));
    const std::string flags = "train --data " + write_text("mixed.txt", toy_text(10)) + " --out y --dtype ";
    CHECK(cli_parse_error(flags + "bf16") == "");
    CHECK(cli_parse_error(flags + "fp32") == "");
    CHECK(contains(cli_parse_error(flags + "float16"), "--dtype: Check float16 value in"));
  }
}

TEST_CASE("options: JSON round trip, overrides, and every bad value named by its flag") {
  TrainOptions o;
  o.steps = 50;
  CHECK(o.resolved_warmup() == 5);
  CHECK(o.resolved_min_lr() == doctest::Approx(o.lr / 10));
  CHECK(o.resolved_log_file() == o.out_dir + "/metrics.jsonl");
  const TrainOptions back = TrainOptions::from_json(o.to_json(), "test");
  CHECK(back.to_json() == o.to_json());
  CHECK(back.warmup_steps == std::optional<int64_t>(5));

  TrainOptions given;
  given.lr = 0.5;
  given.steps = 77;
  const TrainOptions merged = o.overridden_by(given, {"--steps", "--data"});
  CHECK(merged.steps == 77);
  CHECK(merged.lr == o.lr);

  auto bad = [](const std::function<void(TrainOptions&)>& edit) {
    TrainOptions b;
    edit(b);
    return error_of([&] { b.validate(); });
  };
  CHECK(contains(bad([](TrainOptions& b) { b.batch_size = 0; }), "--batch-size must be >= 1, got 0"));
  CHECK(contains(bad([](TrainOptions& b) { b.seq_len = -3; }), "--seq-len must be >= 1, got -3"));
  CHECK(contains(bad([](TrainOptions& b) { b.grad_accum = 0; }), "--grad-accum must be >= 1, got 0"));
  CHECK(contains(bad([](TrainOptions& b) { b.steps = 0; }), "--steps must be >= 1, got 0"));
  CHECK(contains(bad([](TrainOptions& b) { b.lr = 0; }), "--lr must be a finite number > 0, got 0"));
  CHECK(contains(bad([](TrainOptions& b) { b.lr = INFINITY; }), "--lr must be a finite number > 0, got inf"));
  CHECK(contains(bad([](TrainOptions& b) { b.min_lr = 0.01; }), "--min-lr must be in [0, --lr] = [0, 0.006], got 0.01"));
  CHECK(contains(bad([](TrainOptions& b) { b.warmup_steps = 2000; }),
                 "--warmup must be in [0, --steps] = [0, 1000], got 2000"));
  CHECK(contains(bad([](TrainOptions& b) { b.weight_decay = -1; }), "--weight-decay must be a finite number >= 0, got -1"));
  CHECK(contains(bad([](TrainOptions& b) { b.beta1 = 1; }), "--beta1 must be in [0, 1), got 1"));
  CHECK(contains(bad([](TrainOptions& b) { b.beta2 = NAN; }), "--beta2 must be in [0, 1), got nan"));
  CHECK(contains(bad([](TrainOptions& b) { b.grad_clip = -0.5; }), "--grad-clip must be a finite number >= 0"));
  CHECK(contains(bad([](TrainOptions& b) { b.val_fraction = 0; }), "--val-fraction must be in (0, 1), got 0"));
  CHECK(contains(bad([](TrainOptions& b) { b.eval_every = -1; }), "--eval-every must be >= 0, got -1"));
  CHECK(contains(bad([](TrainOptions& b) { b.eval_batches = 0; }), "--eval-batches must be >= 1, got 0"));
  CHECK(contains(bad([](TrainOptions& b) { b.save_every = -2; }), "--save-every must be >= 0, got -2"));
  CHECK(contains(bad([](TrainOptions& b) { b.log_every = 0; }), "--log-every must be >= 1, got 0"));
  CHECK(contains(bad([](TrainOptions& b) { b.out_dir = ""; }), "--out must name a directory"));

  // The Trainer checks them too, and checks the data against the window and the vocabulary.
  TrainOptions o2 = tiny_options("bad_trainer");
  o2.lr = -1;
  CHECK(contains(error_of([&] { tiny_trainer(o2); }), "--lr must be a finite number > 0, got -1"));
  o2 = tiny_options("bad_trainer");
  o2.seq_len = 2000;
  CHECK(contains(error_of([&] { tiny_trainer(o2); }),
                 "text data 'toy text': the validation split has 438 tokens, but a window of length L = 2000 "
                 "needs at least L+1 = 2001"));
  o2 = tiny_options("bad_trainer");
  MambaConfig small_vocab = tiny_train_config();
  small_vocab.vocab_size = 64;
  CHECK(contains(error_of([&] { Trainer(o2, std::make_shared<MambaLM>(small_vocab, 1), toy_data(o2)); }),
                 "is outside the model's vocabulary [0, 64)"));

  // Options read back from a checkpoint: missing keys and wrong types name the key.
  nlohmann::json j = o.to_json();
  j.erase("lr");
  CHECK(contains(error_of([&] { TrainOptions::from_json(j, "src"); }), "src: training options have no 'lr'"));
  j = o.to_json();
  j["seq_len"] = "long";
  CHECK(contains(error_of([&] { TrainOptions::from_json(j, "src"); }),
                 "src: training option 'seq_len' must be an integer, got \"long\""));
  j = o.to_json();
  j["seed"] = -1;
  CHECK(contains(error_of([&] { TrainOptions::from_json(j, "src"); }),
                 "training option 'seed' must be a non-negative integer, got -1"));
  CHECK(contains(error_of([&] { TrainOptions::from_json(nlohmann::json::array(), "src"); }),
                 "src: training options must be a JSON object, got array"));
}

TEST_CASE("resume errors: missing, torn or malformed checkpoints and changed options are named") {
  TrainOptions o = tiny_options("resume_errors");
  auto t = tiny_trainer(o);
  t->train_step();
  t->save_checkpoint();
  const std::string dir = checkpoint_dir(o.out_dir);
  const std::string state_path = dir + "/training_state.safetensors", model_path = dir + "/model.safetensors";
  const std::string good_state = read_file(state_path), good_model = read_file(model_path);
  auto restore_good = [&] {
    write_file_atomic(state_path, good_state);
    write_file_atomic(model_path, good_model);
  };
  auto resume_error = [&](const TrainOptions& opts) {
    return error_of([&] { tiny_trainer(opts)->restore(load_checkpoint(checkpoint_dir(opts.out_dir))); });
  };
  REQUIRE(resume_error(o) == "");

  SUBCASE("no checkpoint directory, or one without config.json") {
    CHECK(contains(error_of([&] { load_checkpoint(g_tmp.file("nowhere")); }),
                   "checkpoint directory '" + g_tmp.file("nowhere") + "' does not exist"));
    fs::create_directories(g_tmp.file("half"));
    write_text("half/model.safetensors", "x");
    CHECK(contains(error_of([&] { load_checkpoint(g_tmp.file("half")); }),
                   "checkpoint '" + g_tmp.file("half") + "' has no config.json"));
  }
  SUBCASE("a weights-only directory: no training_state, hint --init") {
    const std::string weights_only = g_tmp.file("weights_only");
    t->model().save(weights_only);
    const std::string msg = error_of([&] { load_checkpoint(weights_only); });
    CHECK(contains(msg, "has no training_state.safetensors: it holds model weights only"));
    CHECK(contains(msg, "--init " + weights_only));
  }
  SUBCASE("a torn checkpoint: the model of step 2 next to the state of step 1") {
    t->train_step();
    t->save_checkpoint();
    write_file_atomic(state_path, good_state);
    const std::string msg = error_of([&] { load_checkpoint(dir); });
    CHECK(contains(msg, "torn checkpoint '" + dir + "': model.safetensors is at step 2 but "
                        "training_state.safetensors is at step 1"));
    restore_good();
  }
  SUBCASE("model.safetensors without a step stamp, or a malformed one") {
    edit_metadata(model_path, [](SafetensorsMetadata& m) { m.erase("step"); });
    std::string msg = error_of([&] { load_checkpoint(dir); });
    CHECK(contains(msg, "'" + model_path + "' has no 'step' entry in its __metadata__"));
    CHECK(contains(msg, "not saved by simba train"));
    edit_metadata(model_path, [](SafetensorsMetadata& m) { m["step"] = "1.0"; });
    msg = error_of([&] { load_checkpoint(dir); });
    CHECK(contains(msg, "'" + model_path + "': metadata 'step' is '1.0', expected a non-negative integer"));
    restore_good();
  }
  SUBCASE("a checkpoint without model.safetensors") {
    const std::string no_weights = g_tmp.file("no_weights");
    fs::create_directories(no_weights);
    fs::copy_file(dir + "/config.json", no_weights + "/config.json", fs::copy_options::overwrite_existing);
    CHECK(contains(error_of([&] { load_checkpoint(no_weights); }),
                   "checkpoint '" + no_weights + "' has no model.safetensors"));
  }
  SUBCASE("malformed or missing training-state metadata") {
    struct Case {
      const char* key;
      const char* value;  // nullptr: remove the entry
      std::string expected;
    };
    const std::vector<Case> cases = {
        {"step", "two", "metadata 'step' is 'two', expected a non-negative integer"},
        {"step", "-1", "metadata 'step' is '-1', expected a non-negative integer"},
        {"step", nullptr, "has no 'step' entry in its __metadata__"},
        {"format", "pt", "is not a simba training state: metadata 'format' is 'pt'"},
        {"format", nullptr, "has no 'format' entry in its __metadata__"},
        {"version", "2", "has training-state version '2'; this simba reads version 1"},
        {"version", nullptr, "has no 'version' entry in its __metadata__"},
        {"data_cursor", nullptr, "has no 'data_cursor' entry in its __metadata__"},
        {"data_cursor", "garbage", "malformed data cursor 'garbage'"},
        {"options", "{not json", "metadata 'options': not valid JSON"},
        {"options", "[1, 2]", "metadata 'options' is not a JSON object"},
        {"options", "{}", "training options have no 'batch_size'"},
        {"elapsed_seconds", "soon", "metadata 'elapsed_seconds' is 'soon', expected a number >= 0"},
        {"elapsed_seconds", "-3", "metadata 'elapsed_seconds' is '-3', expected a number >= 0"},
        {"elapsed_seconds", nullptr, "has no 'elapsed_seconds' entry in its __metadata__"},
    };
    for (const Case& c : cases) {
      INFO("metadata " << c.key << " = " << (c.value ? c.value : "(removed)"));
      edit_metadata(state_path, [&](SafetensorsMetadata& m) {
        if (c.value) m[c.key] = c.value;
        else m.erase(c.key);
      });
      const std::string msg = resume_error(o);
      CHECK(contains(msg, c.expected));
      restore_good();
    }
  }
  SUBCASE("optimiser state tensors that do not fit the model") {
    SafetensorsMetadata meta;
    TensorMap tensors = load_safetensors(state_path, &meta);
    tensors.erase("exp_avg.backbone.norm_f.weight");
    save_safetensors(state_path, tensors, meta);
    std::string msg = resume_error(o);
    CHECK(contains(msg, "'" + state_path + "': AdamW"));
    CHECK(contains(msg, "exp_avg.backbone.norm_f.weight"));
    restore_good();

    tensors = load_safetensors(state_path, &meta);
    tensors["step"] = Tensor::scalar(7, DType::I64);
    save_safetensors(state_path, tensors, meta);
    msg = resume_error(o);
    CHECK(contains(msg, "the optimiser state has taken 7 steps, but the metadata says step 1"));
    restore_good();
  }
  SUBCASE("changed optimisation options, too few steps, another model, other data") {
    TrainOptions changed = o;
    changed.lr = 0.02;
    std::string msg = resume_error(changed);
    CHECK(contains(msg, "--lr is 0.02, but the run in '" + state_path + "' was trained with --lr 0.01"));
    CHECK(contains(msg, "leave --lr out to use the checkpoint's value"));
    changed = o;
    changed.grad_accum = 1;
    CHECK(contains(resume_error(changed), "--grad-accum is 1, but the run in"));
    changed = o;
    changed.warmup_steps.reset();  // resolves to steps / 10 = 0, the run used 2
    CHECK(contains(resume_error(changed), "--warmup is 0, but the run in"));
    changed = o;
    changed.steps = 10;
    changed.eval_every = 3;  // reporting options and a longer run are allowed
    CHECK(resume_error(changed) == "");

    MambaConfig other = tiny_train_config();
    other.hidden_size = 8;
    other.time_step_rank = 1;
    Trainer wrong_model(o, std::make_shared<MambaLM>(other, 1), toy_data(o));
    msg = error_of([&] { wrong_model.restore(load_checkpoint(dir)); });
    CHECK(contains(msg, "checkpoint '" + dir + "' holds a model with hidden_size = 16, but this run's model has "
                        "hidden_size = 8"));

    Trainer other_data(o, std::make_shared<MambaLM>(tiny_train_config(), 1), toy_data(o, toy_text(150)));
    msg = error_of([&] { other_data.restore(load_checkpoint(dir)); });
    CHECK(contains(msg, "the data cursor was saved for a train split of"));
  }
  SUBCASE("--steps below the checkpoint's step") {
    t->train_step();
    t->train_step();
    t->save_checkpoint();
    TrainOptions fewer = o;
    fewer.steps = 2;
    fewer.warmup_steps = 2;
    CHECK(contains(resume_error(fewer), "--steps 2 is below the step of the checkpoint in '" + state_path + "' (3)"));
    restore_good();
  }
}

TEST_CASE("simba train: a run, its files and output, and --resume continuing it bit-identically") {
  const std::string data = write_text("cli_data.txt", toy_text(120));
  const std::string straight = g_tmp.file("cli_straight"), split = g_tmp.file("cli_split");
  // doctest runs this body once per SUBCASE: start from empty run directories each time.
  for (const std::string& dir : {straight, split, g_tmp.file("cli_init"), g_tmp.file("cli_config")}) fs::remove_all(dir);
  // A constant learning rate (--warmup 0, --min-lr = --lr), so that a run
  // planned for 3 steps and extended to 6 follows the same schedule as a run
  // planned for 6: then the two must end bit-identical.
  const std::string flags = kTinyFlags + " --warmup 0 --min-lr 0.01";
  const std::string printed = run_cli("train --data " + data + " --out " + straight + " --steps 6 --save-every 3" + flags);
  CHECK(contains(printed, "validation bits/byte: "));
  CHECK(contains(printed, "step 6/6 | loss "));
  CHECK(contains(printed, "checkpoint: '" + straight + "/checkpoint' (step 6)"));
  for (const char* file : {"/checkpoint/config.json", "/checkpoint/model.safetensors",
                           "/checkpoint/training_state.safetensors", "/metrics.jsonl"})
    CHECK(fs::exists(straight + file));

  run_cli("train --data " + data + " --out " + split + " --steps 3" + flags);
  // Only --steps and a reporting flag: model and optimisation come from the checkpoint.
  const std::string resumed = run_cli("train --data " + data + " --out " + split + " --resume --steps 6 --log-every 1");
  CHECK(contains(resumed, "resuming from '" + split + "/checkpoint' at step 3"));
  CHECK(contains(resumed, "step 4/6 | loss "));
  const auto a = MambaLM::load(straight + "/checkpoint"), b = MambaLM::load(split + "/checkpoint");
  for (const auto& [name, p] : a->state_tensors()) {
    INFO(name);
    CHECK(same_bytes(p, b->state_tensors().at(name)));
  }
  const TensorMap sa = load_safetensors(straight + "/checkpoint/training_state.safetensors");
  const TensorMap sb = load_safetensors(split + "/checkpoint/training_state.safetensors");
  for (const auto& [name, t] : sa) CHECK(same_bytes(t, sb.at(name)));

  // The per-step losses of steps 4..6 in both metrics logs are equal.
  auto losses = [](const std::string& path) {
    std::map<int64_t, double> out;
    std::istringstream log(read_file(path));
    std::string line;
    while (std::getline(log, line)) {
      const nlohmann::json r = nlohmann::json::parse(line);
      if (r.contains("loss")) out[r["step"].get<int64_t>()] = r["loss"].get<double>();
    }
    return out;
  };
  const auto la = losses(straight + "/metrics.jsonl"), lb = losses(split + "/metrics.jsonl");
  for (int64_t step = 1; step <= 6; ++step) CHECK(la.at(step) == lb.at(step));

  SUBCASE("--resume with a changed optimisation flag, on a missing run, or a new run over a checkpoint") {
    std::string msg = cli_error("train --data " + data + " --out " + split + " --resume --lr 0.5");
    CHECK(contains(msg, "--lr is 0.5, but the run in '" + split + "/checkpoint/training_state.safetensors' was "
                        "trained with --lr 0.01"));
    msg = cli_error("train --data " + data + " --out " + g_tmp.file("cli_none") + " --resume");
    CHECK(contains(msg, "--resume: there is no checkpoint to resume at '" + g_tmp.file("cli_none") + "/checkpoint'"));
    msg = cli_error("train --data " + data + " --out " + straight + flags);
    CHECK(contains(msg, "--out '" + straight + "' already holds a checkpoint"));
    CHECK(contains(msg, "pass --resume to continue that run"));
  }
  SUBCASE("--init starts a new run from a model directory's weights; --config from a config file") {
    const std::string init_out = g_tmp.file("cli_init");
    const std::string out = run_cli("train --data " + data + " --out " + init_out + " --init " + straight +
                                    "/checkpoint --steps 1 --batch-size 2 --seq-len 16 --eval-batches 1");
    CHECK(contains(out, "step 1/1 | loss "));
    // The run's first validation scores the initial weights: those of the straight run's end.
    nlohmann::json first_val;
    std::istringstream log(read_file(init_out + "/metrics.jsonl"));
    std::string line;
    while (std::getline(log, line) && first_val.is_null()) {
      const nlohmann::json r = nlohmann::json::parse(line);
      if (r.contains("val_loss")) first_val = r;
    }
    const TrainOptions defaults;
    const TextData text = TextData::from_file(data, ByteTokenizer(), defaults.val_fraction, defaults.seed);
    CHECK(first_val["val_loss"].get<double>() == evaluate(*a, text, 2, 16, 1).loss);

    const std::string config_out = g_tmp.file("cli_config");
    run_cli("train --data " + data + " --out " + config_out + " --config " + straight +
            "/checkpoint/config.json --steps 1 --batch-size 2 --seq-len 16 --eval-batches 1");
    CHECK(MambaConfig::from_json_file(config_out + "/checkpoint/config.json").to_json() == a->config().to_json());
  }
}

TEST_CASE("simba train: a run killed before its first checkpoint is started again; a resume cuts the log back") {
  const std::string data = write_text("restart_data.txt", toy_text(120));
  const std::string out = g_tmp.file("cli_restart");
  fs::remove_all(out);
  // What a run killed during its first checkpoint write leaves.
  fs::create_directories(out + "/checkpoint.tmp.31337");
  write_text("cli_restart/checkpoint.tmp.31337/config.json", "{}");
  write_text("cli_restart/metrics.jsonl", "{\"event\":\"start\",\"step\":0}\n{\"step\":1,\"loss\":9.0}\n");
  write_text("cli_restart/metrics.jsonl.tmp.31337", "");

  std::string msg = cli_error("train --data " + data + " --out " + out + " --resume");
  CHECK(contains(msg, "--resume: there is no checkpoint to resume at '" + out + "/checkpoint': the run stopped before "
                      "it completed its first checkpoint, so there is nothing to resume"));
  CHECK(contains(msg, "start the run again without --resume"));

  run_cli("train --data " + data + " --out " + out + " --steps 2" + kTinyFlags);
  std::set<std::string> entries;
  for (const auto& e : fs::directory_iterator(out)) entries.insert(e.path().filename().string());
  CHECK(entries == std::set<std::string>{"checkpoint", "metrics.jsonl"});
  auto loss_steps = [&] {
    std::vector<int64_t> steps;
    std::istringstream log(read_file(out + "/metrics.jsonl"));
    std::string line;
    while (std::getline(log, line)) {
      const nlohmann::json r = nlohmann::json::parse(line);
      if (r.contains("loss")) steps.push_back(r["step"].get<int64_t>());
    }
    return steps;
  };
  CHECK(loss_steps() == std::vector<int64_t>{1, 2});  // the killed run's records are gone
  msg = cli_error("train --data " + data + " --out " + out + " --steps 2" + kTinyFlags);
  CHECK(contains(msg, "--out '" + out + "' already holds a checkpoint"));

  // A process killed after step 4, its last checkpoint at step 2: its records of steps 3 and 4 are dropped.
  const std::string log_path = out + "/metrics.jsonl";
  write_file_atomic(log_path, read_file(log_path) + "{\"step\":3,\"loss\":1.0}\n{\"step\":4,\"loss\":1.0}\n{\"st");
  run_cli("train --data " + data + " --out " + out + " --resume --steps 4");
  CHECK(loss_steps() == std::vector<int64_t>{1, 2, 3, 4});
  CHECK(read_file(log_path).find("\"loss\":1.0}") == std::string::npos);
}

TEST_CASE("simba train: bad flags are errors naming the flag") {
  const std::string data = write_text("flags_data.txt", toy_text(120));
  const std::string base = "train --data " + data + " --out " + g_tmp.file("flags_out");
  struct Case {
    std::string args;
    std::string expected;
  };
  const std::vector<Case> parse_cases = {
      {" --steps 0", "--steps: expected an integer >= 1, got '0'"},
      {" --steps ten", "--steps: expected an integer >= 1, got 'ten'"},
      {" --batch-size 1.5", "--batch-size: expected an integer >= 1, got '1.5'"},
      {" --seq-len -4", "--seq-len: expected an integer >= 1, got '-4'"},
      {" --grad-accum 0", "--grad-accum: expected an integer >= 1, got '0'"},
      {" --warmup -1", "--warmup: expected an integer >= 0, got '-1'"},
      {" --lr 0", "--lr: expected a finite number > 0, got '0'"},
      {" --lr nan", "--lr: expected a finite number > 0, got 'nan'"},
      {" --min-lr -1e-3", "--min-lr: expected a finite number >= 0, got '-1e-3'"},
      {" --weight-decay inf", "--weight-decay: expected a finite number >= 0, got 'inf'"},
      {" --beta1 1", "--beta1: expected a number in [0, 1), got '1'"},
      {" --beta2 -0.1", "--beta2: expected a number in [0, 1), got '-0.1'"},
      {" --grad-clip -1", "--grad-clip: expected a finite number >= 0, got '-1'"},
      {" --val-fraction 0", "--val-fraction: expected a number in (0, 1), got '0'"},
      {" --val-fraction 1", "--val-fraction: expected a number in (0, 1), got '1'"},
      {" --eval-every -5", "--eval-every: expected an integer >= 0, got '-5'"},
      {" --eval-batches 0", "--eval-batches: expected an integer >= 1, got '0'"},
      {" --save-every x", "--save-every: expected an integer >= 0, got 'x'"},
      {" --log-every 0", "--log-every: expected an integer >= 1, got '0'"},
      {" --hidden-size 0", "--hidden-size: expected an integer >= 1, got '0'"},
      {" --layers 0", "--layers: expected an integer >= 1, got '0'"},
      {" --dt-rank 0", "--dt-rank: expected an integer >= 1, got '0'"},
      {" --seed -1", "--seed: expected an integer in [0, 2^64), got '-1'"},
      {" --resume --init " + g_tmp.path.string(), "--resume excludes --init"},
      {" --config " + data + " --layers 2", "--config excludes --layers"},
      {" --resume --hidden-size 8", "--resume excludes --hidden-size"},
      {" --init " + g_tmp.file("no_such_dir"), "--init: Directory does not exist"},
      {" --bogus 1", "The following arguments were not expected: 1 --bogus"},
      {" --steps 2 --steps 3", "--steps: At Most 1 required but received 2"},
      {" --expand 0", "--expand: expected an integer >= 1, got '0'"},
      {" --device tpu", "--device: expected cpu, cuda, cuda:N or auto, got 'tpu'"},
      {" --device cuda:-1", "--device: expected cpu, cuda, cuda:N or auto, got 'cuda:-1'"},
      {" --val-data " + data + " --val-fraction 0.2", "--val-fraction excludes --val-data"},
      {" --val-data " + g_tmp.file("no_such_val.txt"), "--val-data: File does not exist"},
  };
  for (const Case& c : parse_cases) {
    INFO(c.args);
    CHECK(contains(cli_parse_error(base + c.args), c.expected));
  }
  CHECK(contains(cli_parse_error("train --out x"), "--data is required"));
  CHECK(contains(cli_parse_error("train --data " + data), "--out is required"));
  CHECK(contains(cli_parse_error("train --data " + g_tmp.file("missing.txt") + " --out x"),
                 "--data: File does not exist"));

  // Values each flag accepts but that conflict with another are caught before training.
  CHECK(contains(cli_error(base + " --lr 0.01 --min-lr 0.1"), "--min-lr must be in [0, --lr] = [0, 0.01], got 0.1"));
  CHECK(contains(cli_error(base + " --steps 10 --warmup 11"), "--warmup must be in [0, --steps] = [0, 10], got 11"));
  CHECK(contains(cli_error(base + " --seq-len 100000"), "the train split has"));
  CHECK(contains(cli_error(base + " --init " + g_tmp.path.string()), "--init"));
  const std::string empty = write_text("empty.txt", "");
  CHECK(contains(cli_error("train --data " + empty + " --out " + g_tmp.file("e")), "is empty"));
  CHECK(contains(cli_error(base + " --val-data " + empty),
                 "text data file '" + empty + "' is empty: there is nothing to validate on (--val-data)"));
  // A device that does not exist here (no machine has 100 GPUs), before --out is touched.
  CHECK(contains(cli_error(base + " --device cuda:99"), "--device cuda:99: "));
  CHECK(!fs::exists(g_tmp.file("flags_out") + "/checkpoint"));
}

TEST_CASE("simba train --val-data: the whole of --data trains, the whole of --val-data validates, and resumes") {
  const std::string train = write_text("vd_train.txt", toy_text(100)), val = write_text("vd_val.txt", toy_text(30));
  const std::string out = g_tmp.file("val_data_run");
  fs::remove_all(out);
  const std::string flags = "train --data " + train + " --val-data " + val + " --out " + out + kTinyFlags;
  const std::string printed = run_cli(flags + " --steps 4 --eval-every 2 --save-every 2 --warmup 0");
  const size_t n_train = toy_text(100).size(), n_val = toy_text(30).size();
  REQUIRE((n_train >= 1000 && n_train < 10000 && n_val >= 1000 && n_val < 10000));
  auto grouped = [](size_t n) { return std::to_string(n / 1000) + "," + std::to_string(n % 1000 + 1000).substr(1); };
  CHECK(contains(printed, "data: '" + train + " (validation: " + val + ")': " + grouped(n_train) + " train + " +
                              grouped(n_val) + " validation tokens"));
  // The validation numbers are those of the validation file's windows.
  const TextData val_text(ByteTokenizer().encode(toy_text(100)), ByteTokenizer().encode(toy_text(30)), 0, "split");
  CHECK(val_text.tokens(Split::Train).size() == n_train);
  CHECK(val_text.tokens(Split::Validation) == ByteTokenizer().encode(toy_text(30)));
  const auto model = MambaLM::load(out + "/checkpoint");
  const ValidationResult v = evaluate(*model, val_text, 2, 16, 1);
  char expected[64];
  std::snprintf(expected, sizeof expected, "validation bits/byte: %.4f", v.bits_per_byte);
  CHECK(contains(printed, expected));
  // Resuming needs the same split: with --val-data the run continues, without it the train split
  // (the first 90% of --data) no longer fits the data cursor.
  const std::string resume = "train --data " + train + " --out " + out + " --resume";
  CHECK(contains(run_cli(resume + " --steps 6 --val-data " + val), "step 6/6"));
  const std::string e = cli_error(resume + " --steps 8");
  CHECK(contains(e, "cursor"));
}

TEST_CASE("--device cpu trains exactly as the default, and a run resumes on any device it names") {
  const std::string data = write_text("device_data.txt", toy_text(120));
  const std::string plain = g_tmp.file("device_plain"), cpu_run = g_tmp.file("device_cpu");
  fs::remove_all(plain);
  fs::remove_all(cpu_run);
  // A constant learning rate, so that a run planned for 2 steps and extended to 4 follows the
  // schedule of one planned for 4 (as in the resume test above).
  const std::string flags = kTinyFlags + " --warmup 0 --min-lr 0.01";
  run_cli("train --data " + data + " --out " + plain + " --steps 4" + flags);
  run_cli("train --data " + data + " --out " + cpu_run + " --steps 2" + flags + " --device cpu");
  const std::string resumed = run_cli("train --data " + data + " --out " + cpu_run + " --resume --steps 4 --device cpu");
  CHECK(contains(resumed, "device: cpu\n"));
  CHECK(read_file(plain + "/checkpoint/model.safetensors") == read_file(cpu_run + "/checkpoint/model.safetensors"));
}

// ------------------------------------------------------------ --simba training

namespace {

// The tiny options with Simba pruning: the second of the 2 layers keeps 40 % of the context.
TrainOptions tiny_simba_options(const std::string& out_name) {
  TrainOptions o = tiny_options(out_name);
  o.simba = parse_simba_options("keep=0.4", "test");
  return o;
}

// Mean continuation loss of `model` on the first validation batch split at c, pruned by `opt`.
double continuation_val_loss(const MambaLM& model, const TextData& data, int64_t B, int64_t L, int64_t c,
                             const SimbaOptions& opt) {
  NoGradGuard no_grad;
  const Tensor ids = data.validation_batches(B, L, 1).at(0).inputs;
  return continuation_loss(simba_forward(model, ids, c, opt), ids).item();
}

}  // namespace

TEST_CASE("simba training: split points in range and deterministic; the continuation loss falls within 30 steps") {
  TrainOptions o = tiny_simba_options("simba_learns");
  o.steps = 30;
  o.lr = 0.03;
  o.batch_size = 4;
  o.grad_accum = 1;
  o.seq_len = 32;
  o.warmup_steps = 3;
  o.grad_clip = 1.0;
  o.eval_every = 0;
  o.save_every = 0;
  o.log_every = 10;
  CHECK(o.resolved_simba_min_context() == 16);
  std::set<int64_t> seen;
  for (int64_t step = 0; step < 200; ++step)
    for (int64_t micro = 0; micro < 2; ++micro) {
      const int64_t c = simba_split_point(o, step, micro);
      CHECK(c >= 16);
      CHECK(c <= 31);
      CHECK(c == simba_split_point(o, step, micro));
      seen.insert(c);
    }
  CHECK(seen.size() == 16);  // every c in [16, 31] is drawn
  TrainOptions other_seed = o;
  other_seed.seed = o.seed + 1;
  int differ = 0;
  for (int64_t step = 0; step < 20; ++step) differ += simba_split_point(o, step, 0) != simba_split_point(other_seed, step, 0);
  CHECK(differ >= 10);

  auto t = tiny_trainer(o);
  const double before = continuation_val_loss(t->model(), t->data(), 4, 32, 20, *o.simba);
  std::ostringstream out;
  t->run(out);
  const double after = continuation_val_loss(t->model(), t->data(), 4, 32, 20, *o.simba);
  MESSAGE("simba training, continuation loss (keep=0.4, c=20): " << before << " -> " << after << " nats/token");
  CHECK(before > 5.0);  // near uniform over 256 bytes (ln 256 = 5.55)
  CHECK(after < before - 2.0);
  CHECK(contains(out.str(), "simba: keep=0.4,schedule=linear,criterion=simba,start=0,seed=0, context split uniform "
                            "in [16, 31], loss on the continuation; validation dense"));
  CHECK(contains(out.str(), "step 30/30 | loss "));
}

TEST_CASE("simba training: resume is bit-identical, and the options are saved and enforced") {
  const int64_t N = 6, K = 3;
  TrainOptions o = tiny_simba_options("simba_resume_straight");
  o.simba_min_context = 4;
  auto straight = tiny_trainer(o);
  std::vector<double> losses;
  for (int64_t i = 0; i < N; ++i) losses.push_back(loss_of(straight->train_step()));

  TrainOptions oa = o;
  oa.out_dir = g_tmp.file("simba_resume_split");
  fs::remove_all(oa.out_dir);
  auto first = tiny_trainer(oa);
  for (int64_t i = 0; i < K; ++i) CHECK(loss_of(first->train_step()) == losses[static_cast<size_t>(i)]);
  first->save_checkpoint();
  const Checkpoint cp = load_checkpoint(checkpoint_dir(oa.out_dir));
  CHECK(cp.state.options["simba"] == "keep=0.4,schedule=linear,criterion=simba,start=0,seed=0");
  CHECK(cp.state.options["simba_min_context"] == 4);

  auto resumed = tiny_trainer(oa, /*model_seed=*/99);
  resumed->restore(cp);
  for (int64_t i = K; i < N; ++i) CHECK(loss_of(resumed->train_step()) == losses[static_cast<size_t>(i)]);  // exact
  check_same_state(*straight, *resumed);

  // The dense run of the same options follows another trajectory.
  TrainOptions dense = o;
  dense.simba.reset();
  auto d = tiny_trainer(dense);
  CHECK(loss_of(d->train_step()) != losses[0]);

  // Options JSON round trip; a resume that changes --simba or --simba-min-context is refused.
  const TrainOptions back = TrainOptions::from_json(o.to_json(), "test");
  CHECK(back.to_json() == o.to_json());
  CHECK(TrainOptions::from_json(dense.to_json(), "test").simba == std::nullopt);
  TrainOptions changed = oa;
  changed.simba = parse_simba_options("keep=0.5", "test");
  CHECK(contains(error_of([&] { tiny_trainer(changed)->restore(cp); }),
                 "--simba is keep=0.5,schedule=linear,criterion=simba,start=0,seed=0, but the run in '" + cp.state_path +
                     "' was trained with --simba keep=0.4,schedule=linear,criterion=simba,start=0,seed=0"));
  CHECK(contains(error_of([&] { tiny_trainer(dense)->restore(cp); }), "--simba is (none), but the run in"));
  changed = oa;
  changed.simba_min_context = 5;
  CHECK(contains(error_of([&] { tiny_trainer(changed)->restore(cp); }),
                 "--simba-min-context is 5, but the run in '" + cp.state_path + "' was trained with --simba-min-context 4"));
  const TrainOptions merged = dense.overridden_by(o, {"--simba"});
  CHECK(merged.simba->to_string() == o.simba->to_string());
}

TEST_CASE("simba training: with keep=1 the step's loss is the dense mean cross-entropy of the continuation") {
  TrainOptions o = tiny_options("simba_keep1");
  o.grad_accum = 1;
  o.simba = parse_simba_options("keep=1", "test");
  auto model = std::make_shared<MambaLM>(tiny_train_config(), 5);
  Trainer t(o, model, toy_data(o));
  TextData same = toy_data(o);  // the trainer's data, same seed: it draws the same first batch
  const Batch batch = same.next_train_batch(o.batch_size, o.seq_len);
  const int64_t c = simba_split_point(o, 0, 0), L = o.seq_len, B = o.batch_size;
  double dense = 0.0;
  {
    NoGradGuard no_grad;
    // Row j of the dense logits predicts targets[:, j] = inputs[:, j + 1]: rows c − 1 .. L − 2
    // predict the continuation inputs[:, c:].
    const std::vector<double> rows = cross_entropy_rows(model->forward(batch.inputs).data(), batch.targets).to_vector();
    for (int64_t b = 0; b < B; ++b)
      for (int64_t j = c - 1; j <= L - 2; ++j) dense += rows[static_cast<size_t>(b * L + j)];
    dense /= static_cast<double>(B * (L - c));
  }
  const double simba_loss = mean_losses({t.accumulate_gradients()})[0];
  MESSAGE("keep=1, c = " << c << ": simba step loss " << simba_loss << ", dense " << dense << ", difference "
                         << std::abs(simba_loss - dense));
  CHECK(std::abs(simba_loss - dense) <= 1e-6 * std::abs(dense));
}

TEST_CASE("simba train: --simba from scratch and with --init; bad --simba and --simba-min-context name the flag") {
  const std::string data = write_text("simba_cli_data.txt", toy_text(120));
  const std::string dense = g_tmp.file("simba_cli_dense"), tuned = g_tmp.file("simba_cli_tuned");
  for (const std::string& dir : {dense, tuned}) fs::remove_all(dir);
  run_cli("train --data " + data + " --out " + dense + " --steps 2" + kTinyFlags);
  const std::string printed = run_cli("train --data " + data + " --out " + tuned + " --init " + dense +
                                      "/checkpoint --steps 2 --batch-size 2 --seq-len 16 --eval-batches 1 "
                                      "--simba keep=0.25,criterion=norm --simba-min-context 3");
  CHECK(contains(printed, "simba: keep=0.25,schedule=linear,criterion=norm,start=0,seed=0, context split uniform in "
                          "[3, 15]"));
  CHECK(contains(printed, "step 2/2 | loss "));
  const Checkpoint cp = load_checkpoint(tuned + "/checkpoint");
  CHECK(cp.state.options["simba"] == "keep=0.25,schedule=linear,criterion=norm,start=0,seed=0");
  CHECK(cp.state.options["simba_min_context"] == 3);
  // --resume keeps the checkpoint's --simba; a different one is refused.
  CHECK(contains(run_cli("train --data " + data + " --out " + tuned + " --resume --steps 3"), "step 3/3 | loss "));
  CHECK(contains(cli_error("train --data " + data + " --out " + tuned + " --resume --steps 4 --simba keep=0.5"),
                 "--simba is keep=0.5,schedule=linear,criterion=simba,start=0,seed=0, but the run in"));

  const std::string base = "train --data " + data + " --out " + g_tmp.file("simba_flags_out") + kTinyFlags;
  CHECK(contains(cli_error(base + " --simba keep=1.5"), "--simba: keep=1.5"));
  CHECK(contains(cli_error(base + " --simba bogus=1"), "--simba"));
  CHECK(contains(cli_error(base + " --simba keep=0.5 --simba-min-context 16"),
                 "--simba-min-context must be in [1, --seq-len - 1] = [1, 15], got 16"));
  CHECK(contains(cli_parse_error(base + " --simba keep=0.5 --simba-min-context 0"),
                 "--simba-min-context: expected an integer >= 1, got '0'"));
  TrainOptions short_window;
  short_window.seq_len = 1;
  short_window.simba = SimbaOptions();
  CHECK(contains(error_of([&] { short_window.validate(); }),
                 "--simba-min-context must be in [1, --seq-len - 1] = [1, 0], got 0"));
  CHECK(!fs::exists(g_tmp.file("simba_flags_out") + "/checkpoint"));
}
