// bench/kernel_trace.h: what the GPU spent its time on while a piece of host code ran, one
// line per kernel (or copy, or fill), for the benchmark programs.
//
// A benchmark row's median says how long a step takes; this says where that time went, with
// the kernels' real durations in their real order and concurrency (unlike a replaying
// profiler, which serialises the kernels and runs each several times). The durations come from
// CUPTI's activity records (the profiling interface of the CUDA Toolkit): the device's own
// start and end timestamps of every kernel, memcpy and memset, collected in buffers and read
// after the work has finished. Tracing adds a little to each launch, so a traced call is never
// one of the timed samples.
#pragma once

#include <cstdint>
#include <functional>
#include <string>
#include <vector>

namespace simba {

struct KernelTime {
  std::string name;  // the demangled kernel name without namespaces, arguments or "void "; or "memcpy DtoH", "memset"
  double ms = 0.0;   // summed device time of its launches
  int64_t count = 0;  // launches
};

// Runs `work`, waits for `device` to finish it, and returns the device time of every kind of
// kernel it launched (and of its copies and fills), longest first. Throws if tracing is not
// available (a build without CUDA, or CUPTI cannot start: e.g. another profiler holds it).
std::vector<KernelTime> trace_kernels(int device, const std::function<void()>& work);

// The kernel's short name: "void simba::(anonymous namespace)::rank_kernel<float>(int*, ...)"
// becomes "rank_kernel<float>". Exposed for its test.
std::string short_kernel_name(const std::string& demangled);

}  // namespace simba
