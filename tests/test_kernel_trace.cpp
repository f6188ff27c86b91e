// tests/test_kernel_trace.cpp: the kernel names of bench/kernel_trace.h (bench_gpu --kernels),
// shortened from the demangled names CUPTI reports, and the device's idle gaps between them.
#include <doctest/doctest.h>

#include "bench/kernel_trace.h"

using simba::Activity;
using simba::IdleTime;
using simba::idle_gaps;
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

TEST_CASE("idle_gaps sums the device's idle stretches under the activity that ends each one") {
  // Given out of order; b overlaps a (no gap before it); c starts 2 us after b ends, a second c
  // 1 us after the first; d runs inside c's span. The watch starts 4 us before a.
  const std::vector<Activity> acts = {{"c", 12000, 15000}, {"a", 4000, 8000}, {"b", 5000, 10000},
                                      {"c", 16000, 17000}, {"d", 13000, 14000}};
  const IdleTime idle = idle_gaps(acts, 0);
  REQUIRE(idle.before.size() == 2);
  CHECK(idle.before[0].name == "a");  // 4 us, longest first
  CHECK(idle.before[0].ms == doctest::Approx(0.004));
  CHECK(idle.before[0].count == 1);
  CHECK(idle.before[1].name == "c");  // 2 us + 1 us
  CHECK(idle.before[1].ms == doctest::Approx(0.003));
  CHECK(idle.before[1].count == 2);
  // The single stretches, longest first, with where they sit and what they separate.
  REQUIRE(idle.longest.size() == 3);
  CHECK(idle.longest[0].ms == doctest::Approx(0.004));
  CHECK(idle.longest[0].at_ms == doctest::Approx(0.0));
  CHECK(idle.longest[0].after.empty());
  CHECK(idle.longest[0].before == "a");
  CHECK(idle.longest[1].ms == doctest::Approx(0.002));
  CHECK(idle.longest[1].at_ms == doctest::Approx(0.010));
  CHECK(idle.longest[1].after == "b");
  CHECK(idle.longest[1].before == "c");
  CHECK(idle.longest[2].after == "c");  // the first c ends last (d ends inside it)
  CHECK(idle_gaps(acts, 0, 1).longest.size() == 1);
  // Watching from after a's start: no gap before a.
  const IdleTime later = idle_gaps(acts, 4500);
  REQUIRE(later.before.size() == 1);
  CHECK(later.before[0].name == "c");
  CHECK(idle_gaps({}, 0).before.empty());
}
