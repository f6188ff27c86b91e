// tests/test_cli.cpp: the `simba` subcommands forward, eval, generate and info
// through their library functions (train/commands.h), the sampler
// (train/sampler.h), the --model directory checks (train/model_dir.h), and
// the simba binary itself (built before the tests; its absence fails the test).
//
// forward is checked against MambaLM::loss and a direct backward (relative
// error, float32: 1e-5; float64 written as float32: one float32 ulp) and against a hand-computed shifted
// cross-entropy of its own logits; errors are checked by their message text.
#include <doctest/doctest.h>

#include <unistd.h>
#include <sys/wait.h>

#include <algorithm>
#include <cmath>
#include <cstdio>
#include <filesystem>
#include <iostream>
#include <numeric>
#include <set>
#include <sstream>

#include <nlohmann/json.hpp>

#include "autograd/ops.h"
#include "nn/cross_entropy.h"
#include "nn/safetensors.h"
#include "ssm/mamba_model.h"
#include "tensor/cuda_device.h"
#include "tensor/file_io.h"
#include "tests/test_util.h"
#include "train/cli_options.h"
#include "train/commands.h"
#include "train/model_dir.h"
#include "train/sampler.h"

using namespace simba;
namespace fs = std::filesystem;

namespace {

const TempDir g_tmp("test_cli");


// A small model with vocabulary V, its parameters moved off their structured
// init (ones, zeros) so that no gradient or logit is accidentally symmetric.
MambaConfig small_config(int64_t V) {
  MambaConfig c;
  c.vocab_size = V;
  c.hidden_size = 8;
  c.state_size = 4;
  c.num_hidden_layers = 2;
  c.expand = 2;
  c.conv_kernel = 3;
  c.time_step_rank = 2;
  return c;
}

// Saves a jittered model of vocabulary V under g_tmp/name and returns the directory.
std::string saved_model(const std::string& name, int64_t V, bool tied = true) {
  MambaConfig cfg = small_config(V);
  cfg.tie_word_embeddings = tied;
  MambaLM model(cfg, 17);
  Generator g(18);
  for (auto& [pname, p] : model.named_parameters()) p.data().copy_(add(p.data(), affine(randn(p.shape(), g), 0.3, 0.0)));
  const std::string dir = g_tmp.file(name);
  model.save(dir);
  return dir;
}

Tensor random_ids(int64_t B, int64_t L, int64_t V, uint64_t seed) {
  Generator g(seed);
  std::vector<int64_t> v(static_cast<size_t>(B * L));
  for (auto& x : v) x = g.randint(0, V);
  return Tensor::from_ints({B, L}, v);
}

// max |a - b| / max(|b|, 1e-3) over the elements, both read as doubles.
double max_rel_error(const Tensor& a, const Tensor& b) {
  REQUIRE(a.shape() == b.shape());
  const std::vector<double> x = a.to_vector(), y = b.to_vector();
  double worst = 0.0;
  for (size_t i = 0; i < x.size(); ++i) worst = std::max(worst, std::abs(x[i] - y[i]) / std::max(std::abs(y[i]), 1e-3));
  return worst;
}

std::string ids_file(const std::string& name, const TensorMap& tensors) {
  const std::string path = g_tmp.file(name);
  save_safetensors(path, tensors);
  return path;
}

std::string text_file(const std::string& name, const std::string& text) {
  const std::string path = g_tmp.file(name);
  write_file_atomic(path, text);
  return path;
}

// A safetensors file written by hand: every tensor of `tensors` (float32) as
// F32, except `half_name`, stored as F16 with every element 1.0 (0x3C00).
void write_with_one_f16(const std::string& path, const TensorMap& tensors, const std::string& half_name) {
  nlohmann::json header = nlohmann::json::object();
  std::string data;
  for (const auto& [name, t] : tensors) {
    const size_t begin = data.size();
    if (name == half_name) {
      for (int64_t i = 0; i < t.numel(); ++i) data += std::string("\x00\x3c", 2);
    } else {
      const Tensor c = t.contiguous();
      data.append(static_cast<const char*>(c.raw_data()), static_cast<size_t>(c.numel()) * 4);
    }
    header[name] = {{"dtype", name == half_name ? "F16" : "F32"}, {"shape", t.shape()}, {"data_offsets", {begin, data.size()}}};
  }
  std::string h = header.dump();
  h.resize((h.size() + 7) / 8 * 8, ' ');
  const uint64_t n = h.size();
  write_file_atomic(path, std::string(reinterpret_cast<const char*>(&n), 8) + h + data);
}

EvalArgs eval_args(const std::string& model_dir, const std::string& data_path) {
  EvalArgs a;
  a.model_dir = model_dir;
  a.data_path = data_path;
  return a;
}

// Some English-like bytes to evaluate on.
std::string sample_text(size_t n) {
  const std::string words = "the quick brown fox jumps over the lazy dog while simba prunes tokens. ";
  std::string s;
  while (s.size() < n) s += words;
  s.resize(n);
  return s;
}

}  // namespace

