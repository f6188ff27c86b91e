// train/nccl_communicator.cu: the NCCL communicator (see train/nccl_communicator.h).
#include "train/nccl_communicator.h"

#include <nccl.h>

#include <cstdio>
#include <cstring>

#include "tensor/cuda_check.cuh"
#include "tensor/cuda_device.h"
#include "tensor/error.h"

// Throws simba::Error naming the failed NCCL call and NCCL's message.
#define SIMBA_NCCL_CHECK(call)                                                                        \
  do {                                                                                                \
    const ncclResult_t simba_nccl_result_ = (call);                                                   \
    SIMBA_CHECK(simba_nccl_result_ == ncclSuccess, #call " failed: " << ncclGetErrorString(simba_nccl_result_)); \
  } while (0)

namespace simba {

namespace {

ncclDataType_t nccl_type(DType dtype, const char* op) {
  switch (dtype) {
    case DType::F32: return ncclFloat32;
    case DType::BF16: return ncclBfloat16;
    case DType::F64: return ncclFloat64;
    case DType::I64: return ncclInt64;
    default: SIMBA_FAIL(op << ": NCCL collectives take float32, bfloat16, float64 or int64, got " << dtype_name(dtype));
  }
}

}  // namespace

struct NcclCommunicator::Impl {
  ncclComm_t comm = nullptr;
  int device = 0;

  // The tensor's buffer, after checking that a collective may use it in place.
  void* buffer(const Tensor& t, const char* op) const {
    SIMBA_CHECK((t.device() == Device{DeviceType::CUDA, device}) && t.is_contiguous(),
                op << ": the NCCL communicator of cuda:" << device << " takes contiguous tensors there, got one on "
                   << t.device().str());
    return t.raw_data();
  }
};

bool nccl_compiled_in() { return true; }

std::string nccl_unique_id_hex() {
  ncclUniqueId id;
  SIMBA_NCCL_CHECK(ncclGetUniqueId(&id));
  std::string hex;
  char digits[3];
  for (size_t i = 0; i < sizeof id.internal; ++i) {
    std::snprintf(digits, sizeof digits, "%02x", static_cast<unsigned char>(id.internal[i]));
    hex += digits;
  }
  return hex;
}

NcclCommunicator::NcclCommunicator(int rank, int world_size, const std::string& unique_id_hex, int device)
    : impl_(std::make_unique<Impl>()), rank_(rank), world_size_(world_size) {
  SIMBA_CHECK(world_size >= 1 && rank >= 0 && rank < world_size,
              "NcclCommunicator: rank " << rank << " is outside [0, world size " << world_size << ")");
  ncclUniqueId id;
  SIMBA_CHECK(unique_id_hex.size() == 2 * sizeof id.internal,
              "NcclCommunicator: the unique id must be " << 2 * sizeof id.internal << " hex digits, got "
                                                         << unique_id_hex.size() << " characters");
  for (size_t i = 0; i < sizeof id.internal; ++i) {
    unsigned byte = 0;
    SIMBA_CHECK(std::sscanf(unique_id_hex.c_str() + 2 * i, "%2x", &byte) == 1,
                "NcclCommunicator: the unique id holds a non-hex digit at position " << 2 * i);
    id.internal[i] = static_cast<char>(byte);
  }
  impl_->device = device;
  SIMBA_CUDA_CHECK(cudaSetDevice(device));
  SIMBA_NCCL_CHECK(ncclCommInitRank(&impl_->comm, world_size, id, rank));
}

NcclCommunicator::~NcclCommunicator() {
  if (impl_ && impl_->comm) ncclCommDestroy(impl_->comm);  // a destructor reports nothing
}

void NcclCommunicator::all_reduce_sum(const Tensor& t) {
  void* data = impl_->buffer(t, "all_reduce_sum");
  SIMBA_NCCL_CHECK(ncclAllReduce(data, data, static_cast<size_t>(t.numel()), nccl_type(t.dtype(), "all_reduce_sum"),
                                 ncclSum, impl_->comm, cuda_stream(impl_->device)));
}

void NcclCommunicator::broadcast(const Tensor& t, int root) {
  void* data = impl_->buffer(t, "broadcast");
  SIMBA_NCCL_CHECK(ncclBroadcast(data, data, static_cast<size_t>(t.numel()), nccl_type(t.dtype(), "broadcast"), root,
                                 impl_->comm, cuda_stream(impl_->device)));
}

void NcclCommunicator::barrier() {
  // One element summed over every rank, waited for: no rank returns before all have queued it.
  const Tensor token = Tensor::zeros({1}, DType::F32, Device{DeviceType::CUDA, impl_->device});
  all_reduce_sum(token);
  cuda_synchronize(impl_->device);
}

}  // namespace simba
