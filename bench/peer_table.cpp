// bench/peer_table.cpp: the simba-versus-peer table of bench_gpu --peer (bench/peer_table.h).
#include "bench/peer_table.h"

#include <fstream>
#include <map>
#include <sstream>
#include <tuple>

#include "tensor/error.h"

namespace simba {

namespace {

// The GPU performance issue's acceptance targets, by (bench, config).
struct Target {
  const char* bench;
  const char* config;
  double speedup;   // point 2-5: minimum peer time / simba time
  double fraction;  // point 1: minimum fraction of the copy bandwidth
  bool memory;      // point 6: simba's peak <= the peer's
};
const Target kTargets[] = {
    {"scan_fwd", "f32", 0.0, 0.5, false},  {"scan_fwd", "bf16", 0.0, 0.5, false},
    {"scan_bwd", "f32", 0.0, 0.3, false},  {"scan_bwd", "bf16", 0.0, 0.3, false},
    {"train", "A", 3.0, 0.0, false},       {"train", "B", 1.1, 0.0, true},
    {"train_bf16", "B", 2.0, 0.0, true},   {"prefill_bf16", "B", 1.5, 0.0, false},
    {"infer", "A", 2.0, 0.0, false},       {"decode", "B", 1.5, 0.0, false},
    {"decode_bf16", "B", 1.5, 0.0, false},
};

using Key = std::tuple<std::string, std::string, std::string>;
Key key_of(const nlohmann::json& j) {
  return {j["bench"].get<std::string>(), j["config"].get<std::string>(), j["shape"].get<std::string>()};
}

std::string label(const Key& k) { return std::get<0>(k) + " " + std::get<1>(k) + " " + std::get<2>(k); }

double number_or(const nlohmann::json& j, const char* field, double otherwise) {
  return j.contains(field) && j[field].is_number() ? j[field].get<double>() : otherwise;
}

bool starts_with(const std::string& s, const char* prefix) { return s.rfind(prefix, 0) == 0; }

}  // namespace

std::vector<nlohmann::json> read_result_lines(const std::string& path) {
  std::ifstream in(path);
  SIMBA_CHECK(in.good(), "--peer " << path << ": cannot open the file");
  std::vector<nlohmann::json> rows;
  std::string line;
  for (int64_t n = 1; std::getline(in, line); ++n) {
    if (line.find_first_not_of(" \t\r") == std::string::npos) continue;
    nlohmann::json j = nlohmann::json::parse(line, nullptr, /*allow_exceptions=*/false);
    const std::string where = "--peer " + path + ":" + std::to_string(n) + ": ";
    SIMBA_CHECK(j.is_object(), where << "expected one JSON object per line");
    for (const char* field : {"bench", "config", "shape"})
      SIMBA_CHECK(j.contains(field) && j[field].is_string(), where << "expected a string \"" << field << "\"");
    SIMBA_CHECK(j.contains("median_ms") && j["median_ms"].is_number() && j["median_ms"].get<double>() > 0,
                where << "expected a positive number \"median_ms\"");
    if (j.contains("peak_bytes"))
      SIMBA_CHECK(j["peak_bytes"].is_number() && j["peak_bytes"].get<double>() >= 0,
                  where << "\"peak_bytes\" must be a non-negative number");
    rows.push_back(std::move(j));
  }
  SIMBA_CHECK(!rows.empty(), "--peer " << path << ": no rows");
  return rows;
}

HardwareLimits limits_of(const std::vector<nlohmann::json>& simba_rows) {
  HardwareLimits l;
  for (const nlohmann::json& r : simba_rows) {
    if (r.value("status", "") != "ok") continue;
    if (r["bench"] == "copy_d2d") l.copy_GBps = number_or(r, "GB_per_s", 0.0);
    if (r["bench"] == "gemm" && r["config"] == "f32") l.gemm_f32_TFLOPs = number_or(r, "TFLOP_per_s", 0.0);
    if (r["bench"] == "gemm" && r["config"] == "bf16") l.gemm_bf16_TFLOPs = number_or(r, "TFLOP_per_s", 0.0);
  }
  return l;
}

std::vector<PeerComparison> compare_with_peer(const std::vector<nlohmann::json>& simba_rows,
                                              const std::vector<nlohmann::json>& peer_rows,
                                              const HardwareLimits& limits, std::vector<std::string>& unpaired) {
  std::map<Key, const nlohmann::json*> peer;
  for (const nlohmann::json& p : peer_rows) peer[key_of(p)] = &p;
  std::vector<PeerComparison> out;
  std::map<Key, bool> used;
  for (const nlohmann::json& s : simba_rows) {
    if (s.value("status", "") != "ok") continue;
    const Key k = key_of(s);
    auto it = peer.find(k);
    if (it == peer.end()) {
      if (s["bench"] != "copy_d2d" && s["bench"] != "gemm") unpaired.push_back("simba only: " + label(k));
      continue;
    }
    used[k] = true;
    const nlohmann::json& p = *it->second;
    PeerComparison c;
    std::tie(c.bench, c.config, c.shape) = k;
    c.simba_ms = s["median_ms"].get<double>();
    c.peer_ms = p["median_ms"].get<double>();
    c.speedup = c.peer_ms / c.simba_ms;
    c.simba_peak_MiB = number_or(s, "peak_bytes", -double(1 << 20)) / double(1 << 20);
    c.peer_peak_MiB = number_or(p, "peak_bytes", -double(1 << 20)) / double(1 << 20);
    // The limit of the row (header comment).
    double work = 0.0, rate = 0.0;  // per call, and the limit's rate in the same units per ms
    const double parameters = number_or(s, "parameters", 0.0), tokens = number_or(s, "tokens_per_call", 0.0);
    if (starts_with(c.bench, "scan_")) {
      c.limit = "copy";
      work = number_or(s, "bytes_per_call", 0.0);
      rate = limits.copy_GBps * 1e6;
    } else if (starts_with(c.bench, "train") || starts_with(c.bench, "infer") || starts_with(c.bench, "prefill")) {
      const bool bf16 = c.bench.find("_bf16") != std::string::npos;
      c.limit = bf16 ? "bf16 GEMM" : "f32 GEMM";
      work = (starts_with(c.bench, "train") ? 6.0 : 2.0) * parameters * tokens;
      rate = (bf16 ? limits.gemm_bf16_TFLOPs : limits.gemm_f32_TFLOPs) * 1e9;
    }
    if (work > 0 && rate > 0) {
      c.simba_fraction = work / c.simba_ms / rate;
      c.peer_fraction = work / c.peer_ms / rate;
    } else {
      c.limit.clear();
    }
    for (const Target& t : kTargets) {
      if (c.bench != t.bench || c.config != t.config) continue;
      c.speedup_target = t.speedup;
      c.fraction_target = t.fraction;
      c.memory_target = t.memory;
    }
    if (c.speedup_target > 0 && c.speedup < c.speedup_target) c.met = false;
    if (c.fraction_target > 0 && !(c.simba_fraction >= c.fraction_target)) c.met = false;
    if (c.memory_target && !(c.simba_peak_MiB >= 0 && c.peer_peak_MiB >= 0 && c.simba_peak_MiB <= c.peer_peak_MiB))
      c.met = false;
    out.push_back(c);
  }
  for (const nlohmann::json& p : peer_rows)
    if (!used.count(key_of(p))) unpaired.push_back("peer only: " + label(key_of(p)));
  return out;
}

void print_peer_table(const std::vector<PeerComparison>& rows, const std::vector<std::string>& unpaired,
                      const HardwareLimits& limits, const std::string& peer_file, std::FILE* out) {
  auto opt = [](double v, const char* spec) {
    if (v < 0) return std::string("-");
    char buf[32];
    std::snprintf(buf, sizeof buf, spec, v);
    return std::string(buf);
  };
  std::fprintf(out,
               "\nsimba vs peer (%s): speedup = peer time / simba time; limits of this run: copy %.0f GB/s, "
               "f32 GEMM %.1f TFLOP/s, bf16 GEMM %.1f TFLOP/s\n",
               peer_file.c_str(), limits.copy_GBps, limits.gemm_f32_TFLOPs, limits.gemm_bf16_TFLOPs);
  std::fprintf(out, "%-13s %-6s %-27s %9s %9s %8s %8s %9s %9s %-9s %7s %7s  %s\n", "bench", "config", "shape",
               "simba_ms", "peer_ms", "speedup", "target", "simba_MiB", "peer_MiB", "limit", "simba%", "peer%",
               "verdict");
  for (const PeerComparison& c : rows) {
    std::string target = c.speedup_target > 0 ? opt(c.speedup_target, ">=%.1fx") : "";
    if (c.fraction_target > 0) target = opt(100.0 * c.fraction_target, ">=%.0f%%");
    if (c.memory_target) target += "+mem";
    std::fprintf(out, "%-13s %-6s %-27s %9.3f %9.3f %7.2fx %8s %9s %9s %-9s %7s %7s  %s\n", c.bench.c_str(),
                 c.config.c_str(), c.shape.c_str(), c.simba_ms, c.peer_ms, c.speedup,
                 target.empty() ? "-" : target.c_str(), opt(c.simba_peak_MiB, "%.0f").c_str(),
                 opt(c.peer_peak_MiB, "%.0f").c_str(), c.limit.empty() ? "-" : c.limit.c_str(),
                 opt(100.0 * c.simba_fraction, "%.1f").c_str(), opt(100.0 * c.peer_fraction, "%.1f").c_str(),
                 target.empty() ? "" : (c.met ? "met" : "NOT met"));
  }
  for (const std::string& u : unpaired) std::fprintf(out, "unpaired: %s\n", u.c_str());
  std::fflush(out);
}

}  // namespace simba
