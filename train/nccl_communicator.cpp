// train/nccl_communicator.cpp: the NCCL communicator of a build without NCCL (no CUDA backend,
// or no NCCL beside the toolkit): its functions exist and say that NCCL was not compiled in. A
// build with NCCL compiles train/nccl_communicator.cu instead (CMakeLists.txt defines
// SIMBA_HAS_NCCL then), and this file is empty.
#include "train/nccl_communicator.h"

#ifndef SIMBA_HAS_NCCL

#include "tensor/error.h"

namespace simba {

namespace {

[[noreturn]] void fail_no_nccl(const char* fn) {
  SIMBA_FAIL_HINT(fn << ": NCCL not compiled in (simba was built without the CUDA backend, or without NCCL)",
                  "rebuild simba with the CUDA toolkit and NCCL installed (cmake -DSIMBA_CUDA=ON)");
}

}  // namespace

struct NcclCommunicator::Impl {};

bool nccl_compiled_in() { return false; }
std::string nccl_unique_id_hex() { fail_no_nccl("nccl_unique_id_hex"); }
NcclCommunicator::NcclCommunicator(int, int, const std::string&, int) { fail_no_nccl("NcclCommunicator"); }
NcclCommunicator::~NcclCommunicator() = default;
void NcclCommunicator::all_reduce_sum(const Tensor&) { fail_no_nccl("NcclCommunicator::all_reduce_sum"); }
void NcclCommunicator::broadcast(const Tensor&, int) { fail_no_nccl("NcclCommunicator::broadcast"); }
void NcclCommunicator::barrier() { fail_no_nccl("NcclCommunicator::barrier"); }

}  // namespace simba

#endif  // SIMBA_HAS_NCCL