// ---------------------------------------------------------------- sampler

TEST_CASE("sampler: greedy decoding (temperature 0) is the argmax, the first one on ties") {
  Generator g(1);
  for (int trial = 0; trial < 20; ++trial) {
    Tensor logits = randn({37}, g);
    const std::vector<double> v = logits.to_vector();
    const int64_t best = std::max_element(v.begin(), v.end()) - v.begin();
    Generator s(trial);
    CHECK(sample_token(logits, {0.0, 0}, s) == best);
    CHECK(sample_token(logits, {0.0, 5}, s) == best);
    CHECK(argmax_token(logits) == best);
    const std::vector<double> p = sampling_distribution(logits, {0.0, 0});
    CHECK(p[best] == 1.0);
    CHECK(std::accumulate(p.begin(), p.end(), 0.0) == 1.0);
  }
  Tensor tied = Tensor::from_vector({5}, {0.5, 2.0, -1.0, 2.0, 1.0}, DType::F64);
  Generator s(0);
  CHECK(sample_token(tied, {0.0, 0}, s) == 1);
  // -inf marks tokens that may never be chosen.
  Tensor masked = Tensor::from_vector({3}, {-INFINITY, -5.0, -INFINITY});
  CHECK(sample_token(masked, {0.0, 0}, s) == 1);
  CHECK(sample_token(masked, {1.0, 0}, s) == 1);
}

TEST_CASE("sampler: top-k never picks outside the k largest logits, and picks each of them") {
  Generator g(2);
  Tensor logits = randn({50}, g);
  const std::vector<double> v = logits.to_vector();
  std::vector<int64_t> order(v.size());
  std::iota(order.begin(), order.end(), 0);
  std::sort(order.begin(), order.end(), [&](int64_t a, int64_t b) { return v[a] > v[b]; });
  for (int64_t k : {1, 3, 7}) {
    INFO("k = " << k);
    const std::set<int64_t> top(order.begin(), order.begin() + k);
    std::set<int64_t> seen;
    Generator s(3);
    for (int i = 0; i < 3000; ++i) {
      const int64_t id = sample_token(logits, {1.5, k}, s);
      CHECK(top.count(id) == 1);
      seen.insert(id);
    }
    CHECK(seen == top);
    const std::vector<double> p = sampling_distribution(logits, {1.5, k});
    for (size_t i = 0; i < p.size(); ++i) CHECK((p[i] > 0.0) == (top.count(static_cast<int64_t>(i)) == 1));
    CHECK(std::accumulate(p.begin(), p.end(), 0.0) == doctest::Approx(1.0).epsilon(1e-12));
  }
  // k >= V keeps every token, as k = 0 does.
  CHECK(sampling_distribution(logits, {1.0, 50}) == sampling_distribution(logits, {1.0, 0}));
  CHECK(sampling_distribution(logits, {1.0, 500}) == sampling_distribution(logits, {1.0, 0}));
  // Ties at the cut keep the lower id: logits 1, 2, 2, 2 with k = 2 keep ids 1 and 2.
  const std::vector<double> p = sampling_distribution(Tensor::from_vector({4}, {1.0, 2.0, 2.0, 2.0}), {1.0, 2});
  CHECK(p == std::vector<double>{0.0, 0.5, 0.5, 0.0});
}

TEST_CASE("sampler: the same seed gives the same tokens, another seed other tokens") {
  Generator g(4);
  Tensor logits = randn({64}, g);
  auto draw = [&](uint64_t seed) {
    Generator s(seed);
    std::vector<int64_t> out;
    for (int i = 0; i < 200; ++i) out.push_back(sample_token(logits, {1.0, 10}, s));
    return out;
  };
  CHECK(draw(7) == draw(7));
  CHECK(draw(7) != draw(8));
}

