// ssm/simba.cpp: SimbaOptions: names, validation, the CLI parser and its inverse.
#include "ssm/simba.h"

#include <cerrno>
#include <cmath>
#include <cstdlib>
#include <set>
#include <sstream>
#include <type_traits>

#include "tensor/error.h"

namespace simba {

namespace {

const char* const kCriterionList = "simba, simba-abs, simba-l2, random, stride, norm, clip, delta";
const char* const kScheduleList = "linear, uniform, inverted, custom";
const char* const kKeyList = "keep, schedule, criterion, start, seed, ratios, counts";

const SimbaCriterion kCriteria[] = {SimbaCriterion::Simba,  SimbaCriterion::SimbaAbs, SimbaCriterion::SimbaL2,
                                    SimbaCriterion::Random, SimbaCriterion::Stride,   SimbaCriterion::Norm,
                                    SimbaCriterion::Clip,   SimbaCriterion::Delta};
const SimbaSchedule kSchedules[] = {SimbaSchedule::Linear, SimbaSchedule::Uniform, SimbaSchedule::Inverted,
                                    SimbaSchedule::Custom};

std::string trim(const std::string& s) {
  const size_t b = s.find_first_not_of(" \t");
  if (b == std::string::npos) return "";
  return s.substr(b, s.find_last_not_of(" \t") - b + 1);
}

std::vector<std::string> split_on(const std::string& s, char sep) {
  std::vector<std::string> parts;
  std::string cur;
  for (char ch : s) {
    if (ch == sep) {
      parts.push_back(cur);
      cur.clear();
    } else {
      cur += ch;
    }
  }
  parts.push_back(cur);
  return parts;
}

// The whole of `s` as a finite number.
bool to_double(const std::string& s, double& out) {
  if (s.empty()) return false;
  char* end = nullptr;
  errno = 0;
  out = std::strtod(s.c_str(), &end);
  return errno == 0 && end == s.c_str() + s.size() && std::isfinite(out);
}

// The whole of `s` as a (decimal) integer.
bool to_int(const std::string& s, int64_t& out) {
  if (s.empty()) return false;
  char* end = nullptr;
  errno = 0;
  const long long v = std::strtoll(s.c_str(), &end, 10);
  out = v;
  return errno == 0 && end == s.c_str() + s.size();
}

// Shortest decimal text that reads back as exactly `v`, so to_string round-trips.
std::string exact_number(double v) {
  for (int digits = 1; digits <= 17; ++digits) {
    std::ostringstream os;
    os.precision(digits);
    os << v;
    double back = 0;
    if (to_double(os.str(), back) && back == v) return os.str();
  }
  std::ostringstream os;
  os.precision(17);
  os << v;
  return os.str();
}

template <class T>
std::string join(const std::vector<T>& xs) {
  std::string s;
  for (size_t i = 0; i < xs.size(); ++i) {
    if (i) s += ':';
    if constexpr (std::is_floating_point_v<T>)
      s += exact_number(xs[i]);
    else
      s += std::to_string(xs[i]);
  }
  return s;
}

}  // namespace

const char* criterion_name(SimbaCriterion c) {
  switch (c) {
    case SimbaCriterion::Simba: return "simba";
    case SimbaCriterion::SimbaAbs: return "simba-abs";
    case SimbaCriterion::SimbaL2: return "simba-l2";
    case SimbaCriterion::Random: return "random";
    case SimbaCriterion::Stride: return "stride";
    case SimbaCriterion::Norm: return "norm";
    case SimbaCriterion::Clip: return "clip";
    case SimbaCriterion::Delta: return "delta";
  }
  return "?";
}

const char* schedule_name(SimbaSchedule s) {
  switch (s) {
    case SimbaSchedule::Linear: return "linear";
    case SimbaSchedule::Uniform: return "uniform";
    case SimbaSchedule::Inverted: return "inverted";
    case SimbaSchedule::Custom: return "custom";
  }
  return "?";
}

bool is_ssm_criterion(SimbaCriterion c) {
  return c == SimbaCriterion::Simba || c == SimbaCriterion::SimbaAbs || c == SimbaCriterion::SimbaL2;
}

bool reads_mixer_trace(SimbaCriterion c) { return is_ssm_criterion(c) || c == SimbaCriterion::Delta; }

void SimbaOptions::validate(const std::string& source) const {
  SIMBA_CHECK(std::isfinite(keep) && keep > 0.0 && keep <= 1.0,
              source << ": keep=" << keep << ": expected a number in (0, 1]");
  SIMBA_CHECK(start >= 0, source << ": start=" << start
                                 << ": expected an integer >= 0 (layers 0..start process the whole context)");
  const bool has_ratios = !custom_ratios.empty(), has_counts = !custom_counts.empty();
  if (schedule != SimbaSchedule::Custom) {
    SIMBA_CHECK(!has_ratios && !has_counts, source << ": " << (has_ratios ? "ratios" : "counts")
                                                   << "= is only used with schedule=custom (got schedule="
                                                   << schedule_name(schedule) << ")");
    return;
  }
  SIMBA_CHECK_HINT(has_ratios != has_counts,
                   source << ": schedule=custom needs exactly one of ratios= and counts=, got "
                          << (has_ratios ? "both" : "neither"),
                   "e.g. schedule=custom,ratios=1:0.5:0.25 (one entry per layer)");
  for (size_t i = 0; i < custom_ratios.size(); ++i) {
    const double r = custom_ratios[i];
    SIMBA_CHECK(std::isfinite(r) && r > 0.0 && r <= 1.0,
                source << ": ratios: entry " << i << " (" << r << ") is not a number in (0, 1]");
    SIMBA_CHECK(i > 0 || r == 1.0, source << ": ratios: entry 0 is " << r
                                          << "; layer 0 always processes the whole context, so it must be 1");
    SIMBA_CHECK(i == 0 || r <= custom_ratios[i - 1],
                source << ": ratios: entry " << i << " (" << r << ") is larger than entry " << i - 1 << " ("
                       << custom_ratios[i - 1] << "); a pruned token never returns, so the list must not increase");
  }
  for (size_t i = 0; i < custom_counts.size(); ++i) {
    const int64_t c = custom_counts[i];
    SIMBA_CHECK(c >= 1, source << ": counts: entry " << i << " (" << c << ") is not an integer >= 1");
    SIMBA_CHECK(i == 0 || c <= custom_counts[i - 1],
                source << ": counts: entry " << i << " (" << c << ") is larger than entry " << i - 1 << " ("
                       << custom_counts[i - 1] << "); a pruned token never returns, so the list must not increase");
  }
}

std::string SimbaOptions::to_string() const {
  std::string s = "keep=" + exact_number(keep) + ",schedule=" + schedule_name(schedule) +
                  ",criterion=" + criterion_name(criterion) + ",start=" + std::to_string(start) +
                  ",seed=" + std::to_string(seed);
  if (!custom_ratios.empty()) s += ",ratios=" + join(custom_ratios);
  if (!custom_counts.empty()) s += ",counts=" + join(custom_counts);
  return s;
}

SimbaOptions parse_simba_options(const std::string& text, const std::string& source) {
  SimbaOptions opt;
  std::set<std::string> seen;
  if (trim(text).empty()) return opt;
  for (const std::string& raw : split_on(text, ',')) {
    const std::string item = trim(raw);
    const size_t eq = item.find('=');
    SIMBA_CHECK_HINT(eq != std::string::npos && eq > 0 && eq + 1 < item.size(),
                     source << ": malformed item '" << item << "': expected key=value",
                     "e.g. keep=0.1,schedule=linear,criterion=simba,start=0");
    const std::string key = item.substr(0, eq), value = item.substr(eq + 1);
    SIMBA_CHECK(seen.insert(key).second, source << ": key '" << key << "' given twice");
    if (key == "keep") {
      SIMBA_CHECK(to_double(value, opt.keep), source << ": " << item << ": expected a number in (0, 1]");
    } else if (key == "schedule") {
      bool found = false;
      for (SimbaSchedule s : kSchedules)
        if (value == schedule_name(s)) opt.schedule = s, found = true;
      SIMBA_CHECK(found, source << ": " << item << ": unknown schedule; valid: " << kScheduleList);
    } else if (key == "criterion") {
      bool found = false;
      for (SimbaCriterion c : kCriteria)
        if (value == criterion_name(c)) opt.criterion = c, found = true;
      SIMBA_CHECK(found, source << ": " << item << ": unknown criterion; valid: " << kCriterionList);
    } else if (key == "start") {
      SIMBA_CHECK(to_int(value, opt.start),
                  source << ": " << item << ": expected an integer >= 0 (layers 0..start process the whole context)");
    } else if (key == "seed") {
      int64_t seed = 0;
      SIMBA_CHECK(to_int(value, seed) && seed >= 0, source << ": " << item << ": expected an integer >= 0");
      opt.seed = static_cast<uint64_t>(seed);
    } else if (key == "ratios") {
      for (const std::string& e : split_on(value, ':')) {
        double r = 0;
        SIMBA_CHECK(to_double(e, r), source << ": " << item << ": '" << e << "' is not a number in (0, 1]");
        opt.custom_ratios.push_back(r);
      }
    } else if (key == "counts") {
      for (const std::string& e : split_on(value, ':')) {
        int64_t c = 0;
        SIMBA_CHECK(to_int(e, c), source << ": " << item << ": '" << e << "' is not an integer >= 1");
        opt.custom_counts.push_back(c);
      }
    } else {
      SIMBA_FAIL(source << ": unknown key '" << key << "' in '" << item << "'; valid keys: " << kKeyList);
    }
  }
  opt.validate(source);
  return opt;
}

}  // namespace simba
