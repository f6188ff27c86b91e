// tensor/blas_core.h: which OpenBLAS kernel family ("core") the CPU GEMMs run
// on, and moving to a faster one when OpenBLAS's own detection settles for a
// generic core.
//
// Debian's OpenBLAS is built with DYNAMIC_ARCH: when the library is loaded it
// reads the CPU's vendor/family/model ids and picks one core's kernels, or
// the core named by the environment variable OPENBLAS_CORETYPE if that is
// set. On virtual machines whose CPU ids it does not know (0.3.21 on some
// cloud EPYC and Xeon guests) it falls back to "Prescott", SSE3 kernels, even
// when the CPU has AVX2 or AVX-512, and the GEMMs run about half as fast
// (bench/RESULTS.md). The choice is made once, at load time, so the only way
// to change it is to set the variable and start the process again; the
// `simba` program does exactly that (ensure_fast_blas_core, first thing in
// main). A user's own OPENBLAS_CORETYPE is always respected.
#pragma once

#include <string>

namespace simba {

// The vector-instruction classes that OpenBLAS's x86-64 kernels are built for.
struct CpuFeatures {
  bool avx2 = false;    // AVX2 + FMA: the "Haswell" kernels
  bool avx512 = false;  // AVX-512 F, CD, BW, DQ and VL: the "SkylakeX" kernels
};
CpuFeatures cpu_features();  // of this CPU, as the OS allows them to be used

// The core to ask for, given the core OpenBLAS runs and the CPU's features,
// or "" when the current core already uses the widest vectors the CPU has
// (SkylakeX, Cooperlake and SapphireRapids are AVX-512 cores; Haswell and
// Zen AVX2 ones; every other x86-64 core is older).
std::string better_blas_core(const std::string& current, CpuFeatures cpu);

// The core OpenBLAS runs, and how it came to run it, for `simba info` and the
// training header, e.g. "SkylakeX (chosen by simba from the CPU's AVX-512;
// OpenBLAS's detection gave Prescott)".
std::string blas_core_description();

// If OPENBLAS_CORETYPE is unset and better_blas_core() names a core, sets the
// variable and re-executes this program (/proc/self/exe) with the same
// arguments, so that the new process loads OpenBLAS with the better kernels.
// Returns when nothing needs to change, or, after a warning on stderr, when
// the re-execution fails (the run then continues on the generic kernels).
// Call it first thing in main, before any thread starts.
void ensure_fast_blas_core(char** argv);

}  // namespace simba
