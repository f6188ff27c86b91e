// tensor/cuda_device.cu: the CUDA device layer (tensor/cuda_device.h, tensor/cuda_check.cuh)
// and the caching device allocator registered for DeviceType::CUDA.
//
// The allocator is the CUDA runtime's stream-ordered pool (cudaMallocAsync / cudaFreeAsync on
// the device's simba stream) with its release threshold raised to "never", so freed blocks stay
// cached in the pool and are handed out again without a cudaMalloc or a device synchronisation;
// the pool reuses a freed block for later work on the same stream at once, because that work
// runs after everything issued before the free. We count current and peak bytes ourselves.
//
// In front of the pool, a host-side cache of freed blocks by exact size: a training step frees
// and allocates the same sizes every step (about 1,700 tensors a step at the 130M shape), and a
// pool call with its cudaGetDevice/cudaSetDevice pair costs microseconds of host time where a
// map lookup costs a fraction of one; where the host launches slower than the kernels run, that
// time is the device's idle time. Reuse is safe for the same reason as the pool's: one stream a
// device. A block cached is not counted as handed out. When the pool cannot serve an
// allocation, the cached blocks go back to it and the allocation is tried once more. While a
// CudaGraph records, the cache is bypassed both ways (a graph's blocks are its own). At exit
// the cached blocks are returned, so that a leak check finds nothing. SIMBA_CUDA_CACHE=0
// switches the cache off (every free reaches the pool: what memcheck needs to see a use after
// free).
#include <cuda_runtime.h>

#include <algorithm>
#include <atomic>
#include <cstdio>
#include <cstdint>
#include <cstdlib>
#include <cstring>
#include <map>
#include <mutex>
#include <string>
#include <unordered_map>
#include <utility>
#include <vector>

#include "tensor/cuda_check.cuh"
#include "tensor/cuda_device.h"
#include "tensor/dispatch.h"

namespace simba {
namespace {

std::atomic<int64_t> g_device_to_host_copies{0};
std::atomic<int64_t> g_synchronizations{0};

// Runs the enclosed calls with `device` current, restoring the caller's device afterwards.
class DeviceGuard {
 public:
  explicit DeviceGuard(int device) {
    SIMBA_CUDA_CHECK(cudaGetDevice(&previous_));
    if (device != previous_) SIMBA_CUDA_CHECK(cudaSetDevice(device));
  }
  ~DeviceGuard() { cudaSetDevice(previous_); }
  DeviceGuard(const DeviceGuard&) = delete;
  DeviceGuard& operator=(const DeviceGuard&) = delete;

