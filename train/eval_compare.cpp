// train/eval_compare.cpp: `simba frontier`, `simba compare` and `simba contexts`
// (train/eval_compare.h).
#include "train/eval_compare.h"

#include <algorithm>
#include <cmath>
#include <cstdio>
#include <cstring>
#include <filesystem>
#include <map>
#include <sstream>
#include <type_traits>

#include <nlohmann/json.hpp>

#include "ssm/simba.h"
#include "tensor/error.h"
#include "tensor/file_io.h"
#include "tensor/json.h"
#include "train/svg_plot.h"

namespace simba {

namespace {

// The label of a model directory: its folder name, or the one above a folder named checkpoint.
std::string model_label(const std::string& dir) {
  std::filesystem::path p = std::filesystem::path(dir).lexically_normal();
  if (p.filename().empty()) p = p.parent_path();
  if (p.filename() == "checkpoint" && !p.parent_path().filename().empty()) p = p.parent_path();
  const std::string name = p.filename().string();
  return name.empty() ? dir : name;
}

// What every file must share with the first one so that its windows are the same windows.
struct WindowKey {
  std::string data, placement;
  int64_t split_tokens = 0, continuation = 0, max_windows = 0, windows = 0;
};

// The value under `key` as a T, its JSON type checked first (a float read as an integer would
// be undefined behaviour past int64's range); an error names `where` and the key.
template <class T>
T field(const nlohmann::json& j, const char* key, const std::string& where) {
  SIMBA_CHECK(j.is_object() && j.contains(key), where << ": no \"" << key << "\" (is this a simba eval --json file?)");
  const nlohmann::json& v = j.at(key);
  bool ok = true;
  if constexpr (std::is_same_v<T, int64_t>) ok = v.is_number_integer();
  if constexpr (std::is_same_v<T, double>) ok = v.is_number();
  if constexpr (std::is_same_v<T, std::string>) ok = v.is_string();
  if constexpr (std::is_same_v<T, std::vector<double>>)
    ok = v.is_array() && std::all_of(v.begin(), v.end(), [](const nlohmann::json& x) { return x.is_number(); });
  SIMBA_CHECK(ok, where << ": \"" << key << "\" is " << v.dump().substr(0, 80) << ", not of the expected type");
  try {
    return v.get<T>();
  } catch (const nlohmann::json::exception&) {
    SIMBA_FAIL(where << ": \"" << key << "\" is " << v.dump().substr(0, 80) << ", not of the expected type");
  }
}

// field(), or `otherwise` when the key is absent.
template <class T>
T field_or(const nlohmann::json& j, const char* key, const std::string& where, T otherwise) {
  return j.is_object() && j.contains(key) ? field<T>(j, key, where) : otherwise;
}

// Mean bits of a's windows minus the frontier mix w·b + (1 − w)·c, with its interval.
PairedDifference vs_mix(const std::vector<double>& a, const std::vector<double>& b, const std::vector<double>& c,
                        double w, int64_t resamples) {
  std::vector<double> mix(b.size());
  for (size_t i = 0; i < b.size(); ++i) mix[i] = w * b[i] + (1 - w) * c[i];
  return paired_bootstrap(a, mix, resamples);
}

std::string ci_cell(const PairedDifference& d) {
  char b[96];
  std::snprintf(b, sizeof b, "%+.4f [%+.4f, %+.4f]", d.mean, d.low, d.high);
  return b;
}

// <prefix>.svg: the series on a log x axis, in the size the other plots of these commands have;
// then the line naming both outputs (the caller has written <prefix>.csv).
void write_plot(const std::string& prefix, const std::vector<PlotSeries>& series, const std::string& title,
                const std::string& x_label, const std::string& y_label, std::ostream& out) {
  PlotOptions po;
  po.title = title;
  po.x_label = x_label;
  po.y_label = y_label;
  po.log_x = true;
  po.width = 1000;
  po.height = 560;
  write_file_atomic(prefix + ".svg", line_plot_svg(series, po));
  out << "wrote " << prefix << ".svg and " << prefix << ".csv\n" << std::flush;
}

const char* verdict(const PairedDifference& d) {
  return d.high < 0 ? "below (better)" : d.low > 0 ? "above (worse)" : "within";
}

// Every row of the eval file `path` at `context`, its model labelled (see the header). The
// window key of the first file read (key.windows == 0 until then) is kept in `key`, named
// `first` in errors, and every later row must match it.
std::vector<FrontierPoint> read_eval_rows(const std::string& path, int64_t context, WindowKey& key,
                                          std::string& first) {
  const nlohmann::json j = parse_json_bounded<nlohmann::json>(read_file(path), path);
  const std::string model = model_label(field<std::string>(j, "model", path));
  // Files written before simba eval recorded its window placement took the split's first windows.
  const WindowKey k{field<std::string>(j, "data", path), field_or<std::string>(j, "window_placement", path, "first"),
                    field_or<int64_t>(j, "split_tokens", path, 0), field<int64_t>(j, "continuation", path),
                    field<int64_t>(j, "max_windows", path), 0};
  const nlohmann::json rows = field<nlohmann::json>(j, "rows", path);
  SIMBA_CHECK(rows.is_array(), path << ": \"rows\" is not an array");
  std::vector<FrontierPoint> points;
  for (size_t r = 0; r < rows.size(); ++r) {
    const std::string where = path + ": rows[" + std::to_string(r) + "]";
    if (field<int64_t>(rows[r], "context", where) != context) continue;
    FrontierPoint p;
    p.model = model;
    p.method = field<std::string>(rows[r], "method", where);
    p.options = field<std::string>(rows[r], "options", where);
    p.flops = field<double>(rows[r], "flops_per_window", where);
    SIMBA_CHECK(std::isfinite(p.flops) && p.flops > 0, where << ": flops_per_window " << p.flops << ", expected > 0");
    for (double nats : field<std::vector<double>>(rows[r], "window_loss", where)) {
      SIMBA_CHECK(std::isfinite(nats), where << ": a window loss is " << nats << ", expected a finite number");
      p.window_bits.push_back(nats / std::log(2.0));
    }
    SIMBA_CHECK(!p.window_bits.empty(), where << ": no window losses");
    double sum = 0;
    for (double b : p.window_bits) sum += b;
    p.bits = sum / static_cast<double>(p.window_bits.size());

    WindowKey here = k;
    here.windows = static_cast<int64_t>(p.window_bits.size());
    if (key.windows == 0) {
      key = here;
      first = path;
    }
    SIMBA_CHECK(here.data == key.data && here.placement == key.placement && here.split_tokens == key.split_tokens &&
                    here.continuation == key.continuation && here.max_windows == key.max_windows &&
                    here.windows == key.windows,
                where << ": scored on other windows than " << first << " (data '" << here.data << "', "
                      << here.placement << " windows, m = " << here.continuation << ", " << here.windows
                      << " of --max-windows " << here.max_windows << "; there: '" << key.data << "', "
                      << key.placement << " windows, m = " << key.continuation << ", " << key.windows << " of "
                      << key.max_windows
                      << "): every file must come from simba eval on the same data with the same "
                         "--continuation and --max-windows");
    points.push_back(std::move(p));
  }
  SIMBA_CHECK(!points.empty(), path << ": no rows at --context " << context);
  return points;
}

}  // namespace

std::vector<FrontierPoint> run_frontier(const FrontierArgs& args, std::ostream& out) {
  SIMBA_CHECK(!args.json.empty(), "--json: expected at least one simba eval --json file");
  SIMBA_CHECK(args.bootstrap >= 1, "--bootstrap: expected a number of resamples >= 1, got " << args.bootstrap);
  SIMBA_CHECK(!args.out_prefix.empty(), "--out: expected an output path prefix, got an empty string");

  std::vector<FrontierPoint> dense, pruned;
  std::map<std::string, size_t> dense_of;  // model label -> index in dense
  WindowKey key;
  std::string first;
  for (const std::string& path : args.json) {
    for (FrontierPoint& p : read_eval_rows(path, args.context, key, first)) {
      if (p.method != "dense") {
        pruned.push_back(std::move(p));
        continue;
      }
      auto it = dense_of.find(p.model);
      if (it == dense_of.end()) {
        dense_of.emplace(p.model, dense.size());
        dense.push_back(std::move(p));
        continue;
      }
      const FrontierPoint& seen = dense[it->second];
      bool same = seen.flops == p.flops;
      for (size_t i = 0; same && i < p.window_bits.size(); ++i)
        same = std::fabs(seen.window_bits[i] - p.window_bits[i]) <= 1e-9 * std::max(1.0, std::fabs(p.window_bits[i]));
      SIMBA_CHECK(same, path << ": model '" << p.model << "' has a dense row at context " << args.context
                             << " that differs from its dense row in an earlier file (two different models "
                                "with the same folder name?)");
    }
  }
  SIMBA_CHECK(!dense.empty(), "--json: no dense row at context " << args.context << " in any file");
  std::sort(dense.begin(), dense.end(), [](const FrontierPoint& a, const FrontierPoint& b) { return a.flops < b.flops; });

  for (FrontierPoint& p : pruned) {
    // (1): the dense neighbours a <= F <= b.
    auto b = std::lower_bound(dense.begin(), dense.end(), p.flops,
                              [](const FrontierPoint& d, double f) { return d.flops < f; });
    if (b != dense.end()) {
      p.ref = b->model;
      p.vs_ref = paired_bootstrap(p.window_bits, b->window_bits, args.bootstrap);
      if (b->flops == p.flops) {
        p.has_frontier = true;
        p.vs_frontier = p.vs_ref;
      } else if (b != dense.begin()) {
        const auto a = b - 1;
        const double w = (std::log(b->flops) - std::log(p.flops)) / (std::log(b->flops) - std::log(a->flops));
        p.has_frontier = true;
        p.vs_frontier = vs_mix(p.window_bits, a->window_bits, b->window_bits, w, args.bootstrap);
      }
    }
  }

  // The table.
  char line[512];
  out << "simba frontier: context " << args.context << ", continuation m = " << key.continuation << ", "
      << key.windows << " windows of '" << key.data << "' (" << key.windows * key.continuation
      << " scored tokens a row), paired bootstrap 95% intervals (" << args.bootstrap << " resamples)\n";
  std::snprintf(line, sizeof line, "%-6s | %-9s | %-26s | %12s | %9s | %-30s | %-14s | %-4s | %s", "model", "method",
                "options", "GFLOP/window", "bits/tok", "vs dense frontier [95% CI]", "verdict", "ref",
                "vs ref [95% CI]");
  out << line << "\n" << std::string(std::strlen(line), '-') << "\n";
  auto print = [&](const FrontierPoint& p) {
    const bool is_dense = p.method == "dense";
    std::string options;  // the schedule in brief: keep, schedule and start
    if (!is_dense) {
      const SimbaOptions o = parse_simba_options(p.options, p.model + " " + p.method + " options");
      char b[96];
      std::snprintf(b, sizeof b, "keep=%g %s start=%lld", o.keep, schedule_name(o.schedule),
                    static_cast<long long>(o.start));
      options = b;
    }
    std::snprintf(line, sizeof line, "%-6s | %-9s | %-26s | %12.3f | %9.4f | %-30s | %-14s | %-4s | %s",
                  p.model.c_str(), p.method.c_str(), options.c_str(), 1e-9 * p.flops, p.bits,
                  is_dense ? "(frontier)" : p.has_frontier ? ci_cell(p.vs_frontier).c_str() : "outside its range",
                  is_dense || !p.has_frontier ? "" : verdict(p.vs_frontier), p.ref.c_str(),
                  p.ref.empty() ? "" : ci_cell(p.vs_ref).c_str());
    out << line << "\n";
  };
  for (const FrontierPoint& p : dense) print(p);
  for (const FrontierPoint& p : pruned) print(p);

  // The CSV.
  std::ostringstream csv;
  csv.precision(17);
  csv << "model,method,options,flops_per_window,bits_per_token,vs_frontier_bits,ci95_low,ci95_high,ref_model,"
         "vs_ref_bits,ref_ci95_low,ref_ci95_high\n";
  auto diff = [](bool have, const PairedDifference& d) {
    std::ostringstream s;
    s.precision(17);
    if (have) s << d.mean << "," << d.low << "," << d.high;
    else s << ",,";
    return s.str();
  };
  for (const auto* list : {&dense, &pruned})
    for (const FrontierPoint& p : *list)
      csv << p.model << "," << p.method << ",\"" << p.options << "\"," << p.flops << "," << p.bits << ","
          << diff(p.has_frontier, p.vs_frontier) << "," << p.ref << "," << diff(!p.ref.empty(), p.vs_ref) << "\n";
  write_file_atomic(args.out_prefix + ".csv", csv.str());

  // The plot: the dense frontier solid; each pruned model's points (by FLOPs, ending at its own
  // dense point) dashed, one colour per model and method.
  std::vector<PlotSeries> series;
  PlotSeries front{"dense models", {}, {}, plot_color(0), false};
  for (const FrontierPoint& d : dense) {
    front.x.push_back(d.flops);
    front.y.push_back(d.bits);
  }
  series.push_back(front);
  std::vector<std::string> groups;  // "model method", in order of appearance
  for (const FrontierPoint& p : pruned)
    if (std::find(groups.begin(), groups.end(), p.model + " " + p.method) == groups.end())
      groups.push_back(p.model + " " + p.method);
  for (size_t g = 0; g < groups.size(); ++g) {
    std::vector<const FrontierPoint*> pts;
    for (const FrontierPoint& p : pruned)
      if (p.model + " " + p.method == groups[g]) pts.push_back(&p);
    const std::string model = pts.front()->model;
    auto own = dense_of.find(model);
    if (own != dense_of.end())
      for (const FrontierPoint& d : dense)
        if (d.model == model) pts.push_back(&d);
    std::sort(pts.begin(), pts.end(), [](const FrontierPoint* a, const FrontierPoint* b) { return a->flops < b->flops; });
    PlotSeries s{groups[g] + " pruned (to its dense point)", {}, {}, plot_color(g + 1), true};
    for (const FrontierPoint* p : pts) {
      s.x.push_back(p->flops);
      s.y.push_back(p->bits);
    }
    series.push_back(s);
  }
  write_plot(args.out_prefix, series,
             args.title.empty() ? "continuation loss against forward FLOPs, context " + std::to_string(args.context)
                                : args.title,
             "forward FLOPs per window (context + continuation)", "continuation bits per token", out);

  std::vector<FrontierPoint> all = dense;
  all.insert(all.end(), pruned.begin(), pruned.end());
  return all;
}

std::vector<Comparison> run_compare(const CompareArgs& args, std::ostream& out) {
  SIMBA_CHECK(!args.a.empty() && args.a.size() == args.b.size(),
              "--a, --b: expected as many --a as --b rows, at least one of each (got " << args.a.size() << " and "
                                                                                          << args.b.size() << ")");
  SIMBA_CHECK(args.bootstrap >= 1, "--bootstrap: expected a number of resamples >= 1, got " << args.bootstrap);
  WindowKey key;
  std::string first;
  // The row named FILE:METHOD.
  auto row = [&](const std::string& spec, const char* flag) {
    const size_t colon = spec.rfind(':');
    SIMBA_CHECK(colon != std::string::npos && colon > 0 && colon + 1 < spec.size(),
                flag << " '" << spec << "': expected FILE:METHOD, e.g. results/eval.json:simba");
    const std::string path = spec.substr(0, colon), method = spec.substr(colon + 1);
    std::vector<FrontierPoint> found;
    for (FrontierPoint& p : read_eval_rows(path, args.context, key, first))
      if (p.method == method) found.push_back(std::move(p));
    SIMBA_CHECK(found.size() == 1, flag << " '" << spec << "': " << found.size() << " rows of method '" << method
                                        << "' at context " << args.context << " in " << path << ", expected one");
    return found.front();
  };
  std::vector<Comparison> result;
  for (size_t i = 0; i < args.a.size(); ++i) {
    Comparison c{row(args.a[i], "--a"), row(args.b[i], "--b"), {}};
    c.diff = paired_bootstrap(c.a.window_bits, c.b.window_bits, args.bootstrap);
    result.push_back(std::move(c));
  }
  char line[512];
  out << "simba compare: context " << args.context << ", continuation m = " << key.continuation << ", " << key.windows
      << " windows of '" << key.data << "', a − b in bits per token with paired bootstrap 95% intervals ("
      << args.bootstrap << " resamples)\n";
  std::snprintf(line, sizeof line, "%-22s | %10s | %9s | %-22s | %10s | %9s | %s", "a (model method)", "a GFLOP", "a bits",
                "b (model method)", "b GFLOP", "b bits", "a - b [95% CI]");
  out << line << "\n" << std::string(std::strlen(line), '-') << "\n";
  std::ostringstream csv;
  csv.precision(17);
  csv << "a_model,a_method,a_options,a_flops_per_window,a_bits,b_model,b_method,b_options,b_flops_per_window,b_bits,"
         "a_minus_b_bits,ci95_low,ci95_high\n";
  for (const Comparison& c : result) {
    std::snprintf(line, sizeof line, "%-22s | %10.3f | %9.4f | %-22s | %10.3f | %9.4f | %s",
                  (c.a.model + " " + c.a.method).c_str(), 1e-9 * c.a.flops, c.a.bits,
                  (c.b.model + " " + c.b.method).c_str(), 1e-9 * c.b.flops, c.b.bits, ci_cell(c.diff).c_str());
    out << line << "\n";
    csv << c.a.model << "," << c.a.method << ",\"" << c.a.options << "\"," << c.a.flops << "," << c.a.bits << ","
        << c.b.model << "," << c.b.method << ",\"" << c.b.options << "\"," << c.b.flops << "," << c.b.bits << ","
        << c.diff.mean << "," << c.diff.low << "," << c.diff.high << "\n";
  }
  if (!args.csv_path.empty()) {
    write_file_atomic(args.csv_path, csv.str());
    out << "wrote " << args.csv_path << "\n";
  }
  out << std::flush;
  return result;
}

std::vector<ContextRow> run_contexts(const ContextsArgs& args, std::ostream& out) {
  SIMBA_CHECK(!args.json.empty(), "--json: expected at least one simba eval --json file");
  SIMBA_CHECK(args.bootstrap >= 1, "--bootstrap: expected a number of resamples >= 1, got " << args.bootstrap);
  SIMBA_CHECK(!args.out_prefix.empty(), "--out: expected an output path prefix, got an empty string");
  std::vector<ContextRow> result;
  for (const std::string& path : args.json) {
    std::vector<int64_t> contexts;  // in file order
    const nlohmann::json j = parse_json_bounded<nlohmann::json>(read_file(path), path);
    for (const nlohmann::json& r : field<nlohmann::json>(j, "rows", path)) {
      const int64_t c = field<int64_t>(r, "context", path + ": a row");
      if (std::find(contexts.begin(), contexts.end(), c) == contexts.end()) contexts.push_back(c);
    }
    const size_t before = result.size();
    for (int64_t c : contexts) {
      WindowKey key;  // one file, one context: its rows share their windows by construction
      std::string first;
      const std::vector<FrontierPoint> rows = read_eval_rows(path, c, key, first);
      const auto dense = std::find_if(rows.begin(), rows.end(), [](const FrontierPoint& p) { return p.method == "dense"; });
      if (dense == rows.end()) continue;
      for (const FrontierPoint& p : rows) {
        if (p.method == "dense") continue;
        result.push_back({p.model, p.method, c, key.windows, dense->bits, p.bits,
                          paired_bootstrap(p.window_bits, dense->window_bits, args.bootstrap)});
      }
    }
    SIMBA_CHECK(result.size() > before,
                path << ": no context with a dense row and another row (is this a simba eval --context --json file?)");
  }

  char line[256];
  out << "simba contexts: every row minus its model's dense row at the same context, bits per token, paired "
         "bootstrap 95% intervals ("
      << args.bootstrap << " resamples)\n";
  std::snprintf(line, sizeof line, "%-8s | %8s | %7s | %10s | %-9s | %10s | %s", "model", "context", "windows",
                "dense bits", "method", "bits", "method - dense [95% CI]");
  out << line << "\n" << std::string(std::strlen(line), '-') << "\n";
  std::ostringstream csv;
  csv.precision(17);
  csv << "model,context,windows,dense_bits,method,bits,vs_dense_bits,ci95_low,ci95_high\n";
  std::vector<std::string> groups;  // "model method", in order of appearance
  for (const ContextRow& r : result) {
    std::snprintf(line, sizeof line, "%-8s | %8lld | %7lld | %10.4f | %-9s | %10.4f | %s", r.model.c_str(),
                  static_cast<long long>(r.context), static_cast<long long>(r.windows), r.dense_bits, r.method.c_str(),
                  r.bits, ci_cell(r.vs_dense).c_str());
    out << line << "\n";
    csv << r.model << "," << r.context << "," << r.windows << "," << r.dense_bits << "," << r.method << "," << r.bits
        << "," << r.vs_dense.mean << "," << r.vs_dense.low << "," << r.vs_dense.high << "\n";
    if (std::find(groups.begin(), groups.end(), r.model + " " + r.method) == groups.end())
      groups.push_back(r.model + " " + r.method);
  }
  write_file_atomic(args.out_prefix + ".csv", csv.str());
  std::vector<PlotSeries> series;
  for (size_t g = 0; g < groups.size(); ++g) {
    const bool simba = groups[g].substr(groups[g].rfind(' ') + 1).rfind("simba", 0) == 0;
    PlotSeries s{groups[g] + " − dense", {}, {}, plot_color(g), !simba};
    for (const ContextRow& r : result)
      if (r.model + " " + r.method == groups[g]) {
        s.x.push_back(static_cast<double>(r.context));
        s.y.push_back(r.vs_dense.mean);
      }
    series.push_back(s);
  }
  write_plot(args.out_prefix, series,
             args.title.empty() ? "continuation loss minus dense against the context length" : args.title,
             "context length (tokens)", "bits per token minus the dense model's (below 0: better than dense)", out);
  return result;
}

}  // namespace simba
