// bench/kernel_trace.cpp: the parts of bench/kernel_trace.h that need no GPU, and
// trace_kernels for a build without CUPTI (bench/kernel_trace_cupti.cpp has it where the CUDA
// Toolkit's CUPTI library was found: CMakeLists.txt defines SIMBA_HAS_CUPTI then).
#include "bench/kernel_trace.h"

#include <algorithm>
#include <stdexcept>

namespace simba {

std::string short_kernel_name(const std::string& demangled) {
  // The name ends where its argument list starts: the first '(' outside template brackets
  // ("(anonymous namespace)" is inside the qualified name, before any '<').
  std::string s = demangled;
  const std::string anon = "(anonymous namespace)::";
  for (size_t p; (p = s.find(anon)) != std::string::npos;) s.erase(p, anon.size());
  int depth = 0;
  size_t end = s.size();
  for (size_t i = 0; i < s.size(); ++i) {
    if (s[i] == '<') ++depth;
    if (s[i] == '>') --depth;
    if (s[i] == '(' && depth == 0) {
      end = i;
      break;
    }
  }
  s.resize(end);
  if (s.rfind("void ", 0) == 0) s.erase(0, 5);
  // Drop the namespaces of the function itself (not those inside its template arguments).
  depth = 0;
  size_t start = 0;
  for (size_t i = 0; i + 1 < s.size(); ++i) {
    if (s[i] == '<') ++depth;
    if (s[i] == '>') --depth;
    if (depth == 0 && s[i] == ':' && s[i + 1] == ':') start = i + 2;
  }
  return s.substr(start);
}

std::vector<KernelTime> longest_first(const std::map<std::string, KernelTime>& by_name) {
  std::vector<KernelTime> out;
  for (const auto& [name, k] : by_name) out.push_back(k);
  std::sort(out.begin(), out.end(), [](const KernelTime& a, const KernelTime& b) { return a.ms > b.ms; });
  return out;
}

IdleTime idle_gaps(std::vector<Activity> acts, uint64_t from, size_t keep) {
  std::sort(acts.begin(), acts.end(), [](const Activity& a, const Activity& b) { return a.start < b.start; });
  std::map<std::string, KernelTime> by_name;
  IdleTime idle;
  uint64_t busy_until = from;  // the device is busy (or not yet watched) up to here
  std::string last;            // the activity that ended last
  for (const Activity& a : acts) {
    if (a.start > busy_until) {
      const double ms = double(a.start - busy_until) * 1e-6;
      KernelTime& k = by_name[a.name];
      k.name = a.name;
      k.ms += ms;
      ++k.count;
      idle.longest.push_back({double(busy_until - from) * 1e-6, ms, last, a.name});
    }
    if (a.end >= busy_until) {
      busy_until = a.end;
      last = a.name;
    }
  }
  idle.before = longest_first(by_name);
  std::stable_sort(idle.longest.begin(), idle.longest.end(), [](const Gap& a, const Gap& b) { return a.ms > b.ms; });
  if (idle.longest.size() > keep) idle.longest.resize(keep);
  return idle;
}

#ifndef SIMBA_HAS_CUPTI
KernelTrace trace_kernels(int, const std::function<void()>&, bool) {
  throw std::runtime_error(
      "trace_kernels: this build has no CUPTI (it needs the CUDA backend and the CUDA Toolkit's libcupti at "
      "configure time)");
}
#endif

}  // namespace simba
