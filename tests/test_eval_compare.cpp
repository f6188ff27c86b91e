// tests/test_eval_compare.cpp: `simba frontier`, `simba compare` and `simba contexts`
// (train/eval_compare.h): the interpolated dense frontier (1) and its paired interval on cases
// with known answers, the reference model, the model labels, pairs of rows across models, each
// model's rows against its dense rows by context, the CSV, SVG and tables, and the errors.
#include <doctest/doctest.h>

#include <cmath>
#include <iostream>
#include <sstream>
#include <string>
#include <vector>

#include <nlohmann/json.hpp>

#include "tensor/file_io.h"
#include "tests/test_util.h"
#include "train/eval_compare.h"

using namespace simba;

namespace {

const TempDir g_tmp("test_eval_compare");

// Per-window difficulty shared by every model: the differences between models are constant
// shifts, so each paired interval collapses onto the difference itself.
const std::vector<double> kBase = {1.3, 2.1, 0.7, 1.9, 1.1};

struct Row {
  std::string method;
  double flops, shift_bits;  // every window's loss is kBase + shift, in bits
  int64_t context = 2048;
};

// A simba eval --json file of model `model` holding `rows`.
std::string eval_file(const std::string& name, const std::string& model, const std::vector<Row>& rows,
                      int64_t continuation = 256) {
  nlohmann::json j = {{"model", model}, {"data", "test.bin"}, {"continuation", continuation},
                      {"max_windows", 5}, {"rows", nlohmann::json::array()}};
  for (const Row& r : rows) {
    std::vector<double> nats;
    for (double b : kBase) nats.push_back((b + r.shift_bits) * std::log(2.0));
    j["rows"].push_back({{"context", r.context}, {"method", r.method},
                         {"options", r.method == "dense" ? "keep=1" : "keep=0.1,schedule=linear"},
                         {"flops_per_window", r.flops}, {"window_loss", nats}});
  }
  const std::string path = g_tmp.file(name);
  write_file_atomic(path, j.dump());
  return path;
}

FrontierArgs args_of(std::vector<std::string> files) {
  FrontierArgs a;
  a.json = std::move(files);
  a.context = 2048;
  a.out_prefix = g_tmp.file("frontier");
  a.bootstrap = 2000;
  return a;
}

}  // namespace

