// ssm/simba_score.h: how a layer ranks its context tokens, and the top-k choice of the kept set.
//
// Simba's criterion (the paper [S]: "s(t) = max(Δy_T(t)), where Δy_T(t) captures the influence of
// token x_t on the final output via the SSM recurrence"). For one layer and one sequence, with
// that layer's own Δ (after softplus), A = −exp(A_log), B, C and SSM input u (post-conv, post-SiLU)
// over the n context tokens the layer processes, in their compacted order t = 0..n−1, and the
// anchor T = n − 1 (the last context token):
//   Δy_T(t)[d] = Σ_n C_T[n]·exp(A[d,n]·Σ_{k=t+1..T} Δ_k[d])·Δ_t[d]·B_t[n]·u_t[d]        (Q1)
// which is exactly what u_t contributes to the scan output y_T (ssm/selective_scan.h (1)-(3),
// unrolled: Π_{k=t+1..T} exp(Δ_k·A) = exp(A·Σ Δ_k)), i.e. y_T minus y_T recomputed with u_t = 0
// and Δ, B, C held fixed. The reduction over the Di channels is the criterion:
//   simba      s(t) = max_d Δy_T(t)[d]        (default: the paper's signed max)
//   simba-abs  s(t) = max_d |Δy_T(t)[d]|
//   simba-l2   s(t) = ||Δy_T(t)||_2
// Choices where the paper is silent (simba-paper.md §4.2, [UNK]/[I]):
//   - the state dim N is contracted with C_T (y_T = C_T·h_T), not maxed over;
//   - the signed max is the default (the only formula seen has no absolute value); abs and l2
//     are the alternatives;
//   - the D-skip term D·u_T is excluded (it touches t = T only), as are the SiLU(z) gate and
//     out_proj: the score is of the SSM output y_T before gating;
//   - "x_t" is the scan input u_t;
//   - the sums over k run over the tokens this layer processes only (after pruning, dropped
//     tokens no longer take part in the recurrence), and continuation tokens never enter: the
//     anchor is the last CONTEXT token (ssm/simba_forward.h);
//   - scores are per sequence.
// Computation: O(n·Di·N) time, one exp per (t, d, n), from the reverse cumulative sum
//   S_t[d] = Σ_{k=t+1..n−1} Δ_k[d]                                                       (Q2)
// (accumulated in double, stored in acc_t<T>); no (n, Di, N) tensor is formed, the scratch is
// S (n, Di), A transposed (N, Di) and one Di row per thread. There is no backward: the scores
// only choose an index set, and gradients never flow through a discrete choice.
// Each exponential is evaluated as a power of two, exp(A·S) = 2^((A·log2e)·S), with A·log2e
// rounded to acc_t<T> once per call (kLog2e): on the GPU 2^x is one ex2.approx instruction
// where exp is about ten, and both devices round the same two products, so their scores differ
// only by their 2^x (exp2_fast of tensor/vector_math.h on the CPU, vectorised in the `omp simd`
// channel loops; both flush results below the normal range to 0). The extra rounding of the
// product costs a relative error of about |A·S|·2^-23 in a term, which is small exactly where
// the term is not (a term with |A·S| > 20 is below 2e-9 of its coefficient). On the CPU a
// layer's scoring costs about as much as its scan. Each exponential counts as one FLOP
// (ssm/flops.h) though it costs several instructions, so in wall clock the score weighs more
// than its FLOP share (bench/RESULTS.md, ## Simba).
//
// Baseline criteria for ablations (simba-paper.md §5.4):
//   random  uniform [0, 1) numbers from Generator(seed ^ (0x9E3779B97F4A7C15·(ℓ + 1))) for layer ℓ,
//           drawn for t = 0..n−1 in order and shared by every sequence of a batch (so a batch
//           gives the same kept sets as its sequences run one by one).
//   stride  uniform positions: of the n tokens, keep t_j = (n − 1) − floor(j·n/k), j = 0..k−1
//           (evenly spaced counting back from the anchor, which is t_0); the score is 1 for those
//           and 0 for the rest, so top-k picks exactly them.
//   norm    ||h_t||_2 of the layer's INPUT residual stream (before its RMSNorm).
//   clip    Σ_d max(0, o_t[d]) with o = the layer's mixer output, UTR's 'clip' metric
//           (wuyushuwys/ToR_SSM mamba_wrap.py: hidden_states.clamp(min=0).sum(-1) on what the
//           mamba_ssm Block returns as hidden_states, i.e. mixer(norm(residual)) without the
//           residual). UTR maps a sum of exactly 0 to −inf; 0 is already the lowest possible
//           value, so the ranking is the same and we keep 0.
//   delta   ||Δ_t||_2 over the Di channels of the layer's step sizes (after softplus): the
//           Δ-magnitude criterion of DeciMamba (Ben-Kish et al. 2024), which keeps the tokens the
//           SSM takes the largest steps on, i.e. writes most strongly into its state.
//
// Selection (select_kept): the anchor plus the k − 1 highest-scoring other tokens; ties go to
// the earlier position; a NaN score ranks as −∞; the result is in ascending order
// (original order, which the recurrence of the next layer needs).
//
// Types. The kernels below take inputs of T = float, double or bfloat16 (the model's dtype) and
// compute in acc_t<T>: S, A, the row Δy_T(t) and the scores are float for bfloat16 inputs, and
// the scores are stored in acc_t<T> (float32). Rounding scores to bfloat16's 8 significant bits
// would turn near-equal scores into ties, so the kept sets would hinge on that rounding rather
// than on the criterion; in float32 they rank tokens as finely as a float32 model's scores do.
#pragma once

