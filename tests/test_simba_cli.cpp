// tests/test_simba_cli.cpp: the Simba commands through their library functions
// (train/simba_eval.h), the SVG writer (train/svg_plot.h), and the simba binary.
//
//   eval --context  keep=1 rows equal the dense rows exactly; dense rows equal a direct
//                   MambaLM::forward + cross-entropy on the same windows (float32, rel. 1e-5);
//                   pruned rows equal simba_forward + continuation_loss (rel. 1e-6); FLOPs equal
//                   ssm/flops.h's formulas; JSON and CSV hold the printed rows.
//   inspect         kept/scores/logits with the documented shapes and dtypes, kept.0 = every
//                   context position, logits equal to simba_forward's.
//   layer trace     simba_layer_trace reproduces the pruned run's scores exactly.
//   highway         token counts per distance bin; the anchor bin against Δy_T(T) computed from
//                   a hand-run layer trace, a distance-1 bin against a float64 brute-force oracle
//                   (the reference scan with u_t zeroed), rel. 1e-4; layer 0 identical dense vs
//                   Simba; CSV and SVG written.
//   errors          keep=1.5, an unknown criterion, a context longer than the data, an anchor
//                   outside the sequence, and the other bad sizes, each by its message.
//   svg             well-formedness by a small XML checker, escaping, log ticks, gaps, errors.
#include <doctest/doctest.h>

#include <sys/wait.h>

#include <cctype>
#include <cmath>
#include <cstdio>
#include <cstring>
#include <filesystem>
#include <functional>
#include <map>
#include <sstream>

#include <nlohmann/json.hpp>

#include "nn/cross_entropy.h"
#include "nn/safetensors.h"
#include "ssm/flops.h"
#include "ssm/selective_scan.h"
#include "ssm/simba_schedule.h"
#include "ssm/simba_score.h"
#include "tensor/file_io.h"
#include "tensor/ops.h"
#include "tests/model_util.h"
#include "tests/test_util.h"
#include "train/byte_tokenizer.h"
#include "train/simba_eval.h"
#include "train/svg_plot.h"

using namespace simba;
namespace fs = std::filesystem;

namespace {

const TempDir g_tmp("test_simba_cli");

// A byte-vocabulary model small enough to run many windows quickly (D 8, Di 16, N 4, 3 layers).
MambaConfig byte_config() {
  MambaConfig c;
  c.vocab_size = 256;
  c.hidden_size = 8;
  c.state_size = 4;
  c.num_hidden_layers = 3;
  c.expand = 2;
  c.conv_kernel = 3;
  c.time_step_rank = 2;
  return c;
}

// Saves a jittered byte model under g_tmp/name and returns the directory.
std::string saved_model(const std::string& name) {
  MambaLM model(byte_config(), 5);
  jitter(model, 6, 0.3);
  const std::string dir = g_tmp.file(name);
  model.save(dir);
  return dir;
}

// English-like text: 2000 bytes with val_fraction 0.2 give a 400-token validation split.
std::string text_file(const std::string& name, size_t bytes = 2000) {
  const std::string words = "in the beginning simba pruned the tokens, and the highway carried the rest. ";
  std::string s;
  while (s.size() < bytes) s += words;
  s.resize(bytes);
  const std::string path = g_tmp.file(name);
  write_file_atomic(path, s);
  return path;
}

SimbaEvalArgs eval_args(const std::string& dir, const std::string& data) {
  SimbaEvalArgs a;
  a.model_dir = dir;
  a.data_path = data;
  a.contexts = {8, 20};
  a.continuation = 5;
  a.max_windows = 3;
  a.batch = 2;
  a.val_fraction = 0.2;
  return a;
}

// The validation windows of `data` as (W, len) ids, taken straight from the token stream: the
// n-token split in W strides of floor(n / W) tokens, each window the first len of its stride.
Tensor direct_windows(const std::string& data, double val_fraction, int64_t len, int64_t W) {
  const TextData text = TextData::from_file(data, ByteTokenizer(), val_fraction);
  const std::vector<int64_t>& v = text.tokens(Split::Validation);
  const int64_t stride = static_cast<int64_t>(v.size()) / W;
  REQUIRE(stride >= len);
  REQUIRE(W >= 2);  // the windows below are spread, not the split's first W · len tokens
  CHECK(stride > len);
  std::vector<int64_t> ids;
  for (int64_t i = 0; i < W; ++i) ids.insert(ids.end(), v.begin() + i * stride, v.begin() + i * stride + len);
  return Tensor::from_ints({W, len}, ids);
}

double rel(double a, double b) { return std::fabs(a - b) / std::max(std::fabs(b), 1e-12); }

// "" if `xml` is well-formed in the subset the SVG writer emits (a prolog, elements with
// double-quoted attributes, text with the five entities), else what is wrong. Counts start tags.
std::string xml_problem(const std::string& xml, std::map<std::string, int>& tags) {
  size_t i = 0;
  if (xml.compare(0, 5, "<?xml") == 0) {
    i = xml.find("?>");
    if (i == std::string::npos) return "unterminated prolog";
    i += 2;
  }
  auto entity_ok = [&](size_t at) {
    for (const char* e : {"&amp;", "&lt;", "&gt;", "&quot;", "&apos;"})
      if (xml.compare(at, std::strlen(e), e) == 0) return true;
    return false;
  };
  auto is_name = [](char c) { return std::isalnum(static_cast<unsigned char>(c)) || c == '-' || c == '_' || c == ':'; };
  std::vector<std::string> stack;
  int roots = 0;
  while (i < xml.size()) {
    if (xml[i] != '<') {
      if (xml[i] == '&' && !entity_ok(i)) return "bare '&' in text at " + std::to_string(i);
      if (stack.empty() && !std::isspace(static_cast<unsigned char>(xml[i]))) return "text outside the root";
      ++i;
      continue;
    }
    if (xml[i + 1] == '/') {  // end tag
      size_t j = i + 2;
      while (j < xml.size() && is_name(xml[j])) ++j;
      const std::string name = xml.substr(i + 2, j - i - 2);
      if (j >= xml.size() || xml[j] != '>') return "malformed end tag </" + name;
      if (stack.empty() || stack.back() != name)
        return "end tag </" + name + "> does not match <" + (stack.empty() ? "" : stack.back()) + ">";
      stack.pop_back();
      i = j + 1;
      continue;
    }
    size_t j = i + 1;
    while (j < xml.size() && is_name(xml[j])) ++j;
    const std::string name = xml.substr(i + 1, j - i - 1);
    if (name.empty()) return "'<' not starting a tag at " + std::to_string(i);
    if (stack.empty() && ++roots > 1) return "more than one root element";
    ++tags[name];
    while (true) {
      while (j < xml.size() && std::isspace(static_cast<unsigned char>(xml[j]))) ++j;
      if (j >= xml.size()) return "unterminated tag <" + name;
      if (xml.compare(j, 2, "/>") == 0) {
        j += 2;
        break;
      }
      if (xml[j] == '>') {
        stack.push_back(name);
        ++j;
        break;
      }
      const size_t a = j;
      while (j < xml.size() && is_name(xml[j])) ++j;
      if (j == a || xml.compare(j, 2, "=\"") != 0) return "malformed attribute in <" + name + ">";
      j += 2;
      for (; j < xml.size() && xml[j] != '"'; ++j) {
        if (xml[j] == '<') return "'<' inside an attribute of <" + name + ">";
        if (xml[j] == '&' && !entity_ok(j)) return "bare '&' in an attribute of <" + name + ">";
      }
      if (j >= xml.size()) return "unterminated attribute in <" + name + ">";
      ++j;
    }
    i = j;
  }
  if (!stack.empty()) return "unclosed <" + stack.back() + ">";
  if (roots != 1) return "no root element";
  return "";
}

size_t count_of(const std::string& s, const std::string& part) {
  size_t n = 0;
  for (size_t at = s.find(part); at != std::string::npos; at = s.find(part, at + 1)) ++n;
  return n;
}

}  // namespace

