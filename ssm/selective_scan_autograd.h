// ssm/selective_scan_autograd.h: the selective scan as one differentiable op.
//
// Wires the fused kernels of ssm/selective_scan.h into the autograd graph:
// one node whose backward calls selective_scan_backward_cpu or _cuda, on the
// operands' device (states recomputed from the forward's checkpoints, every
// 16th state; nothing of size (B, L, Di, N) saved).
#pragma once

#include "autograd/variable.h"

namespace simba {

// t (B, L, W) as the kernels' "(B, L, W) rows" layout (ssm/selective_scan.h): t itself when
// its last dim is dense and its batch stride is L rows (e.g. a column view of a projection's
// output), else a contiguous copy.
Tensor as_scan_rows(const Tensor& t);

// out (B, L, Di) = (scan(u, Δ, A, Bm, Cm) + D·u) · SiLU(z)   (ssm/selective_scan.h, eqs. 1-4)
// u, delta, z: (B, L, Di); A: (Di, N); Bm, Cm: (B, L, N); D: (Di).
// Sequence operands may be column views (stride 1 in the last dim, rows
// evenly spaced); anything else is copied to contiguous first. D and z may be
// undefined Variables (no skip / no gate). Differentiable in every input.
Variable selective_scan(const Variable& u, const Variable& delta, const Variable& A, const Variable& Bm,
                        const Variable& Cm, const Variable& D, const Variable& z);

}  // namespace simba
