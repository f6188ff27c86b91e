// train/curves.cpp: `simba curves` (train/curves.h).
#include "train/curves.h"

#include <algorithm>
#include <cmath>
#include <cstdio>
#include <cstring>
#include <filesystem>
#include <sstream>

#include <nlohmann/json.hpp>

#include "tensor/error.h"
#include "tensor/file_io.h"
#include "tensor/json.h"
#include "train/svg_plot.h"

namespace simba {

namespace {

// A finite number under `key` of record `r`, or an error naming the file and line.
double finite_number(const nlohmann::json& r, const char* key, const std::string& where) {
  const nlohmann::json& v = r.at(key);
  SIMBA_CHECK(v.is_number() && std::isfinite(v.get<double>()),
              where << ": \"" << key << "\" is " << v.dump() << ", expected a finite number");
  return v.get<double>();
}

}  // namespace

RunCurve read_run_curve(const std::string& path, const std::string& label) {
  RunCurve run;
  run.label = label;
  std::istringstream in(read_file(path));
  std::string line;
  for (int64_t n = 1; std::getline(in, line); ++n) {
    if (line.empty()) continue;
    const std::string where = path + ":" + std::to_string(n);
    const nlohmann::json r = parse_json_bounded<nlohmann::json>(line, where);
    SIMBA_CHECK(r.is_object() && r.contains("step") && r.at("step").is_number_integer(),
                where << ": expected a JSON object with an integer \"step\" (a simba train metrics record)");
    if (r.value("event", "") == "start") {
      const nlohmann::json& o = r.value("options", nlohmann::json::object());
      for (const char* key : {"batch_size", "seq_len", "grad_accum"})
        SIMBA_CHECK(o.contains(key) && o.at(key).is_number_integer() && o.at(key).get<int64_t>() >= 1,
                    where << ": the start record's options lack a positive integer \"" << key << "\"");
      run.tokens_per_step = o.at("batch_size").get<int64_t>() * o.at("seq_len").get<int64_t>() *
                            o.at("grad_accum").get<int64_t>();
      continue;
    }
    const bool train = r.contains("loss"), val = r.contains("val_bpb");
    if (!train && !val) continue;
    SIMBA_CHECK(run.tokens_per_step > 0,
                where << ": a step record before the run's start record (is this a simba train metrics.jsonl?)");
    const int64_t step = r.at("step").get<int64_t>();
    if (train) {
      run.train_step.push_back(step);
      run.train_bits.push_back(finite_number(r, "loss", where) / std::log(2.0));
    }
    if (val) {
      run.val_step.push_back(step);
      run.val_bpb.push_back(finite_number(r, "val_bpb", where));
    }
  }
  SIMBA_CHECK(!run.train_step.empty() || !run.val_step.empty(),
              path << ": no training or validation record (an empty or unfinished run?)");
  return run;
}

std::vector<RunCurve> run_curves(const CurvesArgs& args, std::ostream& out) {
  SIMBA_CHECK(!args.metrics.empty(), "--metrics: expected at least one metrics.jsonl");
  SIMBA_CHECK(args.labels.empty() || args.labels.size() == args.metrics.size(),
              "--labels: " << args.labels.size() << " labels for " << args.metrics.size()
                           << " runs; give one per --metrics file, or none");
  SIMBA_CHECK(!args.out_prefix.empty(), "--out: expected an output path prefix, got an empty string");
  std::vector<RunCurve> runs;
  for (size_t i = 0; i < args.metrics.size(); ++i) {
    const std::string label = args.labels.empty()
                                  ? std::filesystem::path(args.metrics[i]).parent_path().filename().string()
                                  : args.labels[i];
    runs.push_back(read_run_curve(args.metrics[i], label.empty() ? args.metrics[i] : label));
  }

  std::ostringstream csv;
  csv.precision(9);
  csv << "run,step,tokens,kind,value\n";
  std::vector<PlotSeries> series;
  for (size_t i = 0; i < runs.size(); ++i) {
    const RunCurve& r = runs[i];
    std::string quoted = "\"";  // the label as a CSV field: quoted, inner quotes doubled
    for (char ch : r.label) quoted += ch == '"' ? std::string("\"\"") : std::string(1, ch);
    quoted += "\"";
    PlotSeries val{r.label + " validation bits/byte", {}, r.val_bpb, plot_color(i), false};
    PlotSeries train{r.label + " training bits/token", {}, r.train_bits, plot_color(i), true};
    for (size_t k = 0; k < r.train_step.size(); ++k) {
      const int64_t tokens = r.train_step[k] * r.tokens_per_step;
      train.x.push_back(static_cast<double>(tokens));
      csv << quoted << "," << r.train_step[k] << "," << tokens << ",train_bits_per_token," << r.train_bits[k] << "\n";
    }
    for (size_t k = 0; k < r.val_step.size(); ++k) {
      const int64_t tokens = r.val_step[k] * r.tokens_per_step;
      val.x.push_back(static_cast<double>(tokens));
      csv << quoted << "," << r.val_step[k] << "," << tokens << ",val_bits_per_byte," << r.val_bpb[k] << "\n";
    }
    if (!val.x.empty()) series.push_back(val);
    if (!train.x.empty()) series.push_back(train);
  }
  write_file_atomic(args.out_prefix + ".csv", csv.str());
  PlotOptions po;
  po.title = args.title.empty() ? "training curves" : args.title;
  po.x_label = "tokens seen (step × tokens per step)";
  po.y_label = "bits (validation per byte: solid; training loss per token: dashed)";
  po.width = 1000;
  po.height = 560;
  write_file_atomic(args.out_prefix + ".svg", line_plot_svg(series, po));

  // "%.4f" of the value, or "-" where the run has none.
  auto cell4 = [](bool have, double v) {
    char b[32];
    std::snprintf(b, sizeof b, "%.4f", v);
    return have ? std::string(b) : std::string("-");
  };
  char line[256];
  std::snprintf(line, sizeof line, "%-20s | %8s | %14s | %14s | %12s | %12s", "run", "steps", "tokens",
                "train bits/tok", "last val bpb", "best val bpb");
  out << line << "\n" << std::string(std::strlen(line), '-') << "\n";
  for (const RunCurve& r : runs) {
    const int64_t last = std::max(r.train_step.empty() ? 0 : r.train_step.back(), r.val_step.empty() ? 0 : r.val_step.back());
    const bool val = !r.val_bpb.empty();
    std::snprintf(line, sizeof line, "%-20s | %8lld | %14lld | %14s | %12s | %12s", r.label.c_str(),
                  static_cast<long long>(last), static_cast<long long>(last * r.tokens_per_step),
                  cell4(!r.train_bits.empty(), r.train_bits.empty() ? 0 : r.train_bits.back()).c_str(),
                  cell4(val, val ? r.val_bpb.back() : 0).c_str(),
                  cell4(val, val ? *std::min_element(r.val_bpb.begin(), r.val_bpb.end()) : 0).c_str());
    out << line << "\n";
  }
  out << "wrote " << args.out_prefix << ".svg and " << args.out_prefix << ".csv\n" << std::flush;
  return runs;
}

}  // namespace simba
