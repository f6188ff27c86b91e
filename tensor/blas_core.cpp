// tensor/blas_core.cpp: OpenBLAS core detection and the re-execution that
// corrects it (see tensor/blas_core.h).
#include "tensor/blas_core.h"

#include <cblas.h>
#include <strings.h>
#include <unistd.h>

#include <cerrno>
#include <cstdlib>
#include <cstring>
#include <iostream>

namespace simba {

namespace {

// Set, next to OPENBLAS_CORETYPE, by ensure_fast_blas_core in the process it
// starts: the core OpenBLAS had detected, so that the re-executed program can
// report why it runs another one.
constexpr const char* kDetectedVar = "SIMBA_OPENBLAS_DETECTED_CORE";

bool is_one_of(const std::string& name, std::initializer_list<const char*> names) {
  for (const char* n : names)
    if (strcasecmp(name.c_str(), n) == 0) return true;
  return false;
}

bool is_avx512_core(const std::string& core) { return is_one_of(core, {"SkylakeX", "Cooperlake", "SapphireRapids"}); }
bool is_avx2_core(const std::string& core) { return is_avx512_core(core) || is_one_of(core, {"Haswell", "Zen"}); }

std::string current_core() {
  const char* name = openblas_get_corename();
  return name ? name : "unknown";
}

}  // namespace

CpuFeatures cpu_features() {
  CpuFeatures f;
#if defined(__x86_64__) && (defined(__GNUC__) || defined(__clang__))
  // libgcc's CPU model also checks XCR0, i.e. that the OS saves the AVX and
  // AVX-512 registers, so a feature reported here can really be used.
  __builtin_cpu_init();
  f.avx2 = __builtin_cpu_supports("avx2") && __builtin_cpu_supports("fma");
  f.avx512 = __builtin_cpu_supports("avx512f") && __builtin_cpu_supports("avx512cd") &&
             __builtin_cpu_supports("avx512bw") && __builtin_cpu_supports("avx512dq") &&
             __builtin_cpu_supports("avx512vl");
#endif
  return f;
}

std::string better_blas_core(const std::string& current, CpuFeatures cpu) {
  if (cpu.avx512 && !is_avx512_core(current)) return "SkylakeX";
  if (cpu.avx2 && !is_avx2_core(current)) return "Haswell";
  return "";
}

std::string blas_core_description() {
  const std::string core = current_core();
  const char* forced = std::getenv("OPENBLAS_CORETYPE");
  const char* detected = std::getenv(kDetectedVar);
  if (forced && detected)
    return core + " (chosen by simba from the CPU's " + (is_avx512_core(core) ? "AVX-512" : "AVX2") +
           "; OpenBLAS's detection gave " + detected + ")";
  if (forced) return core + " (OPENBLAS_CORETYPE=" + forced + " set by the user)";
  return core + " (OpenBLAS's detection)";
}

void ensure_fast_blas_core(char** argv) {
  if (std::getenv("OPENBLAS_CORETYPE")) return;  // the user's choice, or our own re-execution
  const std::string detected = current_core();
  const std::string better = better_blas_core(detected, cpu_features());
  if (better.empty()) return;
  setenv(kDetectedVar, detected.c_str(), 1);
  setenv("OPENBLAS_CORETYPE", better.c_str(), 1);
  execv("/proc/self/exe", argv);
  // Only reached when exec failed: carry on, slower, with the environment as it was.
  const int err = errno;
  unsetenv("OPENBLAS_CORETYPE");
  unsetenv(kDetectedVar);
  std::cerr << "simba: warning: OpenBLAS chose its generic '" << detected << "' kernels on a CPU with "
            << (better == "SkylakeX" ? "AVX-512" : "AVX2") << ", and restarting with OPENBLAS_CORETYPE=" << better
            << " failed (" << std::strerror(err) << "); GEMMs will be slower. Set OPENBLAS_CORETYPE=" << better
            << " yourself to avoid this.\n";
}

}  // namespace simba