// ---------------------------------------------------------------- eval --context

TEST_CASE("eval --context: keep=1 rows equal dense; dense equals MambaLM::forward on the same windows") {
  const std::string dir = saved_model("eval_model");
  const std::string data = text_file("eval.txt");
  SimbaEvalArgs args = eval_args(dir, data);
  args.simba = "keep=1";
  args.json_path = g_tmp.file("eval.json");
  args.csv_path = g_tmp.file("eval.csv");
  std::ostringstream printed;
  const std::vector<SimbaEvalRow> rows = run_simba_eval(args, printed);
  REQUIRE(rows.size() == 4);
  auto model = MambaLM::load(dir);
  const MambaConfig& cfg = model->config();
  for (int i = 0; i < 2; ++i) {
    const SimbaEvalRow &dense = rows[2 * i], &keep1 = rows[2 * i + 1];
    const int64_t c = args.contexts[i], m = args.continuation;
    INFO("context " << c);
    CHECK(dense.method == "dense");
    CHECK(keep1.method == "simba");
    CHECK(dense.context == c);
    // keep=1 is the dense computation: identical numbers.
    CHECK(keep1.loss == dense.loss);
    CHECK(keep1.bits_per_token == dense.bits_per_token);
    CHECK(keep1.flops == dense.flops);
    CHECK(keep1.flops_ratio == 1.0);
    CHECK(keep1.counts == std::vector<int64_t>(3, c));
    // Paired with the dense row on the same windows: no difference, a zero-width interval.
    CHECK(keep1.window_loss == dense.window_loss);
    CHECK(keep1.vs_dense.mean == 0.0);
    CHECK(keep1.vs_dense.low == 0.0);
    CHECK(keep1.vs_dense.high == 0.0);
    CHECK(keep1.vs_dense.n == 3);
    CHECK(keep1.vs_dense.resamples == args.bootstrap);
    REQUIRE(dense.window_loss.size() == 3);
    CHECK((dense.window_loss[0] + dense.window_loss[1] + dense.window_loss[2]) / 3 ==
          doctest::Approx(dense.loss).epsilon(1e-12));
    // 400 validation tokens: floor(400 / 13) = 30 and floor(400 / 25) = 16 windows fit; 3 taken.
    CHECK(dense.windows == 3);
    CHECK(dense.tokens == 3 * m);
    CHECK(dense.bits_per_token == doctest::Approx(dense.loss / std::log(2.0)).epsilon(1e-12));
    CHECK(dense.flops == dense_forward_flops(cfg, 1, c + m, m).total());
    // Directly: position c − 1 + j predicts token c + j.
    const Tensor ids = direct_windows(data, 0.2, c + m, 3);
    NoGradGuard ng;
    const Tensor logits = model->forward(ids).data();  // (3, c + m, V)
    const double direct = mean(cross_entropy_rows(logits.narrow(1, c - 1, m).contiguous(),
                                                  ids.narrow(1, c, m).contiguous()))
                              .item();
    MESSAGE("context " << c << ": dense row loss " << dense.loss << " vs direct " << direct << ", rel. error "
                       << rel(dense.loss, direct));
    CHECK(rel(dense.loss, direct) <= 1e-5);
  }
  // The table, the JSON and the CSV hold the same rows.
  CHECK(contains(printed.str(), "context | method"));
  CHECK(contains(printed.str(), "continuation m = 5"));
  const nlohmann::json j = nlohmann::json::parse(read_file(args.json_path));
  REQUIRE(j.at("rows").size() == 4);
  CHECK(j.at("rows")[1].at("loss").get<double>() == rows[1].loss);
  CHECK(j.at("rows")[2].at("flops_per_window").get<int64_t>() == rows[2].flops);
  CHECK(j.at("rows")[3].at("method").get<std::string>() == "simba");
  CHECK(j.at("continuation").get<int64_t>() == 5);
  CHECK(j.at("rows")[0].at("window_loss").get<std::vector<double>>() == rows[0].window_loss);
  CHECK(j.at("rows")[1].at("vs_dense_bits").at("ci95_high").get<double>() == 0.0);
  CHECK(j.at("bootstrap").at("resamples").get<int64_t>() == args.bootstrap);
  const std::string csv = read_file(args.csv_path);
  CHECK(count_of(csv, "\n") == 5);
  CHECK(csv.rfind("context,method,windows,tokens,loss,bits_per_token,flops_per_window,flops_ratio,vs_dense_bits,"
                  "ci95_low,ci95_high,counts,options\n",
                  0) == 0);
  CHECK(contains(csv, "\n20,dense,3,15,"));
}