#include <cstdint>
#include <vector>

#include "ssm/mamba_mixer.h"
#include "ssm/selective_scan.h"
#include "ssm/simba.h"

namespace simba {

// log2(e): A·log2e is rounded to acc_t<T> from this one constant on both devices.
constexpr double kLog2e = 1.4426950408889634074;

// dy:      (n, Di) rows of acc_t<T>, written: Δy_T(t)[d] of (Q1) for every t and d.
// u, delta:(n, Di) rows of one sequence (delta > 0, softplus applied).
// A:       (Di, N) contiguous, A = −exp(A_log).
// Bm, Cm:  (n, N) rows. The anchor T is row n − 1.
// Rows of a SeqView are `ld` elements apart (ssm/selective_scan.h). OpenMP over t, each row
// computed by one thread in a fixed order: bit-identical for any thread count.
template <class T>
void simba_contribution_forward(SeqView<acc_t<T>> dy, SeqView<const T> u, SeqView<const T> delta, const T* A,
                                SeqView<const T> Bm, SeqView<const T> Cm, int64_t n, int64_t Di, int64_t N);

// scores: (n) contiguous acc_t<T>, written: s(t) for criterion simba, simba-abs or simba-l2 (anything
// else is an error). Inputs as for simba_contribution_forward. l2 accumulates Σ_d v² in double.
// A NaN anywhere in Δy_T(t) makes s(t) NaN. Deterministic like the above.
template <class T>
void simba_score_forward(acc_t<T>* scores, SeqView<const T> u, SeqView<const T> delta, const T* A, SeqView<const T> Bm,
                         SeqView<const T> Cm, int64_t n, int64_t Di, int64_t N, SimbaCriterion criterion);

// ---- The batched kernels of the pruned forward (ssm/simba_forward.h), each with a CPU and a
// CUDA variant of identical signature: *_cpu in ssm/simba_score.cpp, *_cuda in
// ssm/simba_score.cu (built with the CUDA backend only; every pointer is device memory on the
// current device and the call only queues work on its stream). T = float, double or bfloat16.

// scores (B, n) contiguous acc_t<T> <- simba_score_forward of the first n rows of every sequence of a
// layer: u, delta (B, L, Di) rows and Bm, Cm (B, L, N) rows in the layout of
// ssm/selective_scan.h (row (b, t) at p[(b·L + t)·ld]), A (Di, N); 1 <= n <= L.
// CUDA: S of (Q2) is never stored: the sums of Δ over chunks of 16 rows and their suffix sums
// (double, a thread per (b, chunk, d) and per (b, d)) give each chunk S at its last row, and
// one block per (b, chunk) carries S down the chunk's rows in a register per channel while it
// forms the rows Δy_T(t) of (Q1) (the N terms in order k = 0..N−1, then ·Δ_t·u_t, as on the
// CPU) and reduces them over the channels in a fixed order (l2 in double). The CPU adds one
// chain for S; in double the two orders agree far below acc_t<T>'s rounding. The powers of two
// are the device's ex2.approx, not the CPU's exp2_fast, so scores agree to a few ulp, not bit
// for bit.
template <class T>
void simba_scores_batch_cpu(acc_t<T>* scores, SeqView<const T> u, SeqView<const T> delta, const T* A,
                            SeqView<const T> Bm, SeqView<const T> Cm, int64_t B, int64_t L, int64_t n, int64_t Di,
                            int64_t N, SimbaCriterion criterion);
template <class T>
void simba_scores_batch_cuda(acc_t<T>* scores, SeqView<const T> u, SeqView<const T> delta, const T* A,
                             SeqView<const T> Bm, SeqView<const T> Cm, int64_t B, int64_t L, int64_t n, int64_t Di,
                             int64_t N, SimbaCriterion criterion);

// next (B, k) <- for every sequence b, kept[b, i] for the i that select_kept chooses from the
// scores row scores[b, :] (the anchor i = n − 1, plus the k − 1 others ranked first by score
// descending, NaN as −∞, ties to the smaller i), in ascending i. scores (B, n), kept (B, n)
// and next (B, k) contiguous; 1 <= k <= n. T is the scores' dtype (a bfloat16 model's
// norm, clip and random scores are bfloat16); both variants compare the exact widened values.
// CUDA: one block per sequence finds the (k − 1)-th largest key among the n − 1 candidates by
// radix selection, then keeps, in ascending i, the candidates above it, the first of those equal
// to it (ties to the smaller i) and the anchor. It compares the exact keys, so the kept sets are
// the CPU's whenever the scores are.
template <class T>
void simba_select_cpu(int64_t* next, const T* scores, const int64_t* kept, int64_t B, int64_t n, int64_t k);
template <class T>
void simba_select_cuda(int64_t* next, const T* scores, const int64_t* kept, int64_t B, int64_t n, int64_t k);

// flat (B·(n + m)) <- the rows layer ℓ processes as indices into the stream flattened to
// (B·(c + m), D): flat[b·(n + m) + j] = b·(c + m) + kept[b, j] for j < n (the kept context
// tokens) and b·(c + m) + c + (j − n) for n <= j < n + m (the continuation). kept (B, n).
// CUDA: a thread per entry.
void simba_rows_cpu(int64_t* flat, const int64_t* kept, int64_t B, int64_t n, int64_t c, int64_t m);
void simba_rows_cuda(int64_t* flat, const int64_t* kept, int64_t B, int64_t n, int64_t c, int64_t m);

// The scores of the first n rows of every sequence of a layer, (B, n) in acc_dtype of the
// trace's dtype (float32 for bfloat16), on the trace's device.
// trace: the layer's MixerTrace (u, delta (B, L, Di); A (Di, N); Bm, Cm (B, L, N)), L >= n.
Tensor simba_scores(const MixerTrace& trace, int64_t n, SimbaCriterion criterion);
// hidden (B, L, D), the layer's input residual stream -> (B, n): ||hidden[b, t]||_2, t < n.
Tensor norm_scores(const Tensor& hidden, int64_t n);
// mixer_out (B, L, D) -> (B, n): Σ_d max(0, mixer_out[b, t, d]), t < n.
Tensor clip_scores(const Tensor& mixer_out, int64_t n);
// trace.delta (B, L, Di) -> (B, n): ||trace.delta[b, t]||_2, t < n.
Tensor delta_scores(const MixerTrace& trace, int64_t n);
// (B, n): the random criterion's numbers for layer `layer` (the same row for every b).
Tensor random_scores(int64_t B, int64_t n, uint64_t seed, int64_t layer, DType dtype);
// (B, n): 1 at the k stride positions, 0 elsewhere (1 <= k <= n).
Tensor stride_scores(int64_t B, int64_t n, int64_t k, DType dtype);

// The kept set: k (1 <= k <= n) indices into 0..n−1, ascending, always holding n − 1.
std::vector<int64_t> select_kept(const std::vector<double>& scores, int64_t k);

}  // namespace simba