TEST_CASE("sampler: draws follow softmax(logits / T), top-k renormalised") {
  const std::vector<double> v{1.0, -0.5, 2.0, 0.3, -2.0, 0.9};
  Tensor logits = Tensor::from_vector({6}, v, DType::F64);
  for (double T : {0.7, 1.0, 2.5}) {
    for (int64_t k : {0, 3}) {
      INFO("T = " << T << ", k = " << k);
      // The expected distribution, computed here independently: ids 2, 0, 5 are the top 3.
      std::vector<double> want(v.size(), 0.0);
      double total = 0.0;
      for (size_t i = 0; i < v.size(); ++i) {
        if (k == 3 && i != 2 && i != 0 && i != 5) continue;
        want[i] = std::exp(v[i] / T);
        total += want[i];
      }
      for (double& w : want) w /= total;
      const std::vector<double> p = sampling_distribution(logits, {T, k});
      for (size_t i = 0; i < v.size(); ++i) CHECK(p[i] == doctest::Approx(want[i]).epsilon(1e-12));

      // Empirical frequencies within 5 standard errors of the probabilities.
      const int n = 100000;
      std::vector<int> count(v.size(), 0);
      Generator s(5);
      for (int i = 0; i < n; ++i) ++count[static_cast<size_t>(sample_token(logits, {T, k}, s))];
      for (size_t i = 0; i < v.size(); ++i) {
        const double f = static_cast<double>(count[i]) / n;
        const double se = std::sqrt(want[i] * (1.0 - want[i]) / n);
        CHECK(std::abs(f - want[i]) <= 5.0 * se + 1e-12);
      }
    }
  }
  // A tiny temperature approaches greedy decoding without overflowing.
  const std::vector<double> sharp = sampling_distribution(logits, {1e-6, 0});
  CHECK(sharp[2] == 1.0);
}

TEST_CASE("sampler: bad options and bad logits are errors naming them") {
  Tensor logits = Tensor::from_vector({3}, {0.0, 1.0, 2.0});
  Generator g(0);
  CHECK(contains(error_of([&] { sample_token(logits, {-0.5, 0}, g); }), "--temperature must be a finite number >= 0, got -0.5"));
  CHECK(contains(error_of([&] { sample_token(logits, {NAN, 0}, g); }), "--temperature"));
  CHECK(contains(error_of([&] { sample_token(logits, {1.0, -2}, g); }), "--top-k must be >= 0, got -2"));
  CHECK(contains(error_of([&] { sample_token(Tensor::from_vector({3}, {0.0, NAN, 1.0}), {1.0, 0}, g); }),
                 "logit 1 of 3 is nan"));
  CHECK(contains(error_of([&] { sample_token(Tensor::from_vector({2}, {0.0, INFINITY}), {1.0, 0}, g); }),
                 "logit 1 of 2 is inf"));
  CHECK(contains(error_of([&] { sample_token(Tensor::from_vector({2}, {-INFINITY, -INFINITY}), {1.0, 0}, g); }),
                 "every one of the 2 logits is -inf"));
  CHECK(contains(error_of([&] { sample_token(Tensor::zeros({2, 3}), {1.0, 0}, g); }), "expected logits (V) with V >= 1, got (2, 3)"));
  CHECK(contains(error_of([&] { sample_token(Tensor::from_ints({2}, {1, 2}), {1.0, 0}, g); }), "float32 or float64, got int64"));
}

// ---------------------------------------------------------------- forward

TEST_CASE("forward: logits, loss and every parameter's gradient, equal to MambaLM's own (float32 and float64)") {
  for (bool tied : {true, false}) {
    const std::string dir = saved_model(tied ? "fwd_tied" : "fwd_untied", 11, tied);
    const Tensor ids = random_ids(2, 7, 11, 21);
    const std::string ids_path = ids_file("fwd_ids.safetensors", {{"input_ids", ids}});
    for (DType dtype : {DType::F32, DType::F64}) {
      INFO("tied " << tied << ", " << std::string(dtype_name(dtype)));
      // The file holds float32 either way: in float64 the results must be the
      // float64 values rounded to float32, i.e. within one float32 ulp (2^-23).
      const double tol = dtype == DType::F32 ? 1e-5 : std::ldexp(1.0, -23);
      const std::string out_path = g_tmp.file("fwd_out.safetensors");
      run_forward({dir, ids_path, out_path, dtype, cpu()});
      SafetensorsMetadata meta;
      const TensorMap out = load_safetensors(out_path, &meta);
      CHECK(meta.at("compute_dtype") == dtype_name(dtype));

      auto model = MambaLM::load(dir, dtype);
      const auto params = model->named_parameters();
      std::set<std::string> want_keys{"logits", "loss"};
      for (const auto& [name, p] : params) want_keys.insert("grad." + name);
      std::set<std::string> keys;
      for (const auto& [name, t] : out) {
        keys.insert(name);
        CHECK(t.dtype() == DType::F32);
      }
      CHECK(keys == want_keys);
      CHECK(keys.count("grad.lm_head.weight") == (tied ? 0 : 1));
      REQUIRE(out.at("logits").shape() == Shape{2, 7, 11});
      REQUIRE(out.at("loss").dim() == 0);

      // Logits: the model's forward on the same ids, recorded for a backward as simba forward's
      // is (without one the model runs in_proj as one product, equal only to rounding).
      const double worst = max_rel_error(out.at("logits"), model->forward(ids).data().to(DType::F32));
      CHECK(worst <= tol);

      // Loss: MambaLM::loss (which runs the forward on ids[:, :L-1]), and the
      // shifted cross-entropy computed by hand from the written logits.
      Variable loss = model->loss(ids);
      const double loss_out = out.at("loss").item();
      CHECK(std::abs(loss_out - loss.item()) <= tol * std::abs(loss.item()));
      const Tensor logits = out.at("logits");
      double by_hand = 0.0;
      for (int64_t b = 0; b < 2; ++b)
        for (int64_t t = 0; t + 1 < 7; ++t) {
          double m = -INFINITY, z = 0.0;
          for (int64_t v = 0; v < 11; ++v) m = std::max(m, logits.at({b, t, v}));
          for (int64_t v = 0; v < 11; ++v) z += std::exp(logits.at({b, t, v}) - m);
          by_hand += m + std::log(z) - logits.at({b, t, static_cast<int64_t>(ids.at({b, t + 1}))});
        }
      by_hand /= 2 * 6;
      CHECK(std::abs(loss_out - by_hand) <= 1e-5 * by_hand);

      // Gradients: a direct backward of the loss as simba forward (and transformers) defines
      // it, the logits then cross_entropy. (MambaLM::loss's backward runs the fused
      // linear_cross_entropy, the same sums in another order; tests/test_linear_cross_entropy.cpp
      // holds that one to this definition.)
      const int64_t L = ids.size(1);
      const Variable unfused = cross_entropy(reshape(model->forward(ids.narrow(1, 0, L - 1)), {2 * (L - 1), 11}),
                                             ids.narrow(1, 1, L - 1).contiguous().reshape({2 * (L - 1)}));
      CHECK(std::abs(loss_out - unfused.item()) <= tol * std::abs(unfused.item()));
      unfused.backward();
      double worst_grad = 0.0;
      std::string where;
      for (const auto& [name, p] : params) {
        const double e = max_rel_error(out.at("grad." + name), p.grad().to(DType::F32));
        if (e >= worst_grad) {
          worst_grad = e;
          where = name;
        }
      }
      MESSAGE("forward (tied " << tied << ", " << std::string(dtype_name(dtype)) << "): logits max rel error " << worst
                               << ", loss " << loss_out << " vs " << unfused.item() << ", grads max rel error "
                               << worst_grad << " at " << where);
      CHECK(worst_grad <= tol);
    }
  }
}

