// train/communicator.cpp: the mean over ranks (see train/communicator.h).
#include "train/communicator.h"

#include "tensor/elementwise.h"
#include "tensor/error.h"

namespace simba {

void all_reduce_mean(Communicator& comm, const Tensor& t) {
  SIMBA_CHECK(t.is_contiguous(), "all_reduce_mean: the tensor must be contiguous (it is reduced as a flat buffer)");
  if (comm.world_size() == 1) return;
  comm.all_reduce_sum(t);
  Tensor out = t;  // a handle: writes through to the caller's buffer
  out.copy_(affine(t, 1.0 / static_cast<double>(comm.world_size()), 0.0));
}

}  // namespace simba
