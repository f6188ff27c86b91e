// tensor/cuda_device.h: the CUDA device layer as the C++ side sees it: which devices exist,
// host<->device copies, host waits, and device memory statistics.
//
// This header is CUDA-free, so any C++ file may include it. tensor/cuda_device.cu implements
// it when simba is built with the CUDA backend (cmake -DSIMBA_CUDA=ON); otherwise
// tensor/cuda_device.cpp does, and every call that needs a device throws "CUDA not compiled in".
//
// All of simba's work on a device is ordered on one stream per device (tensor/cuda_check.cuh).
// Every host<->device copy and every host wait goes through cuda_copy / cuda_synchronize, which
// count the device-to-host copies and the synchronisations: the training step's sync budget
// (only the loss and the gradient norm are read back) is tested against these counts.
// Device memory comes from the caching allocator registered for DeviceType::CUDA in the
// allocator registry (tensor/storage.h), so Storage(nbytes, {DeviceType::CUDA, i}) allocates
// on device i, ordered on its stream.
#pragma once

#include <cstddef>
#include <cstdint>
#include <functional>
#include <string>
#include <utility>
#include <vector>

#include "tensor/storage.h"

namespace simba {

// Whether this build has the CUDA backend.
bool cuda_compiled_in();

// The number of usable CUDA devices: 0 without the backend, without a driver or without a GPU.
int cuda_device_count();

// Why CUDA cannot be used here ("CUDA not compiled in", the CUDA runtime's error, ...), or ""
// when at least one device is usable.
std::string cuda_unavailable_reason();

// Copies nbytes between host and device memory (or device to device). Host-to-device and
// device-to-device copies are ordered on the device's stream and return without waiting for
// the device (the host source may be reused at once); a device-to-host copy waits until the
// bytes are in host memory and counts as one device-to-host copy.
void cuda_copy(void* dst, Device dst_device, const void* src, Device src_device, size_t nbytes);

// Waits until all work queued on the device's stream has finished; reports any error a kernel
// raised, including a bad index a kernel recorded (see CudaErrorRecord in tensor/cuda_check.cuh;
// a device-to-host cuda_copy reports those too). Counts one synchronisation.
void cuda_synchronize(int device);

// Running totals since the process started (diff two snapshots to count a region).
struct CudaSyncCounts {
  int64_t device_to_host_copies = 0;
  int64_t synchronizations = 0;
};
CudaSyncCounts cuda_sync_counts();

// Bytes the caching allocator has handed out on a device and not taken back (current), and the
// most it ever had out at once (peak, since the start or the last cuda_reset_peak_bytes).
struct CudaMemoryStats {
  size_t current_bytes = 0;
  size_t peak_bytes = 0;
};
CudaMemoryStats cuda_memory_stats(int device);
void cuda_reset_peak_bytes(int device);

// The device's name as the driver reports it ("NVIDIA H200"), for the programs' output.
std::string cuda_device_name(int device);

// Copies nbytes of host memory src to device memory dst on `device` through a page-locked
// (pinned) staging buffer kept for that device: the way data that changes every step, such as a
// training batch, goes up. From pageable memory the CUDA runtime first copies into a driver
// buffer while the host waits; from pinned memory the copy is one DMA ordered on the device's
// stream, and the call returns without waiting for it. The staging buffer is refilled only once
// its previous copy has run: the call waits for an event recorded right after that copy, not for
// the stream, so work queued behind the copy is not waited for. That wait reads nothing back and
// is not counted by cuda_sync_counts.
void cuda_upload_staged(void* dst, int device, const void* src, size_t nbytes);

// A device-to-host copy the host collects later: queue() puts the copy of nbytes (at most the
// capacity) from device memory on the device's stream and returns at once, where cuda_copy would
// wait for everything queued before it; wait() blocks until that copy has run (an event recorded
// after it, not the stream, so work queued later keeps the device busy) and returns the bytes.
// For a value the host must check but not at once: the trainer reads each step's gradient norm
// one step later (train/trainer.h). The bytes land in a page-locked buffer the object owns; a
// queue() first waits for its previous copy. queue() counts one device-to-host copy; wait() is
// not a synchronisation of cuda_sync_counts, but reports a kernel's recorded error as a read
// does.
class CudaReadback {
 public:
  CudaReadback(int device, size_t capacity);
  ~CudaReadback();
  CudaReadback(const CudaReadback&) = delete;
  CudaReadback& operator=(const CudaReadback&) = delete;
  void queue(const void* src, size_t nbytes);
  const void* wait();