TEST_CASE("forward: a malformed --ids file is an error naming the file and what was expected") {
  const std::string dir = saved_model("fwd_err", 11);
  const std::string out = g_tmp.file("fwd_err_out.safetensors");
  auto forward_error = [&](const TensorMap& tensors) {
    const std::string path = ids_file("bad_ids.safetensors", tensors);
    return error_of([&] { run_forward({dir, path, out, DType::F32, cpu()}); });
  };
  std::string e = forward_error({{"ids", random_ids(1, 4, 11, 1)}, {"mask", Tensor::ones({1, 4})}});
  CHECK(contains(e, "--ids: '" + g_tmp.file("bad_ids.safetensors") + "' has no tensor 'input_ids'"));
  CHECK(contains(e, "'ids', 'mask'"));
  CHECK(contains(forward_error({}), "has no tensor 'input_ids' (it holds no tensors)"));
  CHECK(contains(forward_error({{"input_ids", Tensor::zeros({1, 4})}}), "'input_ids' in '" + g_tmp.file("bad_ids.safetensors") + "' is float32, expected int64"));
  CHECK(contains(forward_error({{"input_ids", Tensor::from_ints({4}, {1, 2, 3, 4})}}),
                 "has shape (4,), expected a 2-D (B, L) tensor"));
  CHECK(contains(forward_error({{"input_ids", Tensor::from_ints({1, 1, 2}, {1, 2})}}),
                 "has shape (1, 1, 2), expected a 2-D (B, L) tensor"));
  CHECK(contains(forward_error({{"input_ids", Tensor::from_ints({2, 1}, {1, 2})}}), "expected B >= 1 and L >= 2"));
  CHECK(contains(forward_error({{"input_ids", Tensor::from_ints({2, 3}, {1, 2, 3, 4, 11, 5})}}),
                 "holds id 11 at [1, 1], outside the model's vocabulary [0, 11)"));
  CHECK(contains(forward_error({{"input_ids", Tensor::from_ints({1, 3}, {1, -1, 3})}}),
                 "holds id -1 at [0, 1], outside the model's vocabulary [0, 11)"));
  CHECK(contains(error_of([&] { run_forward({dir, g_tmp.file("no_such_ids.safetensors"), out, DType::F32, cpu()}); }),
                 "no_such_ids.safetensors"));
  CHECK(!file_exists(out));  // nothing is written on error
}

