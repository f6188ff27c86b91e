// tests/test_curves.cpp: `simba curves` (train/curves.h): the tokens axis, the bits, the CSV,
// the SVG and the table from metrics files in simba train's format, and the errors.
#include <doctest/doctest.h>

#include <cmath>
#include <sstream>
#include <string>

#include "tensor/file_io.h"
#include "tests/test_util.h"
#include "train/curves.h"

using namespace simba;

namespace {

const TempDir g_tmp("test_curves");

// A metrics.jsonl as simba train writes it: the start record, then per step a training record
// and, every `val_every` steps, a validation record.
std::string run_file(const std::string& dir, int64_t batch, int64_t seq, int64_t accum, int64_t steps, int64_t val_every) {
  std::ostringstream s;
  s << R"({"event":"start","step":0,"parameters":10,"options":{"batch_size":)" << batch << R"(,"seq_len":)" << seq
    << R"(,"grad_accum":)" << accum << "}}\n";
  s << R"({"step":0,"val_bpb":8.0,"val_loss":5.545})" << "\n";
  for (int64_t k = 1; k <= steps; ++k) {
    s << R"({"step":)" << k << R"(,"loss":)" << 2.0 / k << R"(,"lr":0.001,"tokens_per_sec":1000.0})" << "\n";
    if (k % val_every == 0) s << R"({"step":)" << k << R"(,"val_bpb":)" << 3.0 / k + 0.5 << "}\n";
  }
  make_dirs(g_tmp.file(dir));
  const std::string path = g_tmp.file(dir + "/metrics.jsonl");
  write_file_atomic(path, s.str());
  return path;
}

}  // namespace

TEST_CASE("curves: tokens = step x batch x seq x accum, training bits = loss / ln 2, CSV, SVG and the table") {
  CurvesArgs a;
  a.metrics = {run_file("small", 2, 16, 1, 6, 3), run_file("big", 4, 32, 2, 4, 2)};
  a.out_prefix = g_tmp.file("curves");
  std::ostringstream printed;
  const std::vector<RunCurve> runs = run_curves(a, printed);
  REQUIRE(runs.size() == 2);
  CHECK(runs[0].label == "small");  // the folder of each file
  CHECK(runs[1].label == "big");
  CHECK(runs[0].tokens_per_step == 32);
  CHECK(runs[1].tokens_per_step == 256);
  CHECK(runs[0].train_step.size() == 6);
  CHECK(runs[0].train_bits[1] == doctest::Approx(1.0 / std::log(2.0)).epsilon(1e-12));
  CHECK(runs[0].val_step == std::vector<int64_t>{0, 3, 6});
  CHECK(runs[1].val_bpb.back() == doctest::Approx(3.0 / 4 + 0.5));
  const std::string csv = read_file(a.out_prefix + ".csv");
  CHECK(csv.rfind("run,step,tokens,kind,value\n", 0) == 0);
  CHECK(contains(csv, "\"small\",3,96,val_bits_per_byte,1.5\n"));
  CHECK(contains(csv, "\"big\",2,512,train_bits_per_token,"));
  const std::string svg = read_file(a.out_prefix + ".svg");
  CHECK(contains(svg, "<svg"));
  CHECK(contains(svg, "small validation bits/byte"));
  CHECK(contains(svg, "big training bits/token"));
  // The table: last step and tokens, last training bits, last and best validation.
  CHECK(contains(printed.str(), "small                |        6 |            192 |"));
  CHECK(contains(printed.str(), "1.0000 |       1.0000\n"));  // small: last = best = 3/6 + 0.5
  CHECK(contains(printed.str(), "big                  |        4 |           1024 |"));
  // --labels replace the folder names.
  a.labels = {"A", "B"};
  CHECK(run_curves(a, printed)[1].label == "B");
}

TEST_CASE("curves: malformed metrics and bad flags are errors naming the file, line or flag") {
  auto err_of_file = [](const std::string& name, const std::string& text) {
    const std::string path = g_tmp.file(name);
    write_file_atomic(path, text);
    return error_of([&] { read_run_curve(path, "x"); });
  };
  const std::string start = R"({"event":"start","step":0,"options":{"batch_size":2,"seq_len":4,"grad_accum":1}})";
  CHECK(contains(err_of_file("a.jsonl", start + "\nnot json\n"), "a.jsonl:2"));
  CHECK(contains(err_of_file("b.jsonl", start + "\n[1,2]\n"), "b.jsonl:2: expected a JSON object with an integer \"step\""));
  CHECK(contains(err_of_file("c.jsonl", R"({"step":1,"loss":2.0})" "\n"), "c.jsonl:1: a step record before the run's start record"));
  CHECK(contains(err_of_file("d.jsonl", R"({"event":"start","step":0,"options":{"batch_size":2}})" "\n"),
                 "d.jsonl:1: the start record's options lack a positive integer \"seq_len\""));
  CHECK(contains(err_of_file("e.jsonl", start + "\n" R"({"step":1,"loss":null})" "\n"),
                 "e.jsonl:2: \"loss\" is null, expected a finite number"));
  CHECK(contains(err_of_file("f.jsonl", start + "\n"), "f.jsonl: no training or validation record"));
  CurvesArgs a;
  std::ostringstream out;
  CHECK(contains(error_of([&] { run_curves(a, out); }), "--metrics: expected at least one metrics.jsonl"));
  a.metrics = {g_tmp.file("f.jsonl")};
  a.labels = {"one", "two"};
  a.out_prefix = g_tmp.file("never");
  CHECK(contains(error_of([&] { run_curves(a, out); }), "--labels: 2 labels for 1 runs"));
  a.labels.clear();
  a.out_prefix.clear();
  CHECK(contains(error_of([&] { run_curves(a, out); }), "--out: expected an output path prefix"));
}
