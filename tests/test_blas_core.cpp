// tests/test_blas_core.cpp: the choice of a better OpenBLAS core, and the
// description `simba info` and the training header print.
#include <doctest/doctest.h>

#include <cblas.h>

#include <cstdlib>
#include <string>

#include "tensor/blas_core.h"

using namespace simba;

TEST_CASE("better_blas_core: generic cores are replaced by the CPU's widest kernels, good ones kept") {
  const CpuFeatures avx512{true, true}, avx2{true, false}, old{false, false};
  // The case that motivated it: OpenBLAS 0.3.21 on a VM it does not recognise.
  CHECK(better_blas_core("Prescott", avx512) == "SkylakeX");
  CHECK(better_blas_core("Prescott", avx2) == "Haswell");
  CHECK(better_blas_core("Prescott", old) == "");
  CHECK(better_blas_core("Nehalem", avx2) == "Haswell");
  CHECK(better_blas_core("Sandybridge", avx512) == "SkylakeX");  // AVX only, no FMA kernels
  // AVX2 cores on an AVX-512 CPU move up; on an AVX2 CPU they stay.
  CHECK(better_blas_core("Haswell", avx512) == "SkylakeX");
  CHECK(better_blas_core("Zen", avx512) == "SkylakeX");
  CHECK(better_blas_core("Haswell", avx2) == "");
  CHECK(better_blas_core("Zen", avx2) == "");
  // AVX-512 cores are never replaced, whatever their spelling.
  for (const char* core : {"SkylakeX", "Cooperlake", "SapphireRapids", "SKYLAKEX", "cooperlake"})
    CHECK(better_blas_core(core, avx512) == "");
}

TEST_CASE("blas_core_description names the running core and why it runs") {
  const std::string core = openblas_get_corename();
  const std::string d = blas_core_description();
  CHECK(d.rfind(core + " (", 0) == 0);
  if (const char* forced = std::getenv("OPENBLAS_CORETYPE"))
    CHECK((d.find(std::string("OPENBLAS_CORETYPE=") + forced) != std::string::npos ||
           d.find("chosen by simba") != std::string::npos));
  else
    CHECK(d.find("OpenBLAS's detection") != std::string::npos);
}
