// nn/cross_entropy.h: softmax cross-entropy of logits against integer targets.
//
//   loss_r = lse_r − logits[r, target_r],   lse_r = m_r + log Σ_v exp(logits[r,v] − m_r),  m_r = max_v logits[r,v]
//
// Subtracting the row max first keeps exp() ≤ 1, so logits of 1000 or −1000
// give exact finite losses. Rows whose target equals ignore_index (padding)
// contribute nothing. The training loss is the mean over the other rows; the
// per-row losses serve bits-per-byte evaluation.
#pragma once

#include "autograd/variable.h"

namespace simba {

// Kernels, in three variants with identical signatures:
//   *_ref:  plain sequential loops in double, the specification the others are tested against.
//           T = float or double.
//   *_cpu:  the fast CPU path (rows in parallel with OpenMP). nn/cross_entropy.cpp.
//   *_cuda: the CUDA kernels (one block per row for the forward, elementwise backward).
//           nn/cross_entropy.cu, built with the CUDA backend only; every pointer is CUDA device
//           memory on the current device, and the call returns once the work is queued on that
//           device's stream. Targets are read on the device only: a target
//           outside [0, V) that is not `ignore` makes that row's loss, lse and gradient NaN
//           (never an out-of-bounds read), and the forward records it in the device's error
//           record (tensor/cuda_check.cuh), so the host raises the error at its next sync
//           without reading a single target.
// The forward and backward of *_cpu and *_cuda take logits of T = float, double or bfloat16.
// The per-row losses, lse and dlosses are acc_t<T> (float32 for bfloat16 logits): they are
// computed in float anyway, they are (rows) vectors beside the (rows, V) logits, so 16-bit
// storage would save nothing, and rounding them to bfloat16 (relative error up to 2^-9) would
// blur the loss and bits-per-byte differences that evaluation reports. The max, the Σ exp (in
// double) and the losses never leave acc_t<T>; dlogits has the logits' dtype, each element
// rounded once. The mean runs over the losses, so it is float32 or float64 only.
// All are deterministic. rows may be 0 (nothing to do).

// losses (rows), lse (rows) <- logits (rows, V) contiguous, targets (rows) int64.
// Ignored rows get loss 0 and lse 0. Σ exp is accumulated in double. A target that is
// neither `ignore` nor in [0, V) is an error naming it, its row and V: thrown before any
// row is computed by the CPU variant (the reference must be given valid targets), recorded
// on the device by the CUDA variant (see above).
template <class T>
void cross_entropy_forward_ref(acc_t<T>* losses, acc_t<T>* lse, const T* logits, const int64_t* targets,
                               int64_t rows, int64_t V, int64_t ignore);
template <class T>
void cross_entropy_forward_cpu(acc_t<T>* losses, acc_t<T>* lse, const T* logits, const int64_t* targets,
                               int64_t rows, int64_t V, int64_t ignore);
template <class T>
void cross_entropy_forward_cuda(acc_t<T>* losses, acc_t<T>* lse, const T* logits, const int64_t* targets,
                                int64_t rows, int64_t V, int64_t ignore);

// dlogits (rows, V) <- dlosses (rows), logits (rows, V), lse (rows), targets (rows):
//   dlogits[r, v] = (softmax(logits_r)_v − [v == target_r]) · dlosses[r]
// (softmax_v = exp(logits[r,v] − lse_r)); ignored rows get zeros. dlogits may be logits (in
// place: each element is read before it is written, and by nothing after), which is how the
// fused classifier (nn/linear_cross_entropy.h) keeps one (rows, V) buffer a chunk, not two.
template <class T>
void cross_entropy_backward_ref(T* dlogits, const acc_t<T>* dlosses, const T* logits, const acc_t<T>* lse,
                                const int64_t* targets, int64_t rows, int64_t V, int64_t ignore);
template <class T>
void cross_entropy_backward_cpu(T* dlogits, const acc_t<T>* dlosses, const T* logits, const acc_t<T>* lse,
                                const int64_t* targets, int64_t rows, int64_t V, int64_t ignore);
template <class T>
void cross_entropy_backward_cuda(T* dlogits, const acc_t<T>* dlosses, const T* logits, const acc_t<T>* lse,
                                 const int64_t* targets, int64_t rows, int64_t V, int64_t ignore);

// The mean of the losses over the counted rows (target != ignore), and its factor:
//   inv_count = 1 / count (0 when count = 0),   loss = (Σ_r losses[r]) · inv_count
// where ignored rows hold loss 0 (the forward's rule). loss and inv_count are one value each,
// in the memory of the variant's device, so the backward scales by inv_count without the host
// ever reading the count. The sum runs in double in a fixed order (rows in order on the CPU; a
// fixed-order block reduction on CUDA).
//   *_cpu: nn/cross_entropy.cpp.  *_cuda: nn/cross_entropy.cu (one block).  T = float or double
//   (the dtype of the losses).
template <class T>
void cross_entropy_mean_cpu(T* loss, T* inv_count, const T* losses, const int64_t* targets, int64_t rows,
                            int64_t ignore);
template <class T>
void cross_entropy_mean_cuda(T* loss, T* inv_count, const T* losses, const int64_t* targets, int64_t rows,
                             int64_t ignore);

// logits (..., V) float32, float64 or bfloat16, targets (...) int64 -> 0-dim mean of loss_r
// over rows whose target != ignore_index: float32 for bfloat16 logits (acc_dtype), the logits'
// dtype otherwise. The gradient is (softmax − onehot)·g / count on those rows, in the logits'
// dtype. If every row is ignored the mean has no rows to average: we
// return 0 with a zero gradient (PyTorch returns NaN), so a fully padded batch
// cannot poison the parameters. A target outside [0, V) that is not
// ignore_index is an error naming the target, its row and V (on CUDA raised at the next
// synchronisation, e.g. when the loss is read). logits and targets share a device.
Variable cross_entropy(const Variable& logits, const Tensor& targets, int64_t ignore_index = -100);

// Per-row losses, same shape as targets, no autograd; ignored rows give 0. float32 for
// bfloat16 logits, as the mean.
Tensor cross_entropy_rows(const Tensor& logits, const Tensor& targets, int64_t ignore_index = -100);

}  // namespace simba