TEST_CASE("eval --context: pruned rows equal simba_forward's continuation loss and FLOPs, one row per criterion") {
  const std::string dir = saved_model("eval_pruned_model");
  const std::string data = text_file("eval_pruned.txt");
  SimbaEvalArgs args = eval_args(dir, data);
  args.contexts = {20};
  args.simba = "keep=0.25,seed=3";
  args.criteria = {"simba", "random", "norm"};
  args.batch = 3;  // all windows in one batch, as the direct computation below
  std::ostringstream printed;
  const std::vector<SimbaEvalRow> rows = run_simba_eval(args, printed);
  REQUIRE(rows.size() == 4);
  auto model = MambaLM::load(dir);
  const Tensor ids = direct_windows(data, 0.2, 25, 3);
  NoGradGuard ng;
  for (int i = 1; i < 4; ++i) {
    const SimbaEvalRow& r = rows[i];
    INFO(r.method);
    CHECK(r.method == args.criteria[i - 1]);
    const SimbaOptions opt = parse_simba_options("keep=0.25,seed=3,criterion=" + r.method);
    CHECK(r.options == opt.to_string());
    const SimbaResult direct = simba_forward(*model, ids, 20, opt);
    CHECK(r.counts == simba_token_counts(opt, 3, 20));
    CHECK(r.counts == std::vector<int64_t>{20, 13, 5});
    CHECK(rel(r.loss, continuation_loss(direct, ids).item()) <= 1e-6);
    std::vector<int64_t> tokens, scored;
    for (size_t l = 0; l < 3; ++l) {
      tokens.push_back(r.counts[l] + 5);
      scored.push_back(l + 1 < 3 ? r.counts[l] : 0);
    }
    CHECK(r.flops == forward_flops(model->config(), 1, tokens, scored, opt.criterion, 5).total());
    CHECK(r.flops_ratio == static_cast<double>(r.flops) / static_cast<double>(rows[0].flops));
    CHECK(r.flops_ratio < 1.0);
    // The difference from dense on the same three windows, and its interval around it.
    CHECK(r.window_loss.size() == 3);
    CHECK(r.vs_dense.mean == doctest::Approx(r.bits_per_token - rows[0].bits_per_token).epsilon(1e-9));
    CHECK(r.vs_dense.low <= r.vs_dense.mean);
    CHECK(r.vs_dense.high >= r.vs_dense.mean);
    CHECK(r.vs_dense.n == 3);
  }
  CHECK(contains(printed.str(), "vs dense [95% CI]"));
  CHECK(contains(printed.str(), "random"));
  CHECK(contains(printed.str(), "20:13:5"));
}

TEST_CASE("eval --context --flops-ratio: each row's keep is solved for the FLOPs ratio, per context and criterion") {
  const std::string dir = saved_model("eval_flops_model");
  const std::string data = text_file("eval_flops.txt");
  SimbaEvalArgs args = eval_args(dir, data);
  args.contexts = {40, 60};
  args.max_windows = 2;
  args.simba = "schedule=uniform";
  args.criteria = {"simba", "random", "simba-l2"};
  args.flops_ratio = 0.8;
  args.json_path = g_tmp.file("eval_flops.json");
  std::ostringstream printed;
  const std::vector<SimbaEvalRow> rows = run_simba_eval(args, printed);
  REQUIRE(rows.size() == 8);
  auto model = MambaLM::load(dir);
  for (const SimbaEvalRow& r : rows) {
    if (r.method == "dense") continue;
    INFO(r.context << " " << r.method);
    const SimbaOptions o = parse_simba_options(r.options);
    CHECK(o.schedule == SimbaSchedule::Uniform);
    CHECK(o.keep == keep_for_flops_ratio(model->config(), o, r.context, 5, 0.8));
    CHECK(std::fabs(r.flops_ratio - 0.8) < 0.05);
  }
  CHECK(rows[1].options != rows[5].options);  // another context, another keep
  CHECK(contains(printed.str(), "nearest --flops-ratio 0.8"));
  CHECK(contains(read_file(args.json_path), "\"flops_ratio_target\": 0.8"));
  // Errors name the flag: out of range, a custom schedule.
  args.flops_ratio = 1.5;
  CHECK(contains(error_of([&] { run_simba_eval(args, printed); }), "--flops-ratio: expected a number in (0, 1]"));
  args.flops_ratio = 0.8;
  args.simba = "schedule=custom,counts=40:20:10";
  args.contexts = {40};
  CHECK(contains(error_of([&] { run_simba_eval(args, printed); }), "--flops-ratio: FLOPs ratio 0.8: schedule=custom"));
}

