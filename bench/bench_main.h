// bench/bench_main.h: the main of the Google Benchmark programs in bench/.
//
// It makes the simba program's start-up choice of OpenBLAS kernels
// (tensor/blas_core.h) first, so that the numbers are the ones `simba train`
// gets on the same machine, and prints the core in use.
#pragma once

#include <benchmark/benchmark.h>

#include <cstdio>

#include "tensor/blas_core.h"

#define SIMBA_BENCHMARK_MAIN()                                                     \
  int main(int argc, char** argv) {                                                \
    simba::ensure_fast_blas_core(argv);                                            \
    std::printf("OpenBLAS core: %s\n", simba::blas_core_description().c_str());    \
    benchmark::Initialize(&argc, argv);                                            \
    if (benchmark::ReportUnrecognizedArguments(argc, argv)) return 1;              \
    benchmark::RunSpecifiedBenchmarks();                                           \
    benchmark::Shutdown();                                                         \
    return 0;                                                                      \
  }
