// train/simba_eval.cpp: the Simba subcommands' work (train/simba_eval.h).
#include "train/simba_eval.h"

#include <algorithm>
#include <cmath>
#include <cstdio>
#include <sstream>

#include <nlohmann/json.hpp>

#include "autograd/ops.h"
#include "nn/cross_entropy.h"
#include "nn/safetensors.h"
#include "ssm/flops.h"
#include "ssm/simba_schedule.h"
#include "ssm/simba_score.h"
#include "tensor/error.h"
#include "tensor/file_io.h"
#include "tensor/ops.h"
#include "train/byte_tokenizer.h"
#include "train/cli_options.h"
#include "train/ids_file.h"
#include "train/metrics_log.h"
#include "train/model_dir.h"
#include "train/svg_plot.h"

namespace simba {

namespace {

// snprintf into a string of the length it needs (table cells and lines).
template <class... Args>
std::string cell(const char* fmt, Args... args) {
  std::string s(static_cast<size_t>(std::snprintf(nullptr, 0, fmt, args...)), '\0');
  std::snprintf(s.data(), s.size() + 1, fmt, args...);
  return s;
}

std::string join_counts(const std::vector<int64_t>& v) {
  std::string s;
  for (int64_t x : v) s += (s.empty() ? "" : ":") + std::to_string(x);
  return s;
}

SimbaOptions dense_options() {
  SimbaOptions o;
  o.keep = 1.0;
  return o;
}

// The per-window FLOPs of a run: its per-sequence token and score counts for one sequence.
int64_t flops_per_window(const MambaConfig& cfg, const ForwardFlops& f, SimbaCriterion criterion) {
  std::vector<int64_t> tokens, scored;
  for (const LayerFlops& l : f.layers) {
    tokens.push_back(l.tokens);
    scored.push_back(l.scored);
  }
  return forward_flops(cfg, 1, tokens, scored, criterion, f.head_tokens).total();
}

// One row: every window at context c through simba_forward with `opt`, `batch` at a time.
SimbaEvalRow evaluate(const MambaLM& model, const Tensor& windows, int64_t c, int64_t batch, const SimbaOptions& opt,
                      const std::string& method) {
  SimbaEvalRow row;
  row.context = c;
  row.method = method;
  row.options = opt.to_string();
  row.windows = windows.size(0);
  double nats = 0.0;  // Σ per-token losses, in double over all windows
  const Device device = model.device();
  for (int64_t start = 0; start < row.windows; start += batch) {
    const Tensor ids = windows.narrow(0, start, std::min(batch, row.windows - start)).contiguous().to(device);
    const SimbaResult r = simba_forward(model, ids, c, opt);
    const Tensor targets = continuation_targets(ids, c);  // (b, m)
    const int64_t m = targets.size(1);
    const std::vector<double> losses = cross_entropy_rows(r.logits.data(), targets).to_vector();
    for (int64_t w = 0; w < targets.size(0); ++w) {
      double s = 0.0;
      for (int64_t j = 0; j < m; ++j) s += losses[w * m + j];
      row.window_loss.push_back(s / static_cast<double>(m));
      nats += s;
    }
    row.tokens += targets.numel();
    if (start == 0) {
      row.counts = r.counts;
      row.flops = flops_per_window(model.config(), r.flops, opt.criterion);
    }
  }
  row.loss = nats / static_cast<double>(row.tokens);
  row.bits_per_token = bits_per_byte(row.loss);  // one byte per token: bits/byte = bits/token
  return row;
}

// The runs of --criteria: `base` with each criterion in turn (base alone when the list is empty).
std::vector<SimbaOptions> criterion_runs(const SimbaOptions& base, const std::vector<std::string>& criteria) {
  std::vector<SimbaOptions> runs;
  for (const std::string& name : criteria) {
    SimbaOptions o = base;
    o.criterion = parse_simba_options("criterion=" + name, "--criteria").criterion;
    for (const SimbaOptions& prev : runs)
      SIMBA_CHECK(prev.criterion != o.criterion, "--criteria: '" << name << "' is given twice");
    runs.push_back(o);
  }
  if (runs.empty()) runs.push_back(base);
  return runs;
}

// Fills r's comparison with the dense row of the same windows: the FLOPs ratio and the paired
// difference in bits/token (the per-window nats differences scaled by 1 / ln 2, ends and all).
void compare_to_dense(SimbaEvalRow& r, const SimbaEvalRow& dense, int64_t resamples) {
  r.flops_ratio = static_cast<double>(r.flops) / static_cast<double>(dense.flops);
  r.vs_dense = paired_bootstrap(r.window_loss, dense.window_loss, resamples);
  for (double* v : {&r.vs_dense.mean, &r.vs_dense.low, &r.vs_dense.high}) *v = bits_per_byte(*v);
}

// "+0.0012 [+0.0003, +0.0021]", or "" for the dense row.
std::string difference_cell(const SimbaEvalRow& r) {
  const PairedDifference& v = r.vs_dense;
  return r.method == "dense" ? "" : cell("%+.4f [%+.4f, %+.4f]", v.mean, v.low, v.high);
}

// Distance bin of highway (train/simba_eval.h): 0 for d = 0, else 1 + floor(log2 d).
int64_t distance_bin(int64_t d) {
  int64_t k = 0;
  while (d > 0) {
    ++k;
    d >>= 1;
  }
  return k;
}

// Per layer and bin: Σ mean_d |Δy_T(t)[d]| and the number of tokens, for one mode.
struct HighwaySums {
  std::vector<std::vector<double>> sum;
  std::vector<std::vector<int64_t>> count;
};

// Adds the contributions of every layer of one simba_forward run (keep_trace) on ids (B, T).
void add_contributions(HighwaySums& acc, const MambaLM& model, const Tensor& ids, const SimbaResult& r) {
  const int64_t B = ids.size(0), T = ids.size(1);
  for (size_t l = 0; l < r.counts.size(); ++l) {
    const int64_t n = r.counts[l];
    const std::vector<int64_t> kept = r.kept[l].to_ints();  // (B, n) original positions
    const MixerTrace tr = simba_layer_trace(model, ids, r, static_cast<int64_t>(l));
    // The contributions are summed on the host (an analysis, not a hot path).
    const Tensor u = tr.u.to(cpu()).contiguous(), delta = tr.delta.to(cpu()).contiguous(),
                 A = tr.A.to(cpu()).contiguous(), Bm = tr.Bm.to(cpu()).contiguous(), Cm = tr.Cm.to(cpu()).contiguous();
    const int64_t Di = u.size(2), N = A.size(1);
    std::vector<float> dy(n * Di);
    for (int64_t b = 0; b < B; ++b) {
      simba_contribution_forward<float>({dy.data(), Di}, {u.data<float>() + b * n * Di, Di},
                                        {delta.data<float>() + b * n * Di, Di}, A.data<float>(),
                                        {Bm.data<float>() + b * n * N, N}, {Cm.data<float>() + b * n * N, N}, n, Di, N);
      for (int64_t t = 0; t < n; ++t) {
        double mag = 0.0;
        for (int64_t d = 0; d < Di; ++d) mag += std::fabs(dy[t * Di + d]);
        const int64_t bin = distance_bin((T - 1) - kept[b * n + t]);
        acc.sum[l][bin] += mag / static_cast<double>(Di);
        ++acc.count[l][bin];
      }
    }
  }
}

}  // namespace

std::shared_ptr<MambaLM> load_byte_model(const std::string& model_dir, const char* command) {
  SIMBA_CHECK_HINT(!load_model_tokenizer(model_dir),
                   command << ": the model in '" << model_dir << "' carries a tokenizer.json (a BPE model), but "
                           << command << " reads text as bytes",
                   "use simba eval without --context for the validation loss of a BPE model");
  std::shared_ptr<MambaLM> model = load_model_dir(model_dir);
  model_tokenizer(model_dir, *model, command);  // the byte tokenizer: checks vocab_size >= 256
  return model;
}

MixerTrace simba_layer_trace(const MambaLM& model, const Tensor& ids, const SimbaResult& r, int64_t layer) {
  const int64_t layers = static_cast<int64_t>(r.counts.size());
  SIMBA_CHECK(layer >= 0 && layer < layers && static_cast<int64_t>(r.layer_hidden.size()) == layers,
              "simba_layer_trace: layer " << layer << " of a run with " << layers << " layers and "
                                          << r.layer_hidden.size() << " recorded streams (run simba_forward with "
                                          << "keep_trace)");
  const int64_t B = ids.size(0), L = ids.size(1), c = r.context, n = r.counts[layer], D = model.config().hidden_size;
  const std::vector<int64_t> kept = r.kept[layer].to_ints();  // (B, n)
  std::vector<int64_t> rows;
  rows.reserve(B * (n + L - c));
  for (int64_t b = 0; b < B; ++b) {
    for (int64_t i = 0; i < n; ++i) rows.push_back(b * L + kept[b * n + i]);
    for (int64_t p = c; p < L; ++p) rows.push_back(b * L + p);
  }
  const Tensor in = layer == 0 ? model.embed(ids).data() : r.layer_hidden[layer - 1];  // (B, L, D)
  const Tensor x = index_select(in.reshape({B * L, D}), 0, Tensor::from_ints({B * (n + L - c)}, rows, in.device()))
                       .reshape({B, n + L - c, D});
  const MambaBlock& block = *model.backbone().layers[layer];
  MixerTrace trace;
  block.mixer->forward(block.norm->forward(Variable(x)), &trace);
  return trace;
}

const char* const kWindowPlacement = "spread";

Tensor context_windows(const TextData& data, int64_t c, int64_t m, int64_t count, const std::string& flag) {
  SIMBA_CHECK(c >= 1, flag << ": expected a context length >= 1 (the anchor is the last context token), got " << c);
  SIMBA_CHECK(m >= 0, "context_windows: continuation " << m << " must be >= 0");
  SIMBA_CHECK(count >= 1 || count == TextData::kAllBatches,
              "context_windows: expected a window count >= 1, got " << count);
  const std::vector<int64_t>& val = data.tokens(Split::Validation);
  const int64_t n = static_cast<int64_t>(val.size()), len = c + m;
  SIMBA_CHECK_HINT(len <= n,
                   flag << " " << c << ": context longer than the data: a window of context " << c << " + continuation "
                        << m << " = " << len << " tokens does not fit in the validation split of '" << data.source()
                        << "' (" << n << " tokens)",
                   "use a shorter context, a larger file, or a larger --val-fraction");
  const int64_t fit = n / len;
  const int64_t W = count == TextData::kAllBatches ? fit : std::min(count, fit);
  // Window i starts at i·floor(n / W) >= i·len: spread over the whole split, not its beginning.
  const int64_t stride = n / W;
  std::vector<int64_t> v;
  v.reserve(static_cast<size_t>(W * len));
  for (int64_t i = 0; i < W; ++i) v.insert(v.end(), val.begin() + i * stride, val.begin() + i * stride + len);
  return Tensor::from_ints({W, len}, v);
}

std::vector<SimbaEvalRow> run_simba_eval(const SimbaEvalArgs& args, std::ostream& out) {
  const SimbaOptions base = parse_simba_options(args.simba, "--simba");
  const std::vector<SimbaOptions> runs = criterion_runs(base, args.criteria);
  SIMBA_CHECK(!args.contexts.empty(), "--context: expected at least one context length");
  for (int64_t c : args.contexts)
    SIMBA_CHECK(c >= 1, "--context: expected context lengths >= 1 (the anchor is the last context token), got " << c);
  SIMBA_CHECK(args.continuation >= 1,
              "--continuation: expected a continuation length >= 1 (the loss is measured on it), got "
                  << args.continuation);
  SIMBA_CHECK(args.max_windows >= 1, "--max-windows: expected a number of windows >= 1, got " << args.max_windows);
  SIMBA_CHECK(args.batch >= 1, "--batch: expected a batch size >= 1, got " << args.batch);
  SIMBA_CHECK(args.bootstrap >= 1, "--bootstrap: expected a number of resamples >= 1, got " << args.bootstrap);
  SIMBA_CHECK(args.flops_ratio == 0 || (args.flops_ratio > 0 && args.flops_ratio <= 1),
              "--flops-ratio: expected a number in (0, 1], got " << args.flops_ratio);
  check_eval_val_fraction(args.val_fraction);
  check_device(args.device);
  std::shared_ptr<MambaLM> model = load_byte_model(args.model_dir, "eval");
  model->to(args.device);
  const TextData data = TextData::from_file(args.data_path, ByteTokenizer(), args.val_fraction);
  const int64_t m = args.continuation;
  // Every context is checked against the data and the schedule against the model before
  // anything is evaluated or printed; with --flops-ratio, every row's keep is solved here too.
  std::vector<Tensor> windows;
  std::vector<std::vector<SimbaOptions>> runs_at;  // per context, the options of each row
  for (int64_t c : args.contexts) {
    windows.push_back(context_windows(data, c, m, args.max_windows, "--context"));
    simba_token_counts(base, model->config().num_hidden_layers, c);
    runs_at.push_back(runs);
    if (args.flops_ratio > 0)
      for (SimbaOptions& o : runs_at.back()) {
        try {
          o.keep = keep_for_flops_ratio(model->config(), o, c, m, args.flops_ratio);
        } catch (const Error& e) {
          SIMBA_FAIL("--flops-ratio: " << e.message());
        }
      }
  }

  out << "simba eval: model '" << args.model_dir << "', validation split of '" << args.data_path << "' ("
      << data.tokens(Split::Validation).size() << " tokens), continuation m = " << m << ", --simba "
      << base.to_string();
  if (args.flops_ratio > 0)
    out << ", each row's keep chosen for the FLOPs ratio nearest --flops-ratio " << args.flops_ratio;
  out << "\n";
  const std::string header =
      cell("%7s | %-9s | %7s | %11s | %10s | %-29s | %12s | %11s | %s", "context", "method", "windows", "loss (nats)",
           "bits/token", "vs dense [95% CI]", "MFLOP/window", "FLOPs ratio", "tokens per layer");
  out << header << "\n" << std::string(header.size(), '-') << "\n";

  NoGradGuard no_grad;
  std::vector<SimbaEvalRow> rows;
  for (size_t i = 0; i < args.contexts.size(); ++i) {
    const int64_t c = args.contexts[i];
    const SimbaEvalRow dense = evaluate(*model, windows[i], c, args.batch, dense_options(), "dense");
    rows.push_back(dense);
    for (const SimbaOptions& o : runs_at[i]) {
      SimbaEvalRow r = evaluate(*model, windows[i], c, args.batch, o, criterion_name(o.criterion));
      compare_to_dense(r, dense, args.bootstrap);
      rows.push_back(r);
    }
    for (size_t k = rows.size() - runs.size() - 1; k < rows.size(); ++k) {
      const SimbaEvalRow& r = rows[k];
      out << cell("%7lld | %-9s | %7lld | %11.4f | %10.4f | %-29s | %12.2f | %11.3f | %s",
                  static_cast<long long>(r.context), r.method.c_str(), static_cast<long long>(r.windows), r.loss,
                  r.bits_per_token, difference_cell(r).c_str(), 1e-6 * static_cast<double>(r.flops), r.flops_ratio,
                  join_counts(r.counts).c_str())
          << "\n";
    }
    out << std::flush;
  }

  if (!args.json_path.empty()) {
    nlohmann::json j = {{"model", args.model_dir},        {"data", args.data_path},
                        {"split", split_name(Split::Validation)}, {"val_fraction", args.val_fraction},
                        {"continuation", m},              {"max_windows", args.max_windows},
                        {"simba", base.to_string()},      {"flops_ratio_target", args.flops_ratio},
                        {"split_tokens", data.tokens(Split::Validation).size()},
                        {"window_placement", kWindowPlacement},
                        {"rows", nlohmann::json::array()},
                        {"bootstrap", {{"method", "paired percentile bootstrap over windows (train/bootstrap.h)"},
                                       {"resamples", args.bootstrap}, {"level", 0.95}, {"seed", 0}}}};
    for (const SimbaEvalRow& r : rows)
      j["rows"].push_back({{"context", r.context},         {"method", r.method},     {"options", r.options},
                           {"counts", r.counts},           {"windows", r.windows},   {"tokens", r.tokens},
                           {"loss", r.loss},               {"bits_per_token", r.bits_per_token},
                           {"flops_per_window", r.flops},  {"flops_ratio", r.flops_ratio},
                           {"vs_dense_bits", {{"mean", r.vs_dense.mean}, {"ci95_low", r.vs_dense.low},
                                              {"ci95_high", r.vs_dense.high}}},
                           {"window_loss", r.window_loss}});
    write_file_atomic(args.json_path, j.dump(2) + "\n");
  }
  if (!args.csv_path.empty()) {
    std::ostringstream csv;
    csv.precision(17);
    csv << "context,method,windows,tokens,loss,bits_per_token,flops_per_window,flops_ratio,vs_dense_bits,"
           "ci95_low,ci95_high,counts,options\n";
    for (const SimbaEvalRow& r : rows)
      csv << r.context << "," << r.method << "," << r.windows << "," << r.tokens << "," << r.loss << ","
          << r.bits_per_token << "," << r.flops << "," << r.flops_ratio << "," << r.vs_dense.mean << ","
          << r.vs_dense.low << "," << r.vs_dense.high << "," << join_counts(r.counts) << ",\"" << r.options << "\"\n";
    write_file_atomic(args.csv_path, csv.str());
  }
  return rows;
}

SimbaResult run_inspect(const InspectArgs& args) {
  const SimbaOptions opt = parse_simba_options(args.simba, "--simba");
  SIMBA_CHECK(!args.out_path.empty(), "--out: expected an output file path, got an empty string");
  check_device(args.device);
  std::shared_ptr<MambaLM> model = load_model_dir(args.model_dir);
  model->to(args.device);
  const Tensor ids = read_input_ids(args.ids_path, model->config().vocab_size, 1, "a context token").to(args.device);
  const int64_t L = ids.size(1), c = args.context;
  SIMBA_CHECK_HINT(c >= 1 && c <= L,
                   "--context " << c << ": the anchor (the last context token, position " << c - 1
                                << ") lies outside the sequence: 'input_ids' in '" << args.ids_path << "' has L = " << L
                                << " tokens per row, so --context must be in [1, " << L << "]",
                   "the continuation is the last L − C tokens; --context " << L << " inspects the whole sequence as context");
  NoGradGuard no_grad;
  SimbaResult r = simba_forward(*model, ids, c, opt, true);
  TensorMap tensors;
  for (size_t l = 0; l < r.counts.size(); ++l) {
    tensors["kept." + std::to_string(l)] = r.kept[l];
    tensors["scores." + std::to_string(l)] = r.scores[l].to(DType::F32);
  }
  tensors["logits"] = r.logits.data().to(DType::F32);
  save_safetensors(args.out_path, tensors,
                   {{"format", "pt"},
                    {"simba", opt.to_string()},
                    {"context", std::to_string(c)},
                    {"counts", join_counts(r.counts)},
                    {"model", args.model_dir}});
  return r;
}

std::vector<HighwayRow> run_highway(const HighwayArgs& args, std::ostream& out) {
  const SimbaOptions opt = parse_simba_options(args.simba, "--simba");
  SIMBA_CHECK(!args.out_prefix.empty(), "--out: expected an output path prefix, got an empty string");
  SIMBA_CHECK(args.windows >= 1, "--windows: expected a number of windows >= 1, got " << args.windows);
  SIMBA_CHECK(args.batch >= 1, "--batch: expected a batch size >= 1, got " << args.batch);
  check_eval_val_fraction(args.val_fraction);
  check_device(args.device);
  std::shared_ptr<MambaLM> model = load_byte_model(args.model_dir, "highway");
  model->to(args.device);
  const TextData data = TextData::from_file(args.data_path, ByteTokenizer(), args.val_fraction);
  const int64_t T = args.context;
  const Tensor windows = context_windows(data, T, 0, args.windows, "--context");
  const int64_t W = windows.size(0), layers = model->config().num_hidden_layers, bins = distance_bin(T - 1) + 1;

  const std::vector<std::pair<std::string, SimbaOptions>> modes = {{"dense", dense_options()}, {"simba", opt}};
  std::vector<HighwayRow> rows;
  NoGradGuard no_grad;
  for (const auto& [mode, o] : modes) {
    HighwaySums acc{std::vector<std::vector<double>>(layers, std::vector<double>(bins, 0.0)),
                    std::vector<std::vector<int64_t>>(layers, std::vector<int64_t>(bins, 0))};
    for (int64_t start = 0; start < W; start += args.batch) {
      const Tensor ids = windows.narrow(0, start, std::min(args.batch, W - start)).contiguous().to(args.device);
      add_contributions(acc, *model, ids, simba_forward(*model, ids, T, o, true));
    }
    for (int64_t l = 0; l < layers; ++l)
      for (int64_t k = 0; k < bins; ++k) {
        HighwayRow r;
        r.layer = l;
        r.mode = mode;
        r.bin = k;
        r.distance_lo = k == 0 ? 0 : int64_t(1) << (k - 1);
        r.distance_hi = k == 0 ? 0 : std::min((int64_t(1) << k) - 1, T - 1);
        r.count = acc.count[l][k];
        r.mean = r.count > 0 ? acc.sum[l][k] / static_cast<double>(r.count) : NAN;
        rows.push_back(r);
      }
  }

  std::ostringstream csv;
  csv.precision(9);
  csv << "layer,mode,distance_bin,distance_lo,distance_hi,mean,count\n";
  for (const HighwayRow& r : rows)
    csv << r.layer << "," << r.mode << "," << r.bin << "," << r.distance_lo << "," << r.distance_hi << ","
        << (r.count > 0 ? cell("%.9g", r.mean) : std::string("nan")) << "," << r.count << "\n";
  write_file_atomic(args.out_prefix + ".csv", csv.str());

  // Distance 0 (the anchor) cannot sit on a log axis; it stays in the CSV and the table.
  std::vector<PlotSeries> series;
  for (int64_t l = 0; l < layers; ++l)
    for (const auto& [mode, o] : modes) {
      PlotSeries s;
      s.label = "layer " + std::to_string(l) + (mode == "dense" ? " dense" : " Simba");
      s.color = plot_color(static_cast<size_t>(l));
      s.dashed = mode != "dense";
      for (const HighwayRow& r : rows)
        if (r.layer == l && r.mode == mode && r.bin > 0 && r.count > 0) {
          s.x.push_back(std::sqrt(static_cast<double>(r.distance_lo) * static_cast<double>(r.distance_hi)));
          s.y.push_back(r.mean);
        }
      series.push_back(s);
    }
  PlotOptions po;
  std::ostringstream keep;
  keep << opt.keep;
  po.title = "mean |Δy_T(t)| per layer vs distance, T = " + std::to_string(T) + ", " + std::to_string(W) +
             " windows; dashed: Simba keep=" + keep.str() + " " + schedule_name(opt.schedule) + " " +
             criterion_name(opt.criterion) + " start=" + std::to_string(opt.start);
  po.x_label = "distance T − t in original positions (log scale; points at the bins' geometric centres)";
  po.y_label = "mean over channels of |Δy_T(t)[d]|";
  po.log_x = po.log_y = true;
  po.width = 1000;
  po.height = 560;
  write_file_atomic(args.out_prefix + ".svg", line_plot_svg(series, po));

  out << "simba highway: model '" << args.model_dir << "', " << W << " windows of T = " << T
      << " validation tokens of '" << args.data_path << "', --simba " << opt.to_string() << "\n"
      << "mean over channels of |Δy_T(t)[d]| per distance bin T − t (tokens each layer processes; '-' = none)\n";
  std::string head = cell("%-13s", "layer mode");
  for (int64_t k = 0; k < bins; ++k) {
    const HighwayRow& r = rows[k];
    head += r.distance_lo == r.distance_hi ? cell(" | %9lld", static_cast<long long>(r.distance_lo))
                                           : cell(" | %9s", (std::to_string(r.distance_lo) + "-" +
                                                             std::to_string(r.distance_hi)).c_str());
  }
  out << head << "\n" << std::string(head.size(), '-') << "\n";
  for (int64_t l = 0; l < layers; ++l)
    for (size_t mi = 0; mi < modes.size(); ++mi) {
      const size_t first = (mi * layers + l) * bins;  // rows are mode-major, then layer, then bin
      std::string line = cell("%-13s", (std::to_string(l) + " " + modes[mi].first).c_str());
      for (int64_t k = 0; k < bins; ++k) {
        const HighwayRow& r = rows[first + k];
        line += r.count > 0 ? cell(" | %9.3e", r.mean) : cell(" | %9s", "-");
      }
      out << line << "\n";
    }
  out << "wrote " << args.out_prefix << ".csv and " << args.out_prefix << ".svg\n" << std::flush;
  return rows;
}

Tensor recall_windows(const Tensor& contexts, int64_t d, int64_t m) {
  SIMBA_CHECK(contexts.defined() && contexts.dim() == 2 && contexts.dtype() == DType::I64,
              "recall_windows: expected (W, c) int64 contexts");
  const int64_t W = contexts.size(0), c = contexts.size(1);
  SIMBA_CHECK(m >= 1 && m <= d && d <= c,
              "--distances " << d << ": expected a distance d with --continuation m = " << m << " <= d <= --context c = "
                             << c << " (the repeated span [c − d, c − d + m) must lie inside the context)");
  const std::vector<int64_t> ctx = contexts.contiguous().to_ints();
  std::vector<int64_t> ids;
  ids.reserve(W * (c + m));
  for (int64_t w = 0; w < W; ++w) {
    const auto row = ctx.begin() + w * c;
    ids.insert(ids.end(), row, row + c);
    ids.insert(ids.end(), row + (c - d), row + (c - d + m));
  }
  return Tensor::from_ints({W, c + m}, ids);
}

std::vector<RecallRow> run_recall(const RecallArgs& args, std::ostream& out) {
  const SimbaOptions base = parse_simba_options(args.simba, "--simba");
  const std::vector<SimbaOptions> runs =
      criterion_runs(base, args.criteria.empty() ? std::vector<std::string>{"simba", "random"} : args.criteria);
  SIMBA_CHECK(!args.out_prefix.empty(), "--out: expected an output path prefix, got an empty string");
  SIMBA_CHECK(!args.distances.empty(), "--distances: expected at least one distance");
  for (size_t i = 1; i < args.distances.size(); ++i)
    SIMBA_CHECK(args.distances[i] > args.distances[i - 1],
                "--distances: expected increasing distances, got " << args.distances[i - 1] << " then "
                                                                     << args.distances[i]);
  SIMBA_CHECK(args.continuation >= 1, "--continuation: expected a span length m >= 1, got " << args.continuation);
  SIMBA_CHECK(args.max_windows >= 1, "--max-windows: expected a number of windows >= 1, got " << args.max_windows);
  SIMBA_CHECK(args.batch >= 1, "--batch: expected a batch size >= 1, got " << args.batch);
  SIMBA_CHECK(args.bootstrap >= 1, "--bootstrap: expected a number of resamples >= 1, got " << args.bootstrap);
  check_eval_val_fraction(args.val_fraction);
  check_device(args.device);
  std::shared_ptr<MambaLM> model = load_byte_model(args.model_dir, "recall");
  model->to(args.device);
  const TextData data = TextData::from_file(args.data_path, ByteTokenizer(), args.val_fraction);
  const int64_t c = args.context, m = args.continuation;
  const Tensor contexts = context_windows(data, c, 0, args.max_windows, "--context");
  std::vector<Tensor> windows;  // every distance checked before anything runs
  for (int64_t d : args.distances) windows.push_back(recall_windows(contexts, d, m));
  const std::vector<int64_t> counts = simba_token_counts(base, model->config().num_hidden_layers, c);

  out << "simba recall: model '" << args.model_dir << "', " << contexts.size(0) << " contexts of c = " << c
      << " validation tokens of '" << args.data_path << "', continuation = the m = " << m
      << " tokens d before it, --simba " << base.to_string() << " (tokens per layer " << join_counts(counts) << ")\n";
  const std::string header = cell("%8s | %-9s | %7s | %11s | %10s | %-29s | %11s", "distance", "method", "windows",
                                  "loss (nats)", "bits/token", "vs dense [95% CI]", "FLOPs ratio");
  out << header << "\n" << std::string(header.size(), '-') << "\n";
  NoGradGuard no_grad;
  std::vector<RecallRow> rows;
  for (size_t i = 0; i < args.distances.size(); ++i) {
    const int64_t d = args.distances[i];
    const SimbaEvalRow dense = evaluate(*model, windows[i], c, args.batch, dense_options(), "dense");
    rows.push_back({d, dense});
    for (const SimbaOptions& o : runs) {
      SimbaEvalRow r = evaluate(*model, windows[i], c, args.batch, o, criterion_name(o.criterion));
      compare_to_dense(r, dense, args.bootstrap);
      rows.push_back({d, r});
    }
    for (size_t k = rows.size() - runs.size() - 1; k < rows.size(); ++k) {
      const SimbaEvalRow& r = rows[k].eval;
      out << cell("%8lld | %-9s | %7lld | %11.4f | %10.4f | %-29s | %11.3f", static_cast<long long>(d),
                  r.method.c_str(), static_cast<long long>(r.windows), r.loss, r.bits_per_token,
                  difference_cell(r).c_str(), r.flops_ratio)
          << "\n";
    }
    out << std::flush;
  }

  std::ostringstream csv;
  csv.precision(17);
  csv << "distance,method,windows,tokens,loss,bits_per_token,vs_dense_bits,ci95_low,ci95_high,flops_ratio,options\n";
  nlohmann::json j = {{"model", args.model_dir},
                      {"data", args.data_path},
                      {"split", split_name(Split::Validation)},
                      {"val_fraction", args.val_fraction},
                      {"context", c},
                      {"continuation", m},
                      {"simba", base.to_string()},
                      {"counts", counts},
                      {"bootstrap", {{"resamples", args.bootstrap}, {"level", 0.95}, {"seed", 0}}},
                      {"rows", nlohmann::json::array()}};
  for (const RecallRow& row : rows) {
    const SimbaEvalRow& r = row.eval;
    csv << row.distance << "," << r.method << "," << r.windows << "," << r.tokens << "," << r.loss << ","
        << r.bits_per_token << "," << r.vs_dense.mean << "," << r.vs_dense.low << "," << r.vs_dense.high << ","
        << r.flops_ratio << ",\"" << r.options << "\"\n";
    j["rows"].push_back({{"distance", row.distance},
                         {"method", r.method},
                         {"options", r.options},
                         {"windows", r.windows},
                         {"tokens", r.tokens},
                         {"loss", r.loss},
                         {"bits_per_token", r.bits_per_token},
                         {"flops_ratio", r.flops_ratio},
                         {"vs_dense_bits",
                          {{"mean", r.vs_dense.mean}, {"ci95_low", r.vs_dense.low}, {"ci95_high", r.vs_dense.high}}},
                         {"window_loss", r.window_loss}});
  }
  write_file_atomic(args.out_prefix + ".csv", csv.str());
  write_file_atomic(args.out_prefix + ".json", j.dump(2) + "\n");

  std::vector<PlotSeries> series;
  for (size_t k = 0; k <= runs.size(); ++k) {
    PlotSeries s;
    s.label = rows[k].eval.method;
    s.color = plot_color(k);
    s.dashed = k > 0;
    for (size_t i = k; i < rows.size(); i += runs.size() + 1) {
      s.x.push_back(static_cast<double>(rows[i].distance));
      s.y.push_back(rows[i].eval.bits_per_token);
    }
    series.push_back(s);
  }
  PlotOptions po;
  po.title = "recall of a " + std::to_string(m) + "-token span repeated from distance d, context " +
             std::to_string(c) + ", " + std::to_string(contexts.size(0)) + " windows; Simba " + base.to_string();
  po.x_label = "distance d between a span and its repeat (tokens, log scale)";
  po.y_label = "continuation bits/token";
  po.log_x = true;
  po.width = 1000;
  write_file_atomic(args.out_prefix + ".svg", line_plot_svg(series, po));
  out << "wrote " << args.out_prefix << ".csv, " << args.out_prefix << ".json and " << args.out_prefix << ".svg\n"
      << std::flush;
  return rows;
}

}  // namespace simba
