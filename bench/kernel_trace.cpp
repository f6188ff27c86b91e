// bench/kernel_trace.cpp: the part of bench/kernel_trace.h that needs no GPU, and
// trace_kernels for a build without CUPTI (bench/kernel_trace_cupti.cpp has it where the CUDA
// Toolkit's CUPTI library was found: CMakeLists.txt defines SIMBA_HAS_CUPTI then).
#include "bench/kernel_trace.h"

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

#ifndef SIMBA_HAS_CUPTI
std::vector<KernelTime> trace_kernels(int, const std::function<void()>&) {
  throw std::runtime_error(
      "trace_kernels: this build has no CUPTI (it needs the CUDA backend and the CUDA Toolkit's libcupti at "
      "configure time)");
}
#endif

}  // namespace simba
