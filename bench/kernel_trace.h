// bench/kernel_trace.h: what the GPU spent its time on while a piece of host code ran, one
// line per kernel (or copy, or fill), for the benchmark programs.
//
// A benchmark row's median says how long a step takes; this says where that time went, with
// the kernels' real durations in their real order and concurrency (unlike a replaying
// profiler, which serialises the kernels and runs each several times). The durations come from
// CUPTI's activity records (the profiling interface of the CUDA Toolkit): the device's own
// start and end timestamps of every kernel, memcpy and memset, collected in buffers and read
// after the work has finished. Tracing adds a little to each launch, so a traced call is never
// one of the timed samples. The same timestamps show where the device sat idle between kernels
// (the host had not launched the next one yet), and CUPTI's records of the runtime calls where
// the host's time went.
#pragma once

#include <cstdint>
#include <functional>
#include <map>
#include <string>
#include <vector>

namespace simba {

struct KernelTime {
  std::string name;  // the demangled kernel name without namespaces, arguments or "void "; or "memcpy DtoH", "memset"
  double ms = 0.0;   // summed device time of its launches
  int64_t count = 0;  // launches
};

// One kernel, copy or fill as the device ran it: CUPTI's timestamps (ns).
struct Activity {
  std::string name;
  uint64_t start = 0, end = 0;
};

// One stretch of device idle time: `at_ms` after the trace began, between the end of `after`
// (empty: the trace's start) and the start of `before`.
struct Gap {
  double at_ms = 0.0, ms = 0.0;
  std::string after, before;
};

struct IdleTime {
  // The idle time that ended with a launch of `name` (ms), in `count` stretches; longest first.
  std::vector<KernelTime> before;
  std::vector<Gap> longest;  // the longest single stretches, longest first
};

struct KernelTrace {
  std::vector<KernelTime> kernels;  // device time of every kind of kernel, copy and fill, longest first
  IdleTime idle;                    // where the device sat idle (idle_gaps)
  // With host_api: host time in CUDA runtime calls, by function ("cudaLaunchKernel"), longest
  // first; count is the number of calls. Recording them slows every call, so the same trace's
  // idle times are then larger than untraced ones.
  std::vector<KernelTime> api;
};

// Runs `work`, waits for `device` to finish it, and returns what the device did meanwhile.
// Throws if tracing is not available (a build without CUDA, or CUPTI cannot start: e.g.
// another profiler holds it).
KernelTrace trace_kernels(int device, const std::function<void()>& work, bool host_api = false);

// The device's idle stretches from time `from` on: taking the activities in order of start,
// a stretch ends where one starts while none has been running since the end of the last (or
// since `from`); it is summed under that activity's name, and the `keep` longest are listed.
// Exposed for its test.
IdleTime idle_gaps(std::vector<Activity> acts, uint64_t from, size_t keep = 8);

// The entries of a by-name sum, longest first (shared by the trace and idle_gaps).
std::vector<KernelTime> longest_first(const std::map<std::string, KernelTime>& by_name);

// The kernel's short name: "void simba::(anonymous namespace)::rank_kernel<float>(int*, ...)"
// becomes "rank_kernel<float>". Exposed for its test.
std::string short_kernel_name(const std::string& demangled);

}  // namespace simba
