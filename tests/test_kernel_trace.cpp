// tests/test_kernel_trace.cpp: the kernel names of bench/kernel_trace.h (bench_gpu --kernels),
// shortened from the demangled names CUPTI reports.
#include <doctest/doctest.h>

#include "bench/kernel_trace.h"

using simba::short_kernel_name;

TEST_CASE("short_kernel_name drops the return type, namespaces and arguments, keeps template arguments") {
  CHECK(short_kernel_name("void simba::(anonymous namespace)::rank_kernel<float>(int*, float const*, long, long)") ==
        "rank_kernel<float>");
  CHECK(short_kernel_name("void simba::(anonymous namespace)::scan_fwd<simba::bfloat16, 4>(simba::SeqView<float>)") ==
        "scan_fwd<simba::bfloat16, 4>");
  CHECK(short_kernel_name("void cub::CUB_300000_SM_900::DeviceRadixSortOnesweepKernel<cub::X, true>(int)") ==
        "DeviceRadixSortOnesweepKernel<cub::X, true>");
  // cuBLAS kernels are reported without arguments or namespaces: unchanged.
  CHECK(short_kernel_name("sm90_xmma_gemm_f32f32_tf32f32_f32_tn_n_tilesize128x128x32_warpgroupsize1x1x1") ==
        "sm90_xmma_gemm_f32f32_tf32f32_f32_tn_n_tilesize128x128x32_warpgroupsize1x1x1");
  // A parenthesis inside template arguments is not the argument list.
  CHECK(short_kernel_name("void k<(int)3>(float*)") == "k<(int)3>");
  CHECK(short_kernel_name("void ns::outer<ns::inner>::run(int)") == "run");
}