TEST_CASE("eval --context: bad options give clear errors naming the flag") {
  const std::string dir = saved_model("eval_err_model");
  const std::string data = text_file("eval_err.txt");
  std::ostringstream out;
  auto err = [&](const std::function<void(SimbaEvalArgs&)>& edit) {
    SimbaEvalArgs a = eval_args(dir, data);
    edit(a);
    return error_of([&] { run_simba_eval(a, out); });
  };
  CHECK(contains(err([](SimbaEvalArgs& a) { a.simba = "keep=1.5"; }), "--simba: keep=1.5: expected a number in (0, 1]"));
  CHECK(contains(err([](SimbaEvalArgs& a) { a.simba = "criterion=best"; }),
                 "--simba: criterion=best: unknown criterion; valid: simba, simba-abs, simba-l2, random, stride, norm, clip, delta"));
  CHECK(contains(err([](SimbaEvalArgs& a) { a.criteria = {"simba", "best"}; }),
                 "--criteria: criterion=best: unknown criterion; valid: simba, simba-abs"));
  CHECK(contains(err([](SimbaEvalArgs& a) { a.criteria = {"random", "random"}; }), "--criteria: 'random' is given twice"));
  CHECK(contains(err([](SimbaEvalArgs& a) { a.bootstrap = 0; }), "--bootstrap: expected a number of resamples >= 1, got 0"));
  // The data: 400 validation tokens.
  const std::string e = err([](SimbaEvalArgs& a) { a.contexts = {8, 396}; });
  CHECK(contains(e, "--context 396: context longer than the data: a window of context 396 + continuation 5 = 401 tokens "
                    "does not fit in the validation split of '" + data + "' (400 tokens)"));
  CHECK(contains(err([](SimbaEvalArgs& a) { a.contexts = {8, 0}; }), "--context: expected context lengths >= 1"));
  CHECK(contains(err([](SimbaEvalArgs& a) { a.contexts = {}; }), "--context: expected at least one context length"));
  CHECK(contains(err([](SimbaEvalArgs& a) { a.continuation = 0; }), "--continuation: expected a continuation length >= 1"));
  CHECK(contains(err([](SimbaEvalArgs& a) { a.max_windows = 0; }), "--max-windows: expected a number of windows >= 1, got 0"));
  CHECK(contains(err([](SimbaEvalArgs& a) { a.batch = -1; }), "--batch: expected a batch size >= 1, got -1"));
  CHECK(contains(err([](SimbaEvalArgs& a) { a.val_fraction = 1.5; }),
                 "--val-fraction: expected a fraction in (0, 1] (1: the whole file is evaluated), got 1.5"));
  // A schedule that does not fit the model is named when the model is known.
  CHECK(contains(err([](SimbaEvalArgs& a) { a.simba = "schedule=custom,ratios=1:0.5"; }),
                 "schedule=custom gives 2 ratios, the model has 3 layers"));
  CHECK(out.str().empty());  // every error comes before any output
}

// ---------------------------------------------------------------- inspect

TEST_CASE("inspect: kept.<l>, scores.<l> and logits with the documented shapes; kept.0 is the whole context") {
  const std::string dir = saved_model("inspect_model");
  const int64_t B = 2, L = 12, C = 8, V = 256;
  const Tensor ids = random_ids(B, L, V, 9);
  const std::string ids_path = g_tmp.file("inspect_ids.safetensors");
  save_safetensors(ids_path, {{"input_ids", ids}});
  InspectArgs args{dir, ids_path, C, "keep=0.25,criterion=simba-abs", g_tmp.file("inspect_out.safetensors"), cpu()};
  const SimbaResult r = run_inspect(args);
  SafetensorsMetadata meta;
  const TensorMap out = load_safetensors(args.out_path, &meta);
  CHECK(out.size() == 2 * 3 + 1);
  const std::vector<int64_t> counts = {8, 5, 2};
  CHECK(r.counts == counts);
  for (int64_t l = 0; l < 3; ++l) {
    INFO("layer " << l);
    const Tensor& kept = out.at("kept." + std::to_string(l));
    const Tensor& scores = out.at("scores." + std::to_string(l));
    CHECK(kept.dtype() == DType::I64);
    CHECK(kept.shape() == (Shape{B, counts[l]}));
    CHECK(scores.dtype() == DType::F32);
    CHECK(scores.shape() == (Shape{B, counts[l]}));
    CHECK(kept.to_ints() == r.kept[l].to_ints());
    CHECK(scores.to_vector() == r.scores[l].to_vector());
    for (int64_t b = 0; b < B; ++b) {
      const std::vector<int64_t> row = kept.select(0, b).contiguous().to_ints();
      CHECK(std::is_sorted(row.begin(), row.end()));
      CHECK(row.back() == C - 1);
    }
  }
  CHECK(out.at("kept.0").to_ints() == std::vector<int64_t>{0, 1, 2, 3, 4, 5, 6, 7, 0, 1, 2, 3, 4, 5, 6, 7});
  const Tensor& logits = out.at("logits");
  CHECK(logits.dtype() == DType::F32);
  CHECK(logits.shape() == (Shape{B, L - C, V}));
  auto model = MambaLM::load(dir);
  NoGradGuard ng;
  const SimbaResult direct = simba_forward(*model, ids, C, parse_simba_options("keep=0.25,criterion=simba-abs"));
  CHECK(logits.to_vector() == direct.logits.data().to_vector());
  CHECK(out.at("kept.2").to_ints() == direct.kept[2].to_ints());
  CHECK(meta.at("simba") == "keep=0.25,schedule=linear,criterion=simba-abs,start=0,seed=0");
  CHECK(meta.at("counts") == "8:5:2");
  CHECK(meta.at("context") == "8");
  // C = L: the context alone, no logits rows.
  args.context = L;
  const SimbaResult whole = run_inspect(args);
  CHECK(load_safetensors(args.out_path).at("logits").shape() == (Shape{B, 0, V}));
  CHECK(whole.counts == std::vector<int64_t>{12, 8, 3});
}