TEST_CASE("model directory: missing directory, file, config.json, model.safetensors, or a run directory") {
  const std::string ids = ids_file("dir_ids.safetensors", {{"input_ids", random_ids(1, 3, 11, 2)}});
  const std::string out = g_tmp.file("dir_out.safetensors");
  const std::string missing = g_tmp.file("no_such_model");
  CHECK(contains(error_of([&] { run_forward({missing, ids, out, DType::F32, cpu()}); }),
                 "--model: model directory '" + missing + "' does not exist"));
  CHECK(contains(error_of([&] { std::ostringstream o; run_info(ids, o); }), "--model: '" + ids + "' is a file, expected a model directory"));

  const std::string full = saved_model("dir_full", 11);
  const std::string no_config = g_tmp.file("dir_no_config");
  fs::create_directories(no_config);
  fs::copy_file(full + "/model.safetensors", no_config + "/model.safetensors");
  const std::string e = error_of([&] { run_forward({no_config, ids, out, DType::F32, cpu()}); });
  CHECK(contains(e, "--model: model directory '" + no_config + "' has no config.json"));
  CHECK(contains(e, "hint: a model directory holds config.json and model.safetensors"));

  const std::string no_weights = g_tmp.file("dir_no_weights");
  fs::create_directories(no_weights);
  fs::copy_file(full + "/config.json", no_weights + "/config.json");
  CHECK(contains(error_of([&] { std::ostringstream o; run_info(no_weights, o); }), "has no model.safetensors"));

  // A training run directory OUT holds its model at OUT/checkpoint.
  const std::string run = g_tmp.file("dir_run");
  fs::create_directories(run);
  fs::copy(full, run + "/checkpoint");
  const std::string r = error_of([&] { run_eval(eval_args(run, "unused.txt"), std::cout); });
  CHECK(contains(r, "'" + run + "' is a training run directory, not a model directory"));
  CHECK(contains(r, "--model " + run + "/checkpoint"));
  std::ostringstream info;
  run_info(run + "/checkpoint", info);
  CHECK(contains(info.str(), "backbone.norm_f.weight"));
  CHECK(!file_exists(out));
}

// ---------------------------------------------------------------- eval

TEST_CASE("eval: validation loss and bits per byte over TextData's validation windows, and the JSON file") {
  const std::string dir = saved_model("eval_model", 256);
  const std::string data = text_file("eval.txt", sample_text(2000));
  const std::string json_path = g_tmp.file("eval/result.json");
  make_dirs(g_tmp.file("eval"));
  EvalArgs args = eval_args(dir, data);
  args.batch = 3;
  args.len = 16;
  args.max_batches = 2;
  args.val_fraction = 0.2;
  args.json_path = json_path;
  std::ostringstream printed;
  const EvalResult r = run_eval(args, printed);

  // The same windows scored directly: 400 validation tokens, 24 windows of 16, 2 batches of 3.
  auto model = MambaLM::load(dir);
  const TextData text = TextData::from_file(data, ByteTokenizer(), 0.2);
  double total = 0.0;
  int64_t tokens = 0;
  {
    NoGradGuard ng;
    for (const Batch& b : text.validation_batches(3, 16, 2)) {
      total += cross_entropy(model->forward(b.inputs), b.targets).item() * static_cast<double>(b.targets.numel());
      tokens += b.targets.numel();
    }
  }
  CHECK(r.batches == 2);
  CHECK(r.tokens == 2 * 3 * 16);
  CHECK(tokens == r.tokens);
  CHECK(r.loss == doctest::Approx(total / static_cast<double>(tokens)).epsilon(1e-6));
  CHECK(r.bits_per_byte == doctest::Approx(r.loss / std::log(2.0)).epsilon(1e-12));
  CHECK(r.loss > 0.0);
  CHECK(contains(printed.str(), "validation loss "));
  CHECK(contains(printed.str(), "bits/byte | 96 tokens in 2 batches"));

  const nlohmann::json j = nlohmann::json::parse(read_file(json_path));
  CHECK(j.at("loss").get<double>() == r.loss);
  CHECK(j.at("bits_per_byte").get<double>() == r.bits_per_byte);
  CHECK(j.at("tokens").get<int64_t>() == 96);
  CHECK(j.at("split").get<std::string>() == "validation");

  // All batches by default: 24 windows of 16 tokens from the 400-token split.
  args.max_batches = TextData::kAllBatches;
  args.json_path.clear();
  CHECK(run_eval(args, printed).tokens == 24 * 16);

  // --val-fraction 1: the whole file is scored (a held-out test file): 124 windows of 16 of its
  // 2000 tokens, the first window at the file's first byte.
  args.val_fraction = 1.0;
  const EvalResult whole = run_eval(args, printed);
  CHECK(whole.tokens == 124 * 16);
  const TextData all = TextData::from_file(data, ByteTokenizer(), 1.0);
  CHECK(all.tokens(Split::Train).empty());
  CHECK(all.tokens(Split::Validation).size() == 2000);
}