 private:
  int previous_ = 0;
};

// The streams and memory statistics of every device, guarded by one mutex. Created on first
// use and never destroyed: device storage held by static objects may be freed during exit,
// after this file's statics would have been destroyed.
// A device's freed blocks, by size.
struct CachedBlocks {
  std::unordered_map<size_t, std::vector<void*>> by_size;
};

struct DeviceTable {
  std::mutex mutex;
  std::map<int, cudaStream_t> streams;
  std::map<int, CudaErrorRecord*> error_records;
  std::map<int, CudaMemoryStats> memory;
  std::map<int, CachedBlocks> cached;
};
DeviceTable& table() {
  static DeviceTable* t = new DeviceTable;
  return *t;
}

void check_device_index(int device) {
  const int count = cuda_device_count();
  SIMBA_CHECK_HINT(device >= 0 && device < count,
                   "CUDA device cuda:" << device << " does not exist (" << count
                                       << " device(s) usable)",
                   (count == 0 ? cuda_unavailable_reason()
                               : "use cuda:0 .. cuda:" + std::to_string(count - 1)));
}

// Set while this thread records a CudaGraph: an allocation made during capture is a graph node
// whose address the runtime cannot yet describe, so the pointer check of
// cuda_check_device_pointer is skipped (the same calls were checked when they ran before,
// outside capture), and the allocator's cache is not used.
thread_local bool t_recording = false;

// Whether this thread is inside cuda_branches, and which branch it is queuing (0 outside one):
// cuda_branch().
thread_local bool t_branching = false;
thread_local int t_branch = 0;

// SIMBA_CUDA_CACHE unset or 1: on; 0: off; anything else is an error naming it. Read at the first
// allocation (where an error can be thrown; a free always comes after one).
bool cache_enabled() {
  static const bool on = [] {
    const char* v = std::getenv("SIMBA_CUDA_CACHE");
    SIMBA_CHECK(!v || std::strcmp(v, "0") == 0 || std::strcmp(v, "1") == 0,
                "environment variable SIMBA_CUDA_CACHE='" << v << "': expected 0 (no cache of freed device blocks) "
                                                          "or 1 (the default)");
    return !(v && std::strcmp(v, "0") == 0);
  }();
  return on;
}
bool g_cache_closed = false;  // set at exit (under the table's mutex): later frees reach the pool

// Returns p to the pool on the device's stream. Called from destructors and at exit, so it
// reports instead of throwing; a free fails only when the device is already in an error state
// (which the next checked call reports) or the runtime is being torn down at process exit.
void free_block(void* p, int device, cudaStream_t stream) {
  int previous = 0;
  if (cudaGetDevice(&previous) != cudaSuccess) return;  // runtime torn down
  cudaSetDevice(device);
  const cudaError_t err = cudaFreeAsync(p, stream);
  cudaSetDevice(previous);
  if (err != cudaSuccess && err != cudaErrorCudartUnloading)
    std::fprintf(stderr, "simba: cudaFreeAsync on cuda:%d failed: %s (%s)\n", device, cudaGetErrorName(err),
                 cudaGetErrorString(err));
}

// Returns every cached block of `device` (all devices if device < 0) to the pool.
void release_cached(int device) {
  std::vector<std::pair<void*, int>> blocks;
  std::map<int, cudaStream_t> streams;
  {
    std::lock_guard<std::mutex> lock(table().mutex);
    for (auto& [d, c] : table().cached) {
      if (device >= 0 && d != device) continue;
      for (auto& [size, list] : c.by_size)
        for (void* p : list) blocks.emplace_back(p, d);
      c.by_size.clear();
    }
    streams = table().streams;
  }
  for (const auto& [p, d] : blocks) free_block(p, d, streams.at(d));
}

void release_all_cached() {
  {
    std::lock_guard<std::mutex> lock(table().mutex);
    g_cache_closed = true;
  }
  release_cached(-1);
}

class CudaAllocator final : public Allocator {
 public:
  void* allocate(size_t nbytes, int device) override {
    if (nbytes == 0) return nullptr;
    if (cache_enabled() && !t_recording) {
      std::lock_guard<std::mutex> lock(table().mutex);
      auto& by_size = table().cached[device].by_size;
      auto it = by_size.find(nbytes);
      if (it != by_size.end() && !it->second.empty()) {
        void* p = it->second.back();
        it->second.pop_back();
        count_out(device, nbytes);
        return p;
      }
    }
    cudaStream_t stream = cuda_stream(device);
    DeviceGuard guard(device);
    void* p = nullptr;
    cudaError_t err = cudaMallocAsync(&p, nbytes, stream);
    if (err == cudaErrorMemoryAllocation && !t_recording) {  // the cached blocks back, then once more
      cudaGetLastError();
      release_cached(device);
      err = cudaMallocAsync(&p, nbytes, stream);
    }
    SIMBA_CHECK_HINT(err == cudaSuccess, "cudaMallocAsync of " << nbytes << " bytes on cuda:"
                                             << device << " failed: " << cudaGetErrorName(err)
                                             << " (" << cudaGetErrorString(err) << ")",
                     "reduce the batch size or sequence length");
    std::lock_guard<std::mutex> lock(table().mutex);
    count_out(device, nbytes);
    return p;
  }

  void deallocate(void* p, size_t nbytes, int device) override {
    cudaStream_t stream;
    {
      std::lock_guard<std::mutex> lock(table().mutex);
      table().memory[device].current_bytes -= nbytes;
      if (cache_enabled() && !t_recording && !g_cache_closed) {
        static const bool released_at_exit = std::atexit(release_all_cached) == 0;  // after the runtime's start
        (void)released_at_exit;
        table().cached[device].by_size[nbytes].push_back(p);
        return;
      }
      stream = table().streams.at(device);  // allocate() created it
    }
    free_block(p, device, stream);
  }