TEST_CASE("inspect: an anchor outside the sequence, bad options and a bad ids file are errors") {
  const std::string dir = saved_model("inspect_err_model");
  const std::string ids_path = g_tmp.file("inspect_err_ids.safetensors");
  save_safetensors(ids_path, {{"input_ids", random_ids(1, 6, 256, 3)}});
  auto err = [&](int64_t c, const std::string& simba, const std::string& ids) {
    return error_of([&] { run_inspect({dir, ids, c, simba, g_tmp.file("inspect_err_out.safetensors"), cpu()}); });
  };
  CHECK(contains(err(7, "", ids_path), "--context 7: the anchor (the last context token, position 6) lies outside the "
                                       "sequence: 'input_ids' in '" + ids_path + "' has L = 6 tokens per row, so "
                                       "--context must be in [1, 6]"));
  CHECK(contains(err(0, "", ids_path), "--context 0: the anchor (the last context token, position -1) lies outside"));
  CHECK(contains(err(3, "keep=1.5", ids_path), "--simba: keep=1.5: expected a number in (0, 1]"));
  CHECK(contains(err(3, "criterion=best", ids_path), "--simba: criterion=best: unknown criterion"));
  const std::string wrong = g_tmp.file("inspect_wrong.safetensors");
  save_safetensors(wrong, {{"ids", random_ids(1, 6, 256, 3)}});
  CHECK(contains(err(3, "", wrong), "has no tensor 'input_ids' (it holds 'ids')"));
  save_safetensors(wrong, {{"input_ids", Tensor::from_ints({1, 3}, {1, 256, 2})}});
  CHECK(contains(err(2, "", wrong), "holds id 256 at [0, 1], outside the model's vocabulary [0, 256)"));
  save_safetensors(wrong, {{"input_ids", Tensor::ones({1, 3})}});
  CHECK(contains(err(2, "", wrong), "'input_ids' in '" + wrong + "' is float32, expected int64"));
  CHECK(!fs::exists(g_tmp.file("inspect_err_out.safetensors")));
}

// ---------------------------------------------------------------- highway

TEST_CASE("simba_layer_trace: a layer's recomputed trace gives that layer's scores in the pruned run") {
  MambaLM model(byte_config(), 11);
  jitter(model, 12, 0.3);
  const int64_t c = 14, m = 3;
  const Tensor ids = random_ids(2, c + m, 256, 13);
  NoGradGuard ng;
  const SimbaResult r = simba_forward(model, ids, c, parse_simba_options("keep=0.2"), true);
  REQUIRE(r.counts == std::vector<int64_t>{14, 9, 3});
  for (int64_t l = 0; l < 3; ++l) {
    INFO("layer " << l);
    const MixerTrace tr = simba_layer_trace(model, ids, r, l);
    CHECK(tr.u.shape() == (Shape{2, r.counts[l] + m, 16}));
    CHECK(simba_scores(tr, r.counts[l], SimbaCriterion::Simba).to_vector() == r.scores[l].to_vector());
  }
  const SimbaResult plain = simba_forward(model, ids, c, parse_simba_options("keep=0.2"));
  CHECK(contains(error_of([&] { simba_layer_trace(model, ids, plain, 1); }),
                 "simba_layer_trace: layer 1 of a run with 3 layers and 0 recorded streams (run simba_forward with "
                 "keep_trace)"));
}