TEST_CASE("eval: errors for a file shorter than one window, bad sizes and a non-byte model") {
  const std::string dir = saved_model("eval_err_model", 256);
  const std::string data = text_file("short.txt", sample_text(100));  // 10 validation tokens
  std::ostringstream out;
  std::string e = error_of([&] { run_eval(eval_args(dir, data), out); });
  CHECK(contains(e, "text data '" + data + "': the validation split has 10 tokens"));
  CHECK(contains(e, "a window of length L = 256 needs at least L+1 = 257"));
  CHECK(contains(error_of([&] { run_eval(eval_args(dir, g_tmp.file("no_such.txt")), out); }), "no_such.txt"));
  EvalArgs bad = eval_args(dir, data);
  bad.batch = 0;
  CHECK(contains(error_of([&] { run_eval(bad, out); }), "--batch: expected a batch size >= 1, got 0"));
  bad = eval_args(dir, data);
  bad.len = -3;
  CHECK(contains(error_of([&] { run_eval(bad, out); }), "--len: expected a window length >= 1, got -3"));
  bad = eval_args(dir, data);
  bad.max_batches = 0;
  CHECK(contains(error_of([&] { run_eval(bad, out); }), "--max-batches: expected a number of batches >= 1, got 0"));
  bad = eval_args(dir, data);
  bad.val_fraction = 1.5;
  CHECK(contains(error_of([&] { run_eval(bad, out); }),
                 "--val-fraction: expected a fraction in (0, 1] (1: the whole file is evaluated), got 1.5"));
  bad.val_fraction = 0.0;
  CHECK(contains(error_of([&] { run_eval(bad, out); }), "--val-fraction: expected a fraction in (0, 1]"));
  const std::string small = saved_model("eval_small_vocab", 11);
  CHECK(contains(error_of([&] { run_eval(eval_args(small, data), out); }),
                 "has vocab_size 11, but the byte tokenizer needs at least 256"));
  CHECK(out.str().empty());
}

TEST_CASE("eval: a non-finite validation loss is an error, not a printed nan") {
  // Finite weights (so the loader accepts them) that overflow float32 in the
  // final norm: every logit is ±inf and the loss NaN.
  std::shared_ptr<MambaLM> model = MambaLM::load(saved_model("eval_overflow", 256));
  model->parameter("backbone.norm_f.weight").data().fill_(3e38);
  const std::string dir = g_tmp.file("eval_overflow_huge");
  model->save(dir);
  std::ostringstream out;
  const std::string e = error_of([&] { run_eval(eval_args(dir, text_file("overflow.txt", sample_text(3000))), out); });
  CHECK(contains(e, "eval: the validation loss of the model in '" + dir + "' is "));
  CHECK(contains(e, "not a finite number"));
  CHECK(out.str().empty());
}

// ---------------------------------------------------------------- generate

TEST_CASE("generate: greedy bytes equal the argmax of the parallel forward, and sampling is seeded") {
  const std::string dir = saved_model("gen_model", 256);
  GenerateArgs args{dir, "the fox", 12, {0.0, 0}, 0, cpu()};
  std::ostringstream printed;
  const std::string greedy = run_generate(args, printed);
  REQUIRE(greedy.size() == 12);
  CHECK(printed.str() == "the fox" + greedy);

  // The same continuation, one full forward pass over the text so far per byte.
  auto model = MambaLM::load(dir);
  const ByteTokenizer tok;
  std::vector<int64_t> ids = tok.encode("the fox");
  {
    NoGradGuard ng;
    for (int i = 0; i < 12; ++i) {
      const int64_t L = static_cast<int64_t>(ids.size());
      Tensor logits = model->forward(Tensor::from_ints({1, L}, ids)).data();  // (1, L, V)
      ids.push_back(argmax_token(logits.select(0, 0).select(0, L - 1)));
    }
  }
  CHECK(tok.decode(std::vector<int64_t>(ids.begin() + 7, ids.end())) == greedy);

  args.sampling = {1.0, 20};
  args.seed = 3;
  std::ostringstream a, b, c;
  const std::string s1 = run_generate(args, a);
  CHECK(run_generate(args, b) == s1);
  args.seed = 4;
  CHECK(run_generate(args, c) != s1);
  args.tokens = 0;
  std::ostringstream none;
  CHECK(run_generate(args, none).empty());
  CHECK(none.str() == "the fox");
}

TEST_CASE("generate: an empty prompt, negative --tokens, bad sampling options and a non-byte model are errors") {
  const std::string dir = saved_model("gen_err_model", 256);
  std::ostringstream out;
  CHECK(contains(error_of([&] { run_generate({dir, "", 5, {}, 0, cpu()}, out); }),
                 "--prompt: expected a non-empty prompt, got an empty string"));
  CHECK(contains(error_of([&] { run_generate({dir, "hi", -1, {}, 0, cpu()}, out); }),
                 "--tokens: expected a number of tokens >= 0, got -1"));
  CHECK(contains(error_of([&] { run_generate({dir, "hi", 5, {-1.0, 0}, 0, cpu()}, out); }), "--temperature"));
  CHECK(contains(error_of([&] { run_generate({dir, "hi", 5, {1.0, -4}, 0, cpu()}, out); }),
                 "--top-k must be >= 0, got -4"));
  const std::string small = saved_model("gen_small_vocab", 11);
  CHECK(contains(error_of([&] { run_generate({small, "hi", 5, {}, 0, cpu()}, out); }),
                 "has vocab_size 11, but the byte tokenizer needs at least 256"));
  CHECK(out.str().empty());
}

