// bench/kernel_trace_cupti.cpp: trace_kernels (bench/kernel_trace.h) through CUPTI's activity
// API. CUPTI asks for buffers (buffer_requested), fills them with one record per kernel,
// memcpy and memset as the device finishes them (and per runtime call, if asked), and hands
// each full buffer back (buffer_completed), where the records are summed by name and the
// device's are kept for idle_gaps. A flush after the device has synchronised hands back the
// partly filled buffers, so every record of `work` has arrived when trace_kernels reads them.
#include <cupti.h>
#include <cxxabi.h>

#include <algorithm>
#include <cstdlib>
#include <map>
#include <memory>
#include <mutex>
#include <stdexcept>

#include "bench/kernel_trace.h"
#include "tensor/cuda_device.h"

namespace simba {
namespace {

constexpr size_t kBufferBytes = size_t(8) << 20;
constexpr size_t kAlign = 8;  // CUPTI's buffers must be 8-byte aligned

void check(CUptiResult r, const char* what) {
  if (r == CUPTI_SUCCESS) return;
  const char* msg = nullptr;
  cuptiGetResultString(r, &msg);
  throw std::runtime_error(std::string("trace_kernels: ") + what + ": " + (msg ? msg : "unknown CUPTI error"));
}

void add_to(std::map<std::string, KernelTime>& by_name, const std::string& name, uint64_t start, uint64_t end) {
  KernelTime& k = by_name[name];
  k.name = name;
  k.ms += double(end - start) * 1e-6;
  ++k.count;
}

struct Totals {
  std::mutex lock;  // buffer_completed runs on a CUPTI thread
  std::map<std::string, KernelTime> by_name, api;
  std::vector<Activity> device;  // every kernel, copy and fill
  uint64_t dropped = 0;
  void add(const std::string& name, uint64_t start, uint64_t end) {
    add_to(by_name, name, start, end);
    device.push_back({name, start, end});
  }
};
Totals* g_totals = nullptr;  // the trace in progress (one at a time)

std::string demangled(const char* name) {
  int status = 0;
  std::unique_ptr<char, void (*)(void*)> d(abi::__cxa_demangle(name, nullptr, nullptr, &status), std::free);
  return status == 0 && d ? std::string(d.get()) : std::string(name);
}

const char* copy_kind(uint8_t kind) {
  switch (kind) {
    case CUPTI_ACTIVITY_MEMCPY_KIND_HTOD: return "memcpy HtoD";
    case CUPTI_ACTIVITY_MEMCPY_KIND_DTOH: return "memcpy DtoH";
    case CUPTI_ACTIVITY_MEMCPY_KIND_DTOD: return "memcpy DtoD";
    default: return "memcpy other";
  }
}

// "cudaLaunchKernel_v7000" -> "cudaLaunchKernel".
std::string runtime_call_name(CUpti_CallbackId cbid) {
  const char* name = nullptr;
  if (cuptiGetCallbackName(CUPTI_CB_DOMAIN_RUNTIME_API, cbid, &name) != CUPTI_SUCCESS || !name)
    return "runtime call " + std::to_string(cbid);
  std::string s = name;
  const size_t v = s.rfind("_v");
  if (v != std::string::npos && v + 2 < s.size() && s.find_first_not_of("0123456789", v + 2) == std::string::npos)
    s.resize(v);
  return s;
}

void CUPTIAPI buffer_requested(uint8_t** buffer, size_t* size, size_t* max_records) {
  *buffer = static_cast<uint8_t*>(std::aligned_alloc(kAlign, kBufferBytes));
  *size = *buffer ? kBufferBytes : 0;
  *max_records = 0;  // as many as fit
}

void CUPTIAPI buffer_completed(CUcontext context, uint32_t stream, uint8_t* buffer, size_t, size_t valid) {
  if (g_totals) {
    std::lock_guard<std::mutex> hold(g_totals->lock);
    CUpti_Activity* rec = nullptr;
    while (cuptiActivityGetNextRecord(buffer, valid, &rec) == CUPTI_SUCCESS) {
      switch (rec->kind) {
        case CUPTI_ACTIVITY_KIND_CONCURRENT_KERNEL: {
          const auto* k = reinterpret_cast<const CUpti_ActivityKernel10*>(rec);
          g_totals->add(short_kernel_name(demangled(k->name)), k->start, k->end);
          break;
        }
        case CUPTI_ACTIVITY_KIND_MEMCPY: {
          const auto* m = reinterpret_cast<const CUpti_ActivityMemcpy6*>(rec);
          g_totals->add(copy_kind(m->copyKind), m->start, m->end);
          break;
        }
        case CUPTI_ACTIVITY_KIND_MEMSET: {
          const auto* m = reinterpret_cast<const CUpti_ActivityMemset4*>(rec);
          g_totals->add("memset", m->start, m->end);
          break;
        }
        case CUPTI_ACTIVITY_KIND_RUNTIME: {
          const auto* a = reinterpret_cast<const CUpti_ActivityAPI*>(rec);
          add_to(g_totals->api, runtime_call_name(a->cbid), a->start, a->end);
          break;
        }
        default: break;
      }
    }
    size_t dropped = 0;
    cuptiActivityGetNumDroppedRecords(context, stream, &dropped);
    g_totals->dropped += dropped;
  }
  std::free(buffer);
}

const CUpti_ActivityKind kKinds[] = {CUPTI_ACTIVITY_KIND_CONCURRENT_KERNEL, CUPTI_ACTIVITY_KIND_MEMCPY,
                                     CUPTI_ACTIVITY_KIND_MEMSET};

}  // namespace

KernelTrace trace_kernels(int device, const std::function<void()>& work, bool host_api) {
  if (g_totals) throw std::runtime_error("trace_kernels: a trace is already running");
  Totals totals;
  cuda_synchronize(device);  // nothing queued before `work` is counted
  check(cuptiActivityRegisterCallbacks(buffer_requested, buffer_completed), "cuptiActivityRegisterCallbacks");
  g_totals = &totals;
  std::vector<CUpti_ActivityKind> kinds(std::begin(kKinds), std::end(kKinds));
  if (host_api) kinds.push_back(CUPTI_ACTIVITY_KIND_RUNTIME);
  // Whatever happens in `work`, the activity kinds are disabled and the buffers flushed before
  // `totals` goes out of scope.
  struct Stop {
    const std::vector<CUpti_ActivityKind>& kinds;
    ~Stop() {
      for (CUpti_ActivityKind k : kinds) cuptiActivityDisable(k);
      cuptiActivityFlushAll(CUPTI_ACTIVITY_FLAG_FLUSH_FORCED);
      g_totals = nullptr;
    }
  } stop{kinds};
  for (CUpti_ActivityKind k : kinds) check(cuptiActivityEnable(k), "cuptiActivityEnable");
  uint64_t from = 0;
  check(cuptiGetTimestamp(&from), "cuptiGetTimestamp");  // the clock of the activity records
  work();
  cuda_synchronize(device);
  check(cuptiActivityFlushAll(CUPTI_ACTIVITY_FLAG_FLUSH_FORCED), "cuptiActivityFlushAll");
  std::lock_guard<std::mutex> hold(totals.lock);
  if (totals.dropped)
    throw std::runtime_error("trace_kernels: CUPTI dropped " + std::to_string(totals.dropped) +
                             " records (its buffers were full): the trace is incomplete");
  return KernelTrace{longest_first(totals.by_name), idle_gaps(std::move(totals.device), from),
                     longest_first(totals.api)};
}

}  // namespace simba