TEST_CASE("highway: bin counts, the anchor and distance-1 bins against direct computations, CSV and SVG") {
  const std::string dir = saved_model("highway_model");
  const std::string data = text_file("highway.txt");
  HighwayArgs args;
  args.model_dir = dir;
  args.data_path = data;
  args.out_prefix = g_tmp.file("highway");
  args.context = 16;
  args.windows = 3;
  args.batch = 2;
  args.val_fraction = 0.2;
  args.simba = "keep=0.25";
  std::ostringstream printed;
  const std::vector<HighwayRow> rows = run_highway(args, printed);
  // 2 modes × 3 layers × 5 bins (0, 1, 2-3, 4-7, 8-15).
  REQUIRE(rows.size() == 30);
  auto at = [&](const std::string& mode, int64_t l, int64_t bin) -> const HighwayRow& {
    for (const HighwayRow& r : rows)
      if (r.mode == mode && r.layer == l && r.bin == bin) return r;
    FAIL("no row " << mode << " " << l << " " << bin);
    return rows[0];
  };
  const int64_t lo[] = {0, 1, 2, 4, 8}, hi[] = {0, 1, 3, 7, 15};
  const std::vector<int64_t> counts = {16, 10, 4};  // keep=0.25 over 3 layers, n_0 = 16
  for (int64_t l = 0; l < 3; ++l) {
    int64_t simba_tokens = 0;
    for (int64_t k = 0; k < 5; ++k) {
      const HighwayRow& d = at("dense", l, k);
      CHECK(d.distance_lo == lo[k]);
      CHECK(d.distance_hi == hi[k]);
      CHECK(d.count == 3 * (hi[k] - lo[k] + 1));  // every distance, every window
      CHECK(d.mean > 0);
      simba_tokens += at("simba", l, k).count;
    }
    CHECK(simba_tokens == 3 * counts[l]);
    CHECK(at("simba", l, 0).count == 3);  // the anchor is always processed
  }
  // Layer 0 processes the whole context in both runs: identical numbers.
  for (int64_t k = 0; k < 5; ++k) CHECK(at("simba", 0, k).mean == at("dense", 0, k).mean);

  // Direct: run the dense layers by hand, take each layer's trace, and compute the anchor's
  // Δy_T(T)[d] = (C_T·B_T)·Δ_T[d]·u_T[d] and, in float64, the distance-1 contribution as
  // y_T − y_T(u_{T−1} = 0) with the reference scan.
  auto model = MambaLM::load(dir);
  const Tensor ids = direct_windows(data, 0.2, 16, 3);
  NoGradGuard ng;
  Variable h = model->embed(ids);
  double worst = 0;
  for (int64_t l = 0; l < 3; ++l) {
    const MambaBlock& block = *model->backbone().layers[l];
    MixerTrace tr;
    block.mixer->forward(block.norm->forward(h), &tr);
    const int64_t T = 16, Di = tr.u.size(2), N = tr.A.size(1);
    double anchor = 0, dist1 = 0;
    for (int64_t b = 0; b < 3; ++b) {
      const std::vector<double> u = tr.u.select(0, b).contiguous().to_vector(),
                                dl = tr.delta.select(0, b).contiguous().to_vector(),
                                Bm = tr.Bm.select(0, b).contiguous().to_vector(),
                                Cm = tr.Cm.select(0, b).contiguous().to_vector(), A = tr.A.contiguous().to_vector();
      double cb = 0;
      for (int64_t n = 0; n < N; ++n) cb += Cm[(T - 1) * N + n] * Bm[(T - 1) * N + n];
      double s = 0;
      for (int64_t d = 0; d < Di; ++d) s += std::fabs(cb * dl[(T - 1) * Di + d] * u[(T - 1) * Di + d]);
      anchor += s / Di;
      auto last_y = [&](const std::vector<double>& uu) {
        std::vector<double> y(T * Di);
        selective_scan_forward_ref<double>({y.data(), Di}, nullptr, {uu.data(), Di}, {dl.data(), Di}, A.data(),
                                           {Bm.data(), N}, {Cm.data(), N}, nullptr, {nullptr, 0}, nullptr, 1, T, Di, N);
        return std::vector<double>(y.end() - Di, y.end());
      };
      std::vector<double> u0 = u;
      std::fill(u0.begin() + (T - 2) * Di, u0.begin() + (T - 1) * Di, 0.0);
      const std::vector<double> y = last_y(u), y0 = last_y(u0);
      s = 0;
      for (int64_t d = 0; d < Di; ++d) s += std::fabs(y[d] - y0[d]);
      dist1 += s / Di;
    }
    worst = std::max({worst, rel(at("dense", l, 0).mean, anchor / 3), rel(at("dense", l, 1).mean, dist1 / 3)});
    h = block.forward(h);
  }
  MESSAGE("highway: anchor and distance-1 bins vs direct computation, max rel. error " << worst);
  CHECK(worst <= 1e-4);

  const std::string csv = read_file(args.out_prefix + ".csv");
  CHECK(csv.rfind("layer,mode,distance_bin,distance_lo,distance_hi,mean,count\n", 0) == 0);
  CHECK(count_of(csv, "\n") == 31);
  CHECK(contains(csv, "\n2,simba,0,0,0,"));
  const std::string svg = read_file(args.out_prefix + ".svg");
  std::map<std::string, int> tags;
  CHECK(xml_problem(svg, tags) == "");
  CHECK(tags["path"] == 6);                              // a line per layer and mode
  CHECK(count_of(svg, "stroke-dasharray") == 3 + 3);     // Simba lines and their legend entries
  CHECK(contains(svg, "layer 2 Simba"));
  CHECK(contains(printed.str(), "2 simba"));
  CHECK(contains(printed.str(), "wrote " + args.out_prefix + ".csv and " + args.out_prefix + ".svg"));
}

TEST_CASE("highway: a context longer than the data, bad options and sizes are errors") {
  const std::string dir = saved_model("highway_err_model");
  const std::string data = text_file("highway_err.txt");
  auto err = [&](const std::function<void(HighwayArgs&)>& edit) {
    HighwayArgs a;
    a.model_dir = dir;
    a.data_path = data;
    a.out_prefix = g_tmp.file("highway_err");
    a.context = 16;
    a.val_fraction = 0.2;
    edit(a);
    std::ostringstream out;
    return error_of([&] { run_highway(a, out); });
  };
  CHECK(contains(err([](HighwayArgs& a) { a.context = 401; }),
                 "--context 401: context longer than the data: a window of context 401 + continuation 0 = 401 tokens "
                 "does not fit in the validation split of '" + data + "' (400 tokens)"));
  CHECK(contains(err([](HighwayArgs& a) { a.context = 0; }), "--context: expected a context length >= 1"));
  CHECK(contains(err([](HighwayArgs& a) { a.simba = "keep=1.5"; }), "--simba: keep=1.5: expected a number in (0, 1]"));
  CHECK(contains(err([](HighwayArgs& a) { a.simba = "criterion=best"; }), "--simba: criterion=best: unknown criterion"));
  CHECK(contains(err([](HighwayArgs& a) { a.windows = 0; }), "--windows: expected a number of windows >= 1, got 0"));
  CHECK(contains(err([](HighwayArgs& a) { a.out_prefix.clear(); }), "--out: expected an output path prefix"));
  CHECK(!fs::exists(g_tmp.file("highway_err.csv")));
}