// ---------------------------------------------------------------- info

TEST_CASE("info: config, parameter count, every tensor with shape and stored dtype, and the metadata") {
  const std::string dir = saved_model("info_model", 11, false);
  std::ostringstream out;
  run_info(dir, out);
  const std::string s = out.str();
  auto model = MambaLM::load(dir);
  CHECK(contains(s, "parameters: " + std::to_string(model->num_parameters()) + "\n"));
  CHECK(contains(s, "vocab_size (V)            11\n"));
  CHECK(contains(s, "hidden_size (D)           8\n"));
  CHECK(contains(s, "intermediate_size (Di)    16\n"));
  CHECK(contains(s, "tie_word_embeddings       false\n"));
  const TensorMap tensors = load_safetensors(dir + "/model.safetensors");
  CHECK(contains(s, dir + "/model.safetensors: " + std::to_string(tensors.size()) + " tensors"));
  for (const auto& [name, t] : tensors) {
    INFO(name);
    // One line per tensor: name, shape, dtype.
    const size_t at = s.find("  " + name + " ");
    REQUIRE(at != std::string::npos);
    const std::string line = s.substr(at, s.find('\n', at) - at);
    CHECK(contains(line, shape_str(t.shape())));
    CHECK(contains(line, "F32"));
  }
  CHECK(contains(s, "lm_head.weight"));
  CHECK(contains(s, "__metadata__:\n  format = pt\n"));

  // A file storing a tensor in F16 (as the fp16 mamba-*-hf checkpoints do) is
  // listed with the dtype it stores, and loads into the float32 model.
  const std::string half = g_tmp.file("info_half");
  fs::create_directories(half);
  fs::copy_file(dir + "/config.json", half + "/config.json");
  write_with_one_f16(half + "/model.safetensors", tensors, "backbone.norm_f.weight");
  std::ostringstream half_out;
  run_info(half, half_out);
  const std::string h = half_out.str();
  CHECK(contains(h, "backbone.norm_f.weight                   (8,)            F16\n"));
  CHECK(contains(h, "backbone.layers.1.norm.weight            (8,)            F32\n"));
  CHECK(!contains(h, "__metadata__"));
}

// ---------------------------------------------------------------- --device

namespace {

// What check_device says about a CUDA device index that no machine has (cuda:99): the reason
// depends on this machine, and on each the error names the flag and the device.
std::string no_device_reason() {
  if (!cuda_compiled_in()) return "--device cuda:99: CUDA not compiled in";
  if (cuda_device_count() == 0) return "--device cuda:99: no CUDA device is usable here (" + cuda_unavailable_reason();
  return "--device cuda:99: no such CUDA device (" + std::to_string(cuda_device_count()) + " usable)";
}

}  // namespace

TEST_CASE("--device: cpu, cuda, cuda:N and auto; anything else, or a device not usable here, is an error naming it") {
  CHECK(parse_device("cpu") == cpu());
  CHECK(parse_device("cuda") == Device{DeviceType::CUDA, 0});
  CHECK(parse_device("cuda:3") == Device{DeviceType::CUDA, 3});
  CHECK(parse_device("auto") == (cuda_device_count() > 0 ? Device{DeviceType::CUDA, 0} : cpu()));
  for (const char* bad : {"tpu", "", "CUDA", "gpu", "cuda:", "cuda:-1", "cuda:+1", "cuda:x", "cuda:1x", " cuda",
                          "cuda:99999999999", "cpu:0"}) {
    INFO("'" << bad << "'");
    CHECK(contains(error_of([&] { parse_device(bad); }),
                   std::string(": --device: expected cpu, cuda, cuda:N or auto, got '") + bad + "'"));
  }
  CHECK(error_of([&] { check_device(cpu()); }) == "");
  const std::string reason = no_device_reason();
  CHECK(contains(error_of([&] { check_device({DeviceType::CUDA, 99}); }), reason));

  // Each command checks its device before it loads or writes anything.
  const std::string dir = saved_model("device_model", 256);
  const std::string data = text_file("device.txt", sample_text(2000));
  const Device nowhere{DeviceType::CUDA, 99};
  EvalArgs eval = eval_args(dir, data);
  eval.device = nowhere;
  std::ostringstream out;
  CHECK(contains(error_of([&] { run_eval(eval, out); }), reason));
  CHECK(contains(error_of([&] { run_generate({dir, "ab", 3, {0.0, 0}, 0, nowhere}, out); }), reason));
  const std::string forward_out = g_tmp.file("device_forward.safetensors");
  CHECK(contains(error_of([&] { run_forward({dir, dir + "/model.safetensors", forward_out, DType::F32, nowhere}); }),
                 reason));
  CHECK(!fs::exists(forward_out));

  // --device cpu is the default, number for number.
  eval.device = cpu();
  eval.len = 16;
  eval.max_batches = 2;
  EvalArgs plain = eval_args(dir, data);
  plain.len = 16;
  plain.max_batches = 2;
  CHECK(run_eval(eval, out).loss == run_eval(plain, out).loss);
}