TEST_CASE("frontier: interpolation in log FLOPs, paired intervals, the reference model, outputs") {
  // Dense s, m, l at 1, 4 and 16 GFLOP, 1.0, 0.6 and 0.2 bits above the base. Pruned l at 2
  // GFLOP: halfway between s and m in log FLOPs, so the frontier is 0.8 there and the point,
  // at 0.7, is 0.1 below it; its reference is m (the smallest dense of >= 2 GFLOP), 0.1 above.
  // A pruned point under the smallest dense model has a reference (s) but no frontier value.
  const std::vector<std::string> files = {
      eval_file("s.json", "runs/family/s/checkpoint", {{"dense", 1e9, 1.0}, {"dense", 1e9, 5.0, 8192}}),
      eval_file("m.json", "runs/family/m/checkpoint/", {{"dense", 4e9, 0.6}}),
      eval_file("l_keep0.1.json", "runs/family/l/checkpoint", {{"dense", 16e9, 0.2}, {"simba", 2e9, 0.7}}),
      eval_file("l_keep0.05.json", "runs/family/l/checkpoint", {{"dense", 16e9, 0.2}, {"simba", 0.5e9, 1.5}}),
      eval_file("other.json", "models/tiny", {{"dense", 8e9, 0.3}}),
  };
  std::ostringstream printed;
  const std::vector<FrontierPoint> pts = run_frontier(args_of(files), printed);
  REQUIRE(pts.size() == 6);  // dense s, m, tiny, l (the second l dense row is the same), 2 pruned
  CHECK(pts[0].model == "s");
  CHECK(pts[1].model == "m");  // a trailing '/' and the checkpoint folder are both seen through
  CHECK(pts[2].model == "tiny");
  CHECK(pts[3].model == "l");
  const double base_mean = (1.3 + 2.1 + 0.7 + 1.9 + 1.1) / 5;
  CHECK(pts[0].bits == doctest::Approx(base_mean + 1.0).epsilon(1e-12));
  CHECK_FALSE(pts[0].has_frontier);  // dense points are the frontier

  const FrontierPoint& mid = pts[4];
  CHECK(mid.method == "simba");
  REQUIRE(mid.has_frontier);
  CHECK(mid.vs_frontier.mean == doctest::Approx(-0.1).epsilon(1e-9));
  CHECK(mid.vs_frontier.low == doctest::Approx(-0.1).epsilon(1e-9));
  CHECK(mid.vs_frontier.high == doctest::Approx(-0.1).epsilon(1e-9));
  CHECK(mid.ref == "m");
  CHECK(mid.vs_ref.mean == doctest::Approx(0.1).epsilon(1e-9));

  const FrontierPoint& low = pts[5];
  CHECK_FALSE(low.has_frontier);
  CHECK(low.ref == "s");
  CHECK(low.vs_ref.mean == doctest::Approx(0.5).epsilon(1e-9));

  const std::string table = printed.str();
  CHECK(contains(table, "below (better)"));
  CHECK(contains(table, "outside its range"));
  CHECK(contains(table, "5 windows"));
  const std::string csv = read_file(g_tmp.file("frontier.csv"));
  CHECK(csv.rfind("model,method,options,flops_per_window,bits_per_token,vs_frontier_bits,", 0) == 0);
  CHECK(contains(csv, "l,simba,\"keep=0.1,schedule=linear\",2000000000,"));
  const std::string svg = read_file(g_tmp.file("frontier.svg"));
  CHECK(contains(svg, "<svg"));
  CHECK(contains(svg, "dense models"));
  CHECK(contains(svg, "l simba pruned"));
}

TEST_CASE("frontier: a noisy difference gets an interval around its mean") {
  // The pruned point's loss differs from the frontier by a window-dependent amount, so the
  // interval has width and contains the mean.
  std::vector<std::string> files = {eval_file("a.json", "a", {{"dense", 1e9, 1.0}}),
                                    eval_file("b.json", "b", {{"dense", 4e9, 0.0}})};
  nlohmann::json j = nlohmann::json::parse(read_file(eval_file("c.json", "c", {{"dense", 8e9, -0.5}})));
  std::vector<double> nats;
  const std::vector<double> noise = {0.3, -0.2, 0.1, 0.0, -0.4};
  for (size_t i = 0; i < kBase.size(); ++i) nats.push_back((kBase[i] + 0.5 + noise[i]) * std::log(2.0));
  j["rows"].push_back({{"context", 2048}, {"method", "random"}, {"options", "keep=0.1"}, {"flops_per_window", 4e9},
                       {"window_loss", nats}});
  write_file_atomic(g_tmp.file("c.json"), j.dump());
  files.push_back(g_tmp.file("c.json"));
  std::ostringstream printed;
  const std::vector<FrontierPoint> pts = run_frontier(args_of(files), printed);
  const FrontierPoint& p = pts.back();
  REQUIRE(p.has_frontier);  // exactly at b's FLOPs: the frontier there is b
  CHECK(p.ref == "b");
  CHECK(p.vs_frontier.mean == doctest::Approx(0.5 - 0.04).epsilon(1e-9));
  CHECK(p.vs_frontier.low < p.vs_frontier.mean);
  CHECK(p.vs_frontier.high > p.vs_frontier.mean);
  CHECK(p.vs_ref.mean == doctest::Approx(p.vs_frontier.mean).epsilon(1e-12));
}