// ---------------------------------------------------------------- recall

TEST_CASE("recall: each continuation repeats the context span d back; dense rows equal MambaLM::forward") {
  const Tensor contexts = Tensor::from_ints({2, 6}, {10, 11, 12, 13, 14, 15, 20, 21, 22, 23, 24, 25});
  CHECK(recall_windows(contexts, 4, 2).to_ints() ==
        std::vector<int64_t>{10, 11, 12, 13, 14, 15, 12, 13, 20, 21, 22, 23, 24, 25, 22, 23});
  CHECK(recall_windows(contexts, 6, 3).to_ints() ==
        std::vector<int64_t>{10, 11, 12, 13, 14, 15, 10, 11, 12, 20, 21, 22, 23, 24, 25, 20, 21, 22});
  CHECK(contains(error_of([&] { recall_windows(contexts, 2, 3); }),
                 "--distances 2: expected a distance d with --continuation m = 3 <= d <= --context c = 6"));
  CHECK(contains(error_of([&] { recall_windows(contexts, 7, 3); }), "<= d <= --context c = 6"));

  const std::string dir = saved_model("recall_model");
  const std::string data = text_file("recall.txt");
  RecallArgs args;
  args.model_dir = dir;
  args.data_path = data;
  args.out_prefix = g_tmp.file("recall");
  args.context = 40;
  args.distances = {4, 16, 40};
  args.continuation = 4;
  args.max_windows = 5;
  args.batch = 2;
  args.val_fraction = 0.2;
  args.simba = "keep=0.25";
  args.bootstrap = 200;
  std::ostringstream printed;
  const std::vector<RecallRow> rows = run_recall(args, printed);
  REQUIRE(rows.size() == 9);  // per distance: dense, simba, random
  auto model = MambaLM::load(dir);
  const Tensor contexts40 = direct_windows(data, 0.2, 40, 5);
  NoGradGuard ng;
  for (size_t i = 0; i < 3; ++i) {
    const int64_t d = args.distances[i];
    INFO("distance " << d);
    const RecallRow &dense = rows[3 * i], &simba = rows[3 * i + 1], &random = rows[3 * i + 2];
    CHECK(dense.distance == d);
    CHECK(dense.eval.method == "dense");
    CHECK(simba.eval.method == "simba");
    CHECK(random.eval.method == "random");
    CHECK(dense.eval.windows == 5);
    CHECK(dense.eval.tokens == 20);
    const Tensor ids = recall_windows(contexts40, d, 4);
    const Tensor logits = model->forward(ids).data();
    const double direct =
        mean(cross_entropy_rows(logits.narrow(1, 39, 4).contiguous(), ids.narrow(1, 40, 4).contiguous())).item();
    CHECK(rel(dense.eval.loss, direct) <= 1e-5);
    for (const RecallRow* r : {&simba, &random}) {
      CHECK(r->eval.flops_ratio < 1.0);
      CHECK(r->eval.vs_dense.mean == doctest::Approx(r->eval.bits_per_token - dense.eval.bits_per_token).epsilon(1e-9));
      CHECK(r->eval.vs_dense.low <= r->eval.vs_dense.mean);
      CHECK(r->eval.vs_dense.high >= r->eval.vs_dense.mean);
    }
  }
  CHECK(contains(printed.str(), "distance | method"));
  const std::string csv = read_file(args.out_prefix + ".csv");
  CHECK(csv.rfind("distance,method,windows,tokens,loss,bits_per_token,vs_dense_bits,ci95_low,ci95_high,flops_ratio,"
                  "options\n",
                  0) == 0);
  CHECK(count_of(csv, "\n") == 10);
  const nlohmann::json j = nlohmann::json::parse(read_file(args.out_prefix + ".json"));
  REQUIRE(j.at("rows").size() == 9);
  CHECK(j.at("rows")[4].at("distance").get<int64_t>() == 16);
  CHECK(j.at("rows")[4].at("window_loss").size() == 5);
  CHECK(j.at("counts").get<std::vector<int64_t>>() == std::vector<int64_t>{40, 25, 10});
  std::map<std::string, int> tags;
  CHECK(xml_problem(read_file(args.out_prefix + ".svg"), tags) == "");
}

TEST_CASE("recall: bad distances and options are errors naming the flag, before anything runs") {
  const std::string dir = saved_model("recall_err_model");
  const std::string data = text_file("recall_err.txt");
  auto err = [&](const std::function<void(RecallArgs&)>& edit) {
    RecallArgs a;
    a.model_dir = dir;
    a.data_path = data;
    a.out_prefix = g_tmp.file("recall_err");
    a.context = 40;
    a.distances = {8, 16};
    a.continuation = 4;
    a.val_fraction = 0.2;
    edit(a);
    std::ostringstream out;
    return error_of([&] { run_recall(a, out); });
  };
  CHECK(contains(err([](RecallArgs& a) { a.distances = {8, 41}; }),
                 "--distances 41: expected a distance d with --continuation m = 4 <= d <= --context c = 40"));
  CHECK(contains(err([](RecallArgs& a) { a.distances = {2}; }), "--distances 2: expected a distance d"));
  CHECK(contains(err([](RecallArgs& a) { a.distances = {16, 8}; }), "--distances: expected increasing distances"));
  CHECK(contains(err([](RecallArgs& a) { a.distances.clear(); }), "--distances: expected at least one distance"));
  CHECK(contains(err([](RecallArgs& a) { a.criteria = {"random", "random"}; }), "--criteria: 'random' is given twice"));
  CHECK(contains(err([](RecallArgs& a) { a.context = 401; }), "--context 401: context longer than the data"));
  CHECK(contains(err([](RecallArgs& a) { a.bootstrap = 0; }), "--bootstrap: expected a number of resamples >= 1"));
  CHECK(!fs::exists(g_tmp.file("recall_err.csv")));
}