// ---------------------------------------------------------------- the binary

TEST_CASE("the simba binary: help, info, and an error exit") {
  const fs::path exe = simba_binary();
  INFO(exe.string() << " must exist: CMake builds the simba target before the tests");
  REQUIRE(fs::exists(exe));
  const auto run = run_simba;
  for (const char* cmd : {"forward", "eval", "generate", "info"}) {
    INFO(cmd);
    auto [code, text] = run(std::string(cmd) + " --help");
    CHECK(code == 0);
    CHECK(contains(text, "--model"));
  }
  const std::string dir = saved_model("bin_model", 256);
  auto [code, text] = run("info --model " + dir);
  CHECK(code == 0);
  CHECK(contains(text, "backbone.embeddings.weight"));

  auto [gcode, gtext] = run("generate --model " + dir + " --prompt 'ab' --tokens 5 --temperature 0");
  CHECK(gcode == 0);
  std::ostringstream direct;
  CHECK(gtext == "ab" + run_generate({dir, "ab", 5, {0.0, 0}, 0, cpu()}, direct) + "\n");

  auto [fcode, ftext] = run("forward --model " + dir + " --ids " + dir + "/model.safetensors --out " + g_tmp.file("x.st"));
  CHECK(fcode == 1);
  CHECK(contains(ftext, "simba: error: "));
  CHECK(contains(ftext, "has no tensor 'input_ids'"));

  auto [ccode, ctext] = run("generate --model " + dir + " --prompt x --tokens -2");
  CHECK(ccode != 0);
  CHECK(contains(ctext, "--tokens"));
}

TEST_CASE("the simba binary: --device on every command that runs a model; a device not usable here exits 1") {
  for (const char* cmd : {"train", "eval", "generate", "forward", "inspect", "highway", "recall"}) {
    INFO(cmd);
    auto [code, text] = run_simba(std::string(cmd) + " --help");
    CHECK(code == 0);
    CHECK(contains(text, "--device"));
  }
  const std::string dir = saved_model("bin_device_model", 256);
  const std::string data = text_file("bin_device.txt", sample_text(2000));
  const std::string out = g_tmp.file("bin_device_run");
  fs::remove_all(out);
  auto [tcode, ttext] = run_simba("train --data " + data + " --out " + out + " --steps 1 --device tpu");
  CHECK(tcode == 1);
  CHECK(contains(ttext, "simba: error: --device: expected cpu, cuda, cuda:N or auto, got 'tpu'"));

  // `--device cuda` where CUDA cannot run: on a machine without a GPU (or a build without the
  // backend) the plain form is refused; on a GPU machine an index past the last device is.
  const std::string missing = cuda_device_count() == 0 ? "cuda" : "cuda:" + std::to_string(cuda_device_count());
  INFO("--device " << missing);
  auto [ccode, ctext] = run_simba("train --data " + data + " --out " + out + " --steps 1 --device " + missing);
  CHECK(ccode == 1);
  CHECK(contains(ctext, "simba: error: "));
  CHECK(contains(ctext, ": --device " + (missing == "cuda" ? std::string("cuda:0") : missing) + ": "));
  if (!cuda_compiled_in()) {
    CHECK(contains(ctext, "CUDA not compiled in"));
  } else if (cuda_device_count() == 0) {
    CHECK(contains(ctext, "no CUDA device is usable here (" + cuda_unavailable_reason() + ")"));
    CHECK(contains(ctext, "hint: use --device cpu"));
  } else {
    CHECK(contains(ctext, "no such CUDA device"));
  }
  CHECK(!fs::exists(out));
  auto [ecode, etext] = run_simba("eval --model " + dir + " --data " + data + " --device " + missing);
  CHECK(ecode == 1);
  CHECK(contains(etext, ": --device "));

  // --device cpu prints what the default prints.
  auto [gcode, gtext] = run_simba("generate --model " + dir + " --prompt 'ab' --tokens 5 --temperature 0 --device cpu");
  CHECK(gcode == 0);
  CHECK(gtext == run_simba("generate --model " + dir + " --prompt 'ab' --tokens 5 --temperature 0").second);
}
