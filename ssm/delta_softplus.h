// ssm/delta_softplus.h: the mixer's step sizes, Δ = softplus(dt + b), in one pass.
//
// dt_proj's product dt (M, Di) without its bias (M = B·L rows), the bias b (Di):
//   Δ[m, d]  = softplus(dt[m, d] + b[d])                                           (1)
// and the gradients, from the output (as the softplus op forms them: the node keeps Δ, which
// the scan keeps anyway, and not dt; docs/training-memory.md):
//   ddt[m, d] = dΔ[m, d]·σ(dt[m, d] + b[d]) = dΔ[m, d]·(1 − e^(−Δ[m, d]))          (2)
//   db[d]     = Σ_m ddt[m, d]                                                        (3)
// Why a pass of its own: as a Linear with a bias followed by the softplus op, the bias was first
// copied into every row of dt_proj's output, which the GEMM read back to add its product to
// (beta = 1), and softplus then read and wrote the whole (M, Di) tensor again; (1) reads dt and
// writes Δ once. (Forming Δ inside the scan instead made the scan's kernels slower:
// bench/RESULTS.md.)
//
// Forward kernels, in three variants with identical signatures (the backward is the softplus
// op's backward from its output and a column sum, tensor/elementwise.h and tensor/reduce.h):
//   *_ref:  plain loops in double, the specification.
//   *_cpu:  rows in parallel (OpenMP), the channel loop vectorised (ssm/delta_softplus.cpp).
//   *_cuda: a thread a channel for a run of rows (ssm/delta_softplus.cu).
// T = float, double or bfloat16, computed in acc_t<T> (softplus as the softplus op computes it,
// tensor/elementwise_math.h) and rounded once: in float32 and float64 the same bits as adding
// the bias in T and then the softplus op; a bfloat16 sum is no longer rounded before softplus.
// dt, delta (M, Di) contiguous, not overlapping; bias (Di). Deterministic.
// Dimension letters as in ssm/mamba_mixer.h.
#pragma once

#include <cstdint>

#include "autograd/variable.h"
#include "tensor/dtype.h"
#include "tensor/error.h"

namespace simba {

template <class T>
void delta_softplus_forward_ref(T* delta, const T* dt, const T* bias, int64_t M, int64_t Di);
template <class T>
void delta_softplus_forward_cpu(T* delta, const T* dt, const T* bias, int64_t M, int64_t Di);
template <class T>
void delta_softplus_forward_cuda(T* delta, const T* dt, const T* bias, int64_t M, int64_t Di);

// The checks every variant makes before touching memory.
inline void check_delta_softplus(const char* op, const void* delta, const void* dt, const void* bias, int64_t M,
                                 int64_t Di) {
  SIMBA_CHECK(M >= 0 && Di >= 1, op << ": sizes must be M >= 0 and Di >= 1, got M=" << M << " Di=" << Di);
  SIMBA_CHECK(bias != nullptr, op << ": bias is null");
  SIMBA_CHECK(M == 0 || (delta != nullptr && dt != nullptr), op << ": delta or dt is null");
}

// (2) and (3): ddt (M, Di) and db (Di) from dΔ and Δ (M, Di) (any layout; the results are new
// tensors).
void delta_softplus_backward(Tensor& ddt, Tensor& db, const Tensor& ddelta, const Tensor& delta);

// dt (..., Di), b (Di) -> Δ (..., Di), (1); differentiable in dt and b.
Variable delta_softplus(const Variable& dt, const Variable& b);

}  // namespace simba