// ---------------------------------------------------------------- svg

TEST_CASE("svg: a well-formed document with escaped text, log ticks, dashed series and gaps") {
  PlotSeries a{"a <solid> & \"quoted\"", {1, 10, 100, 1000}, {1e-3, 1e-2, 0.5, 2}, "#1f77b4", false};
  PlotSeries b{"b dashed", {1, 10, 100, 1000}, {2e-3, -1, 0.2, 1}, "red", true};  // y = −1: a gap on a log axis
  PlotOptions o;
  o.title = "T < 5 & 'x'";
  o.x_label = "distance";
  o.y_label = "mean |Δy|";
  o.log_x = o.log_y = true;
  const std::string svg = line_plot_svg({a, b}, o);
  std::map<std::string, int> tags;
  CHECK(xml_problem(svg, tags) == "");
  CHECK(tags["svg"] == 1);
  CHECK(tags["path"] == 2);
  CHECK(tags["circle"] == 4 + 3);  // the skipped point has no dot
  CHECK(contains(svg, "a &lt;solid&gt; &amp; &quot;quoted&quot;"));
  CHECK(contains(svg, "T &lt; 5 &amp; &apos;x&apos;"));
  CHECK(count_of(svg, "stroke-dasharray") == 2);  // series b and its legend line
  // b's path restarts after the gap: two sub-paths.
  const size_t pb = svg.find("stroke=\"red\" stroke-width=\"1.8\" stroke-dasharray");
  REQUIRE(pb != std::string::npos);
  const std::string path_b = svg.substr(svg.rfind("<path", pb), pb - svg.rfind("<path", pb));
  CHECK(count_of(path_b, "M ") == 2);
  // x spans 1..1000 (3 decades): a tick per decade; y spans 1e-3..2 -> 1e-3..10.
  for (const char* t : {">1<", ">10<", ">100<", ">1000<", ">0.001<", ">0.01<"}) CHECK(contains(svg, t));
  CHECK(!contains(svg, ">20<"));  // no 2× ticks over three decades
  // A linear axis gets 1-2-5 ticks.
  PlotOptions lin;
  const std::string s2 = line_plot_svg({{"c", {0, 1, 2, 3}, {0, 0.5, 0.25, 0.7}, "#000000", false}}, lin);
  CHECK(xml_problem(s2, tags) == "");
  for (const char* t : {">0<", ">0.5<", ">1<", ">3<"}) CHECK(contains(s2, t));
}

TEST_CASE("svg: bad series and sizes are errors") {
  PlotOptions o;
  CHECK(contains(error_of([&] { line_plot_svg({{"s", {1, 2}, {1}, "red", false}}, o); }),
                 "series 's' has 2 x values but 1 y values"));
  CHECK(contains(error_of([&] { line_plot_svg({{"s", {1}, {1}, "red\"/><script", false}}, o); }),
                 "series 's' has colour 'red\"/><script', expected '#rrggbb' or a colour name"));
  o.log_y = true;
  CHECK(contains(error_of([&] { line_plot_svg({{"s", {1, 2}, {0, -1}, "red", false}}, o); }),
                 "no plottable point in 1 series"));
  o.width = 100;
  CHECK(contains(error_of([&] { line_plot_svg({{"s", {1}, {1}, "red", false}}, o); }),
                 "image size 100 x 500 is below the minimum 320 x 240"));
}

// ---------------------------------------------------------------- the binary

TEST_CASE("the simba binary: inspect/highway help, eval --context errors") {
  const fs::path exe = simba_binary();
  INFO(exe.string() << " must exist: CMake builds the simba target before the tests");
  REQUIRE(fs::exists(exe));
  const auto run = run_simba;
  for (const char* cmd : {"inspect", "highway"}) {
    auto [code, text] = run(std::string(cmd) + " --help");
    CHECK(code == 0);
    CHECK(contains(text, "--simba"));
  }
  const std::string dir = saved_model("bin_model");
  const std::string data = text_file("bin.txt");
  const std::string base = "eval --model " + dir + " --data " + data + " --val-fraction 0.2 ";
  auto [c1, t1] = run(base + "--context 8 --continuation 4 --max-windows 1 --simba keep=1.5");
  CHECK(c1 == 1);
  CHECK(contains(t1, "simba: error: "));
  CHECK(contains(t1, "--simba: keep=1.5: expected a number in (0, 1]"));
  auto [c2, t2] = run(base + "--context 8,4000 --continuation 4");
  CHECK(c2 == 1);
  CHECK(contains(t2, "--context 4000: context longer than the data"));
  auto [c3, t3] = run(base + "--simba keep=0.5");  // Simba options without context lengths
  CHECK(c3 != 0);
  CHECK(contains(t3, "--context"));
  auto [c4, t4] = run(base + "--context 8 --continuation 4 --max-windows 2 --criteria simba,random");
  CHECK(c4 == 0);
  CHECK(contains(t4, "random"));
  auto [c5, t5] = run(base + "--max-batches 1 --len 16");  // the dense mode is unchanged
  CHECK(c5 == 0);
  CHECK(contains(t5, "validation loss"));
}