TEST_CASE("frontier: errors name the file and what was expected") {
  const std::string s = eval_file("e_s.json", "s", {{"dense", 1e9, 1.0}});
  CHECK(contains(error_of([&] { run_frontier(args_of({s, eval_file("e_m.json", "m", {{"dense", 4e9, 0.5}}, 128)}),
                                             std::cout); }),
                 "scored on other windows"));
  CHECK(contains(error_of([&] { run_frontier(args_of({s, eval_file("e_s2.json", "s", {{"dense", 1e9, 0.9}})}),
                                             std::cout); }),
                 "differs from its dense row in an earlier file"));
  FrontierArgs other = args_of({s});
  other.context = 4096;
  CHECK(contains(error_of([&] { run_frontier(other, std::cout); }), "no rows at --context 4096"));
  CHECK(contains(error_of([&] { run_frontier(args_of({eval_file("e_p.json", "p", {{"simba", 1e9, 1.0}})}),
                                             std::cout); }),
                 "no dense row at context 2048"));
  // The same data, m and window count, but placed otherwise (a file from before simba eval recorded
  // its placement took the split's first windows).
  nlohmann::json spread = nlohmann::json::parse(read_file(eval_file("e_spread.json", "m", {{"dense", 4e9, 0.5}})));
  spread["window_placement"] = "spread";
  spread["split_tokens"] = 100000;
  write_file_atomic(g_tmp.file("e_spread.json"), spread.dump());
  CHECK(contains(error_of([&] { run_frontier(args_of({s, g_tmp.file("e_spread.json")}), std::cout); }),
                 "spread windows"));
  // A number where an integer is expected (past int64's range: no undefined conversion), a wrong
  // type where a key has a default.
  nlohmann::json huge = nlohmann::json::parse(read_file(s));
  huge["rows"][0]["context"] = 1e110;
  write_file_atomic(g_tmp.file("e_huge.json"), huge.dump());
  CHECK(contains(error_of([&] { run_frontier(args_of({g_tmp.file("e_huge.json")}), std::cout); }),
                 "\"context\" is 1e+110, not of the expected type"));
  nlohmann::json typed = nlohmann::json::parse(read_file(s));
  typed["window_placement"] = 3;
  write_file_atomic(g_tmp.file("e_typed.json"), typed.dump());
  CHECK(contains(error_of([&] { run_frontier(args_of({g_tmp.file("e_typed.json")}), std::cout); }),
                 "\"window_placement\" is 3, not of the expected type"));
  write_file_atomic(g_tmp.file("bad.json"), R"({"rows": []})");
  CHECK(contains(error_of([&] { run_frontier(args_of({g_tmp.file("bad.json")}), std::cout); }), "no \"model\""));
  FrontierArgs empty_out = args_of({s});
  empty_out.out_prefix.clear();
  CHECK(contains(error_of([&] { run_frontier(empty_out, std::cout); }), "--out"));
}

TEST_CASE("compare: FILE:METHOD rows of different models, paired on their windows; the CSV; errors") {
  const std::string base = eval_file("c_base.json", "runs/x/checkpoint", {{"dense", 4e9, 0.5}, {"simba", 2e9, 0.8}});
  const std::string tuned = eval_file("c_tuned.json", "runs/x-ft", {{"dense", 4e9, 0.45}, {"simba", 2e9, 0.6}});
  CompareArgs a;
  a.context = 2048;
  a.a = {tuned + ":simba", tuned + ":simba"};
  a.b = {base + ":simba", base + ":dense"};
  a.csv_path = g_tmp.file("compare.csv");
  a.bootstrap = 500;
  std::ostringstream printed;
  const std::vector<Comparison> c = run_compare(a, printed);
  REQUIRE(c.size() == 2);
  CHECK(c[0].a.model == "x-ft");
  CHECK(c[0].b.model == "x");
  CHECK(c[0].diff.mean == doctest::Approx(-0.2).epsilon(1e-9));  // constant shifts: the interval is the point
  CHECK(c[0].diff.low == doctest::Approx(-0.2).epsilon(1e-9));
  CHECK(c[1].diff.mean == doctest::Approx(0.1).epsilon(1e-9));
  CHECK(contains(printed.str(), "x-ft simba"));
  const std::string csv = read_file(a.csv_path);
  CHECK(csv.rfind("a_model,a_method,a_options,", 0) == 0);
  CHECK(contains(csv, "x-ft,simba,\"keep=0.1,schedule=linear\",2000000000,"));

  CompareArgs bad = a;
  bad.b = {base + ":simba"};
  CHECK(contains(error_of([&] { run_compare(bad, std::cout); }), "as many --a as --b"));
  bad = a;
  bad.a = {tuned, tuned + ":simba"};
  CHECK(contains(error_of([&] { run_compare(bad, std::cout); }), "expected FILE:METHOD"));
  bad = a;
  bad.a = {tuned + ":random", tuned + ":simba"};
  CHECK(contains(error_of([&] { run_compare(bad, std::cout); }), "0 rows of method 'random' at context 2048"));
  bad = a;
  bad.b = {eval_file("c_other.json", "y", {{"simba", 2e9, 0.6}}, 128) + ":simba", base + ":dense"};
  CHECK(contains(error_of([&] { run_compare(bad, std::cout); }), "scored on other windows"));
}