 private:
  // Counts nbytes handed out; the caller holds the table's mutex.
  static void count_out(int device, size_t nbytes) {
    CudaMemoryStats& s = table().memory[device];
    s.current_bytes += nbytes;
    if (s.current_bytes > s.peak_bytes) s.peak_bytes = s.current_bytes;
  }
};

CudaAllocator g_allocator;

// Registers the allocator at load time; only a pointer is stored, no CUDA call is made, so a
// process without a GPU is unaffected.
[[maybe_unused]] const bool g_registered = (register_allocator(DeviceType::CUDA, &g_allocator), true);

}  // namespace

bool cuda_compiled_in() { return true; }

int cuda_device_count() {
  int count = 0;
  if (cudaGetDeviceCount(&count) != cudaSuccess) {
    cudaGetLastError();  // not sticky: clear it so later calls do not report it again
    return 0;
  }
  return count;
}

std::string cuda_unavailable_reason() {
  int count = 0;
  const cudaError_t err = cudaGetDeviceCount(&count);
  if (err != cudaSuccess) {
    cudaGetLastError();
    return std::string("cudaGetDeviceCount: ") + cudaGetErrorName(err) + ": " +
           cudaGetErrorString(err);
  }
  return count == 0 ? "cudaGetDeviceCount found 0 devices" : "";
}

int cuda_current_device() {
  int device = 0;
  SIMBA_CUDA_CHECK(cudaGetDevice(&device));
  return device;
}

cudaStream_t cuda_stream(int device) {
  std::lock_guard<std::mutex> lock(table().mutex);
  auto it = table().streams.find(device);
  if (it != table().streams.end()) return it->second;
  check_device_index(device);
  DeviceGuard guard(device);
  // Keep freed blocks in the pool instead of returning them to the driver at each
  // synchronisation: that is what makes the allocator a caching one.
  cudaMemPool_t pool;
  SIMBA_CUDA_CHECK(cudaDeviceGetDefaultMemPool(&pool, device));
  uint64_t keep_all = UINT64_MAX;
  SIMBA_CUDA_CHECK(cudaMemPoolSetAttribute(pool, cudaMemPoolAttrReleaseThreshold, &keep_all));
  cudaStream_t stream;
  SIMBA_CUDA_CHECK(cudaStreamCreateWithFlags(&stream, cudaStreamNonBlocking));
  table().streams[device] = stream;  // lives until the process exits
  return stream;
}

namespace {
// The pinned error records are returned at exit, so that a leak check (compute-sanitizer
// --leak-check full) finds every allocation freed. Registered after the CUDA runtime started,
// which registers its own teardown first, so this runs before it.
void free_error_records() {
  std::lock_guard<std::mutex> lock(table().mutex);
  for (const auto& entry : table().error_records) cudaFreeHost(entry.second);  // nothing to report to at exit
  table().error_records.clear();
}
}  // namespace

CudaErrorRecord* cuda_error_record(int device) {
  cuda_stream(device);  // checks the index, sets up the device
  static const bool freed_at_exit = std::atexit(free_error_records) == 0;
  (void)freed_at_exit;
  std::lock_guard<std::mutex> lock(table().mutex);
  CudaErrorRecord*& r = table().error_records[device];
  if (!r) {
    DeviceGuard guard(device);
    SIMBA_CUDA_CHECK(cudaHostAlloc(reinterpret_cast<void**>(&r), sizeof(CudaErrorRecord), cudaHostAllocMapped));
    *r = CudaErrorRecord{0, 0, 0, 0};
  }
  return r;  // unified addressing: the host pointer is valid in kernels too
}

namespace {
// Called after the stream has drained: a recorded kernel error is reported once, then cleared.
void throw_recorded_error(int device) {
  CudaErrorRecord* r;
  {
    std::lock_guard<std::mutex> lock(table().mutex);
    auto it = table().error_records.find(device);
    if (it == table().error_records.end()) return;
    r = it->second;
  }
  const volatile CudaErrorRecord* v = r;
  if (v->op == 0) return;
  const CudaErrorRecord e{v->op, v->index, v->low, v->bound};
  r->op = 0;
  SIMBA_FAIL(reinterpret_cast<const char*>(e.op) << " on cuda:" << device << ": index " << e.index
                                                 << " out of range (expected " << e.low << " <= index < " << e.bound
                                                 << ")");
}
}  // namespace

void cuda_enter(const char* op, Device d) {
  // The count cannot change while the process runs; asking the driver once keeps this call,
  // made before every CUDA kernel, to a comparison and (rarely) a cudaSetDevice.
  static const int count = cuda_device_count();
  SIMBA_CHECK_HINT(d.index >= 0 && d.index < count,
                   op << " on " << d.str() << ": no such CUDA device (" << count << " usable)",
                   (count == 0 ? cuda_unavailable_reason() : "use cuda:0 .. cuda:" + std::to_string(count - 1)));
  thread_local int current = -1;
  if (current != d.index) {
    SIMBA_CUDA_CHECK(cudaSetDevice(d.index));
    current = d.index;
  }
}

void cuda_check_device_pointer(const void* p, const char* op, const char* name) {
  if (!p || t_recording) return;
  cudaPointerAttributes attr;
  SIMBA_CUDA_CHECK(cudaPointerGetAttributes(&attr, p));
  SIMBA_CHECK_HINT(attr.type == cudaMemoryTypeDevice || attr.type == cudaMemoryTypeManaged,
                   op << ": " << name << " is not CUDA device memory",
                   "allocate it with Storage(nbytes, {DeviceType::CUDA, i}) and copy with cuda_copy");
}

void cuda_copy(void* dst, Device dst_device, const void* src, Device src_device, size_t nbytes) {
  SIMBA_CHECK(!dst_device.is_cpu() || !src_device.is_cpu(),
              "cuda_copy: both sides are on the CPU (use std::memcpy)");
  if (nbytes == 0) return;
  const int device = dst_device.is_cpu() ? src_device.index : dst_device.index;
  cudaStream_t stream = cuda_stream(device);
  DeviceGuard guard(device);
  SIMBA_CUDA_CHECK(cudaMemcpyAsync(dst, src, nbytes, cudaMemcpyDefault, stream));
  if (dst_device.is_cpu()) {
    SIMBA_CUDA_CHECK(cudaStreamSynchronize(stream));
    ++g_device_to_host_copies;
    throw_recorded_error(device);
  }
}

void cuda_synchronize(int device) {
  cudaStream_t stream = cuda_stream(device);
  SIMBA_CUDA_CHECK(cudaStreamSynchronize(stream));
  ++g_synchronizations;
  throw_recorded_error(device);
}

CudaSyncCounts cuda_sync_counts() {
  CudaSyncCounts c;
  c.device_to_host_copies = g_device_to_host_copies.load();
  c.synchronizations = g_synchronizations.load();
  return c;
}

CudaMemoryStats cuda_memory_stats(int device) {
  check_device_index(device);
  std::lock_guard<std::mutex> lock(table().mutex);
  return table().memory[device];
}

void cuda_reset_peak_bytes(int device) {
  check_device_index(device);
  std::lock_guard<std::mutex> lock(table().mutex);
  CudaMemoryStats& s = table().memory[device];
  s.peak_bytes = s.current_bytes;
}

std::string cuda_device_name(int device) {
  check_device_index(device);
  cudaDeviceProp prop;
  SIMBA_CUDA_CHECK(cudaGetDeviceProperties(&prop, device));
  return prop.name;
}

namespace {

// A device's pinned staging buffer and the event recorded after the latest copy out of it.
// Created on first use and kept until the process exits, like the streams.
struct Staging {
  std::mutex mutex;  // one upload at a time per device
  void* buffer = nullptr;
  size_t capacity = 0;
  cudaEvent_t copied = nullptr;
};

struct StagingTable {
  std::mutex mutex;
  std::map<int, Staging*> devices;
};
StagingTable& staging_table() {
  static StagingTable* t = new StagingTable;
  return *t;
}

// The pinned buffers are returned at exit, for the same reason and in the same order as the
// error records (free_error_records): registered once the runtime has started.
void free_staging_buffers() {
  std::lock_guard<std::mutex> lock(staging_table().mutex);
  for (const auto& entry : staging_table().devices) {
    Staging& s = *entry.second;
    std::lock_guard<std::mutex> busy(s.mutex);
    if (s.copied) cudaEventSynchronize(s.copied);  // the last copy has read the buffer
    if (s.buffer) cudaFreeHost(s.buffer);          // nothing to report to at exit
    if (s.copied) cudaEventDestroy(s.copied);
    s.buffer = nullptr;
    s.capacity = 0;
    s.copied = nullptr;
  }
}

Staging& staging(int device) {
  static const bool freed_at_exit = std::atexit(free_staging_buffers) == 0;
  (void)freed_at_exit;
  std::lock_guard<std::mutex> lock(staging_table().mutex);
  Staging*& s = staging_table().devices[device];
  if (!s) s = new Staging;
  return *s;
}

}  // namespace

CudaGraph::CudaGraph(int device, const std::function<void()>& record) : device_(device) {
  cudaStream_t stream = cuda_stream(device);  // checks the index, sets up the device
  DeviceGuard guard(device);
  // Relaxed: other threads' CUDA calls (and this thread's queries) stay legal during capture.
  SIMBA_CUDA_CHECK(cudaStreamBeginCapture(stream, cudaStreamCaptureModeRelaxed));
  t_recording = true;
  try {
    record();
  } catch (...) {
    t_recording = false;
    cudaGraph_t partial = nullptr;
    cudaStreamEndCapture(stream, &partial);  // leave the stream usable
    if (partial) cudaGraphDestroy(partial);
    cudaGetLastError();
    throw;
  }
  t_recording = false;
  cudaGraph_t graph = nullptr;
  SIMBA_CUDA_CHECK(cudaStreamEndCapture(stream, &graph));
  cudaGraphExec_t exec = nullptr;
  const cudaError_t err = cudaGraphInstantiate(&exec, graph, 0);
  if (err != cudaSuccess) cudaGraphDestroy(graph);
  SIMBA_CHECK(err == cudaSuccess, "cudaGraphInstantiate failed: " << cudaGetErrorName(err) << " ("
                                                                  << cudaGetErrorString(err) << ")");
  graph_ = graph;
  exec_ = exec;
}

CudaGraph::~CudaGraph() {
  if (exec_) cudaGraphExecDestroy(static_cast<cudaGraphExec_t>(exec_));
  if (graph_) cudaGraphDestroy(static_cast<cudaGraph_t>(graph_));
}

void CudaGraph::replay() const {
  DeviceGuard guard(device_);
  SIMBA_CUDA_CHECK(cudaGraphLaunch(static_cast<cudaGraphExec_t>(exec_), cuda_stream(device_)));
}

size_t CudaGraph::root_count() const {
  size_t n = 0;
  SIMBA_CUDA_CHECK(cudaGraphGetRootNodes(static_cast<cudaGraph_t>(graph_), nullptr, &n));
  return n;
}

size_t CudaGraph::leaf_count() const {
  const cudaGraph_t graph = static_cast<cudaGraph_t>(graph_);
  size_t n = 0;
  SIMBA_CUDA_CHECK(cudaGraphGetNodes(graph, nullptr, &n));
  std::vector<cudaGraphNode_t> nodes(n);
  SIMBA_CUDA_CHECK(cudaGraphGetNodes(graph, nodes.data(), &n));
  size_t leaves = 0;
  for (cudaGraphNode_t node : nodes) {
    size_t dependents = 0;
    SIMBA_CUDA_CHECK(cudaGraphNodeGetDependentNodes(node, nullptr, nullptr, &dependents));
    leaves += dependents == 0;
  }
  return leaves;
}

namespace {
// The capture's dependency set: the nodes the next node captured on `stream` will wait on. The
// driver's array is valid only until the next call on the stream: copied.
std::vector<cudaGraphNode_t> capture_dependencies(cudaStream_t stream, const char* op) {
  cudaStreamCaptureStatus status;
  const cudaGraphNode_t* deps = nullptr;
  size_t count = 0;
  SIMBA_CUDA_CHECK(cudaStreamGetCaptureInfo(stream, &status, nullptr, nullptr, &deps, nullptr, &count));
  SIMBA_CHECK(status == cudaStreamCaptureStatusActive, op << ": the device's stream is not capturing");
  return std::vector<cudaGraphNode_t>(deps, deps + count);
}

// cuda_prefetch_l2's work: up to kPrefetchRanges ranges cut into pieces of kPrefetchPiece bytes
// (a range's last piece shorter), numbered across the ranges (range r's from first[r]); thread
// g of the grid asks for pieces g, g + the grid's threads, ... On sm_90 a piece is one bulk
// prefetch (cp.async.bulk.prefetch.L2), served by the multiprocessor's copy engine at about a
// 128-byte line a cycle while the block waits: about 225 GB/s a block. More blocks fetch faster
// but delay the work beside them (decode ran 6-13 % slower with a block a piece, bench/RESULTS.md),
// hence at most kPrefetchBlocks. Before sm_90: one prefetch.global.L2 a 128-byte line.
// Launch: grid min(ceil(pieces / kPrefetchThreads), kPrefetchBlocks), block kPrefetchThreads.
constexpr int kPrefetchRanges = 64, kPrefetchThreads = 256, kPrefetchBlocks = 3;
constexpr uint32_t kPrefetchPiece = 32 * 1024;
struct PrefetchList {
  const char* p[kPrefetchRanges];
  size_t bytes[kPrefetchRanges];  // multiples of 16, p 16-byte aligned
  int64_t first[kPrefetchRanges + 1];
  int n;
};

__global__ void __launch_bounds__(kPrefetchThreads) prefetch_l2_kernel(PrefetchList list) {
  int r = 0;
  for (int64_t g = int64_t(blockIdx.x) * blockDim.x + threadIdx.x; g < list.first[list.n];
       g += int64_t(gridDim.x) * blockDim.x) {
    while (g >= list.first[r + 1]) ++r;
    const size_t off = size_t(g - list.first[r]) * kPrefetchPiece;
    const char* a = list.p[r] + off;
    const size_t left = list.bytes[r] - off;
    const uint32_t size = left < kPrefetchPiece ? uint32_t(left) : kPrefetchPiece;
#if __CUDA_ARCH__ >= 900
    asm volatile("cp.async.bulk.prefetch.L2.global [%0], %1;" ::"l"(a), "r"(size) : "memory");
#else
    for (uint32_t o = 0; o < size; o += 128) asm volatile("prefetch.global.L2 [%0];" ::"l"(a + o));
#endif
  }
}
}  // namespace

int cuda_branch() { return t_branch; }

void cuda_branches(int device, int n, const std::function<void(int)>& branch) {
  SIMBA_CHECK(n >= 1 && n <= kMaxCudaBranches,
              "cuda_branches: " << n << " branches, expected 1 to " << kMaxCudaBranches);
  SIMBA_CHECK(!t_branching, "cuda_branches: called inside branch " << t_branch << " (branches do not nest)");
  cudaStream_t stream = cuda_stream(device);  // checks the index, sets up the device
  t_branching = true;
  struct Reset {  // outside again however the branches end
    ~Reset() {
      t_branching = false;
      t_branch = 0;
    }
  } reset;
  if (!t_recording) {
    for (int i = 0; i < n; ++i) {
      t_branch = i;
      branch(i);
    }
    return;
  }
  // Every branch starts from the capture's dependency set at the call, and the set after the
  // call is the union of the branches' last nodes.
  const std::vector<cudaGraphNode_t> fork = capture_dependencies(stream, "cuda_branches");
  std::vector<cudaGraphNode_t> join;
  for (int i = 0; i < n; ++i) {
    std::vector<cudaGraphNode_t> start = fork;
    SIMBA_CUDA_CHECK(cudaStreamUpdateCaptureDependencies(stream, start.data(), nullptr, start.size(),
                                                         cudaStreamSetCaptureDependencies));
    t_branch = i;
    branch(i);
    const std::vector<cudaGraphNode_t> last = capture_dependencies(stream, "cuda_branches");
    join.insert(join.end(), last.begin(), last.end());
  }
  std::sort(join.begin(), join.end());  // a branch that queued nothing leaves the fork's nodes
  join.erase(std::unique(join.begin(), join.end()), join.end());
  SIMBA_CUDA_CHECK(cudaStreamUpdateCaptureDependencies(stream, join.data(), nullptr, join.size(),
                                                       cudaStreamSetCaptureDependencies));
}

void cuda_prefetch_l2(int device, const std::vector<std::pair<const void*, size_t>>& ranges) {
  if (!t_recording) return;
  PrefetchList list{};
  for (const auto& [p, bytes] : ranges) {
    // The whole 16-byte units inside the range (a bulk prefetch's unit); the bytes at its ends
    // are not asked for: a hint.
    const uintptr_t a = reinterpret_cast<uintptr_t>(p), first = (a + 15) / 16 * 16, end = (a + bytes) / 16 * 16;
    if (end <= first) continue;
    SIMBA_CHECK(list.n < kPrefetchRanges,
                "cuda_prefetch_l2: " << ranges.size() << " ranges, expected at most " << kPrefetchRanges);
    list.p[list.n] = reinterpret_cast<const char*>(first);
    list.bytes[list.n] = end - first;
    list.first[list.n + 1] = list.first[list.n] + int64_t((end - first + kPrefetchPiece - 1) / kPrefetchPiece);
    ++list.n;
  }
  if (list.n == 0) return;
  cudaStream_t stream = cuda_stream(device);  // checks the index, sets up the device
  DeviceGuard guard(device);
  const std::vector<cudaGraphNode_t> before = capture_dependencies(stream, "cuda_prefetch_l2");
  const int64_t pieces = list.first[list.n];
  const int64_t blocks = std::min<int64_t>((pieces + kPrefetchThreads - 1) / kPrefetchThreads, kPrefetchBlocks);
  prefetch_l2_kernel<<<unsigned(blocks), kPrefetchThreads, 0, stream>>>(list);
  SIMBA_CUDA_CHECK(cudaGetLastError());
  // The work recorded next waits on what it would have waited on without the prefetch.
  std::vector<cudaGraphNode_t> restore = before;
  SIMBA_CUDA_CHECK(cudaStreamUpdateCaptureDependencies(stream, restore.data(), nullptr, restore.size(),
                                                       cudaStreamSetCaptureDependencies));
}

void cuda_upload_staged(void* dst, int device, const void* src, size_t nbytes) {
  if (nbytes == 0) return;
  cudaStream_t stream = cuda_stream(device);  // checks the index, sets up the device
  DeviceGuard guard(device);
  Staging& s = staging(device);
  std::lock_guard<std::mutex> lock(s.mutex);
  if (!s.copied) SIMBA_CUDA_CHECK(cudaEventCreateWithFlags(&s.copied, cudaEventDisableTiming));
  SIMBA_CUDA_CHECK(cudaEventSynchronize(s.copied));  // the previous copy has read the buffer
  if (nbytes > s.capacity) {
    if (s.buffer) SIMBA_CUDA_CHECK(cudaFreeHost(s.buffer));
    s.buffer = nullptr;
    s.capacity = 0;
    SIMBA_CUDA_CHECK(cudaHostAlloc(&s.buffer, nbytes, cudaHostAllocDefault));
    s.capacity = nbytes;
  }
  std::memcpy(s.buffer, src, nbytes);
  SIMBA_CUDA_CHECK(cudaMemcpyAsync(dst, s.buffer, nbytes, cudaMemcpyHostToDevice, stream));
  SIMBA_CUDA_CHECK(cudaEventRecord(s.copied, stream));
}

CudaReadback::CudaReadback(int device, size_t capacity) : device_(device), capacity_(capacity) {
  cuda_stream(device);  // checks the index, sets up the device
  DeviceGuard guard(device);
  SIMBA_CUDA_CHECK(cudaHostAlloc(&buffer_, capacity > 0 ? capacity : 1, cudaHostAllocDefault));
  cudaEvent_t e = nullptr;
  const cudaError_t err = cudaEventCreateWithFlags(&e, cudaEventDisableTiming);
  if (err != cudaSuccess) cudaFreeHost(buffer_);
  SIMBA_CUDA_CHECK(err);
  copied_ = e;
}

CudaReadback::~CudaReadback() {  // nothing to report to from a destructor
  cudaEventSynchronize(static_cast<cudaEvent_t>(copied_));  // the last copy has written the buffer
  cudaEventDestroy(static_cast<cudaEvent_t>(copied_));
  cudaFreeHost(buffer_);
}

void CudaReadback::queue(const void* src, size_t nbytes) {
  SIMBA_CHECK(nbytes <= capacity_, "CudaReadback::queue: " << nbytes << " bytes, the buffer holds " << capacity_);
  cudaStream_t stream = cuda_stream(device_);
  DeviceGuard guard(device_);
  cudaEvent_t copied = static_cast<cudaEvent_t>(copied_);
  SIMBA_CUDA_CHECK(cudaEventSynchronize(copied));  // the previous copy has written the buffer
  SIMBA_CUDA_CHECK(cudaMemcpyAsync(buffer_, src, nbytes, cudaMemcpyDeviceToHost, stream));
  SIMBA_CUDA_CHECK(cudaEventRecord(copied, stream));
  ++g_device_to_host_copies;
}

const void* CudaReadback::wait() {
  DeviceGuard guard(device_);
  SIMBA_CUDA_CHECK(cudaEventSynchronize(static_cast<cudaEvent_t>(copied_)));
  throw_recorded_error(device_);
  return buffer_;
}

}  // namespace simba