 private:
  int device_ = 0;
  size_t capacity_ = 0;
  void* buffer_ = nullptr;  // page-locked host memory
  void* copied_ = nullptr;  // cudaEvent_t recorded after the last queued copy
};

// Work on a device's stream recorded once and replayed with one launch (a CUDA graph), for a
// sequence of many small kernels whose launches would cost more than the kernels do (the
// recurrent decode step). The constructor runs `record` under stream capture: nothing executes;
// every kernel, copy, allocation and free it queues on the device's stream becomes a node of
// the graph. So `record` must not wait for the device or read anything back (capture forbids
// it), and every device tensor it allocates must be freed before it returns (that memory
// belongs to the graph); what persists from one replay to the next lives in tensors made
// before recording, whose addresses the graph keeps. replay() queues one execution of the
// whole graph on the device's stream and returns without waiting.
class CudaGraph {
 public:
  CudaGraph(int device, const std::function<void()>& record);
  ~CudaGraph();
  CudaGraph(const CudaGraph&) = delete;
  CudaGraph& operator=(const CudaGraph&) = delete;
  void replay() const;
  // The recorded graph's nodes that wait on nothing, and those nothing waits on: one each for a
  // plain sequence of work; cuda_branches at the start gives a root a branch.
  size_t root_count() const;
  size_t leaf_count() const;

 private:
  int device_ = 0;
  void* graph_ = nullptr;  // cudaGraph_t
  void* exec_ = nullptr;   // cudaGraphExec_t
};

// Independent pieces of work on one device, such as the parts of a batch that a recurrent step
// treats row by row. Calls branch(0), ..., branch(n − 1) in order, 1 <= n <= kMaxCudaBranches.
// Outside a CudaGraph's recording they simply run one after another on the device's stream.
// While a graph records, the work branch(i) queues depends only on what was recorded before
// this call, not on the other branches, and the work recorded after the call waits for every
// branch: the graph may run the branches at the same time, so that the latency of one branch's
// small kernels hides behind another's instead of adding to it. The branches must not touch
// each other's tensors, and each must free what it allocates, like `record`. Each branch's
// cuBLAS calls go through a cuBLAS handle and workspace of their own (tensor/matmul.cu), in both
// modes, so that branches running at once never share cuBLAS's scratch memory; a handle is made
// at its branch's first GEMM, which must therefore come outside recording (run the work once
// before recording it, as DecodeStep does). Branches do not nest.
constexpr int kMaxCudaBranches = 8;
void cuda_branches(int device, int n, const std::function<void(int)>& branch);
// The branch the calling thread is queuing: i inside branch(i), 0 outside cuda_branches.
int cuda_branch();

// A hint that work recorded after the call reads these ranges of device memory on `device`
// (pointer, bytes): while a CudaGraph records, adds a node that asks the device's L2 cache for
// them, which waits on what was recorded before the call and which nothing recorded after the
// call waits on (a replay still ends after it), so it runs beside that work. A small kernel a
// few microseconds from DRAM spends most of its time waiting for its operands; fetched ahead,
// they come from L2 instead. Outside a recording the call does nothing: the host queues eager
// work one kernel at a time, and a side stream would need its own synchronisation. Only whole
// 16-byte units are asked for; at most 64 ranges that hold one.
void cuda_prefetch_l2(int device, const std::vector<std::pair<const void*, size_t>>& ranges);

}  // namespace simba