TEST_CASE("contexts: each model's rows against its own dense row, context by context; CSV, SVG, errors") {
  const std::string s = eval_file("x_s.json", "runs/family/s/checkpoint",
                                  {{"dense", 1e9, 1.0, 1024}, {"simba", 0.6e9, 1.1, 1024}, {"random", 0.6e9, 1.4, 1024},
                                   {"dense", 2e9, 0.9, 2048}, {"simba", 1.2e9, 0.85, 2048}, {"random", 1.2e9, 1.3, 2048}});
  const std::string m = eval_file("x_m.json", "runs/family/m/checkpoint",
                                  {{"dense", 4e9, 0.5, 1024}, {"simba", 2.4e9, 0.5, 1024}});
  ContextsArgs a;
  a.json = {s, m};
  a.out_prefix = g_tmp.file("contexts");
  a.bootstrap = 500;
  std::ostringstream printed;
  const std::vector<ContextRow> rows = run_contexts(a, printed);
  REQUIRE(rows.size() == 5);
  CHECK(rows[0].model == "s");
  CHECK(rows[0].context == 1024);
  CHECK(rows[0].method == "simba");
  CHECK(rows[0].windows == 5);
  CHECK(rows[0].vs_dense.mean == doctest::Approx(0.1).epsilon(1e-9));
  CHECK(rows[1].vs_dense.mean == doctest::Approx(0.4).epsilon(1e-9));
  CHECK(rows[2].context == 2048);
  CHECK(rows[2].vs_dense.mean == doctest::Approx(-0.05).epsilon(1e-9));
  CHECK(rows[2].vs_dense.high == doctest::Approx(-0.05).epsilon(1e-9));
  CHECK(rows[4].model == "m");
  CHECK(rows[4].vs_dense.mean == doctest::Approx(0.0).epsilon(1e-9));
  const std::string csv = read_file(a.out_prefix + ".csv");
  CHECK(csv.rfind("model,context,windows,dense_bits,method,bits,vs_dense_bits,ci95_low,ci95_high\n", 0) == 0);
  CHECK(contains(csv, "\ns,2048,5,"));
  const std::string svg = read_file(a.out_prefix + ".svg");
  CHECK(contains(svg, "s simba"));
  CHECK(contains(svg, "m simba"));
  CHECK(contains(printed.str(), "method - dense [95% CI]"));

  ContextsArgs bad = a;
  bad.json = {eval_file("x_p.json", "p", {{"simba", 1e9, 1.0}})};
  CHECK(contains(error_of([&] { run_contexts(bad, std::cout); }), "no context with a dense row and another row"));
  bad = a;
  bad.out_prefix.clear();
  CHECK(contains(error_of([&] { run_contexts(bad, std::cout); }), "--out"));
}
