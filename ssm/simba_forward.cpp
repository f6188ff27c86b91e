// ssm/simba_forward.cpp: the pruned forward pass and the continuation loss of ssm/simba_forward.h.
#include "ssm/simba_forward.h"

#include "autograd/ops.h"
#include "nn/cross_entropy.h"
#include "nn/rmsnorm.h"
#include "ssm/simba_schedule.h"
#include "ssm/simba_score.h"
#include "tensor/dispatch.h"
#include "tensor/index.h"

namespace simba {

namespace {

using KeptSets = std::vector<std::vector<int64_t>>;  // per sequence: original positions, ascending

// ids (B, L) int64, 1 <= context <= L.
void check_ids(const char* op, const Tensor& ids, int64_t context) {
  SIMBA_CHECK(ids.defined() && ids.dtype() == DType::I64 && ids.dim() == 2 && ids.size(0) >= 1 && ids.size(1) >= 1,
              op << ": expected int64 token ids (B, L) with B, L >= 1, got "
                 << (ids.defined() ? std::string(dtype_name(ids.dtype())) + " " + shape_str(ids.shape())
                                   : std::string("undefined")));
  const int64_t L = ids.size(1);
  SIMBA_CHECK_HINT(context >= 1, op << ": context " << context
                                    << " must be >= 1: the anchor is the last context token, position context − 1",
                   "the sequence is context + continuation; give the context length");
  SIMBA_CHECK_HINT(context <= L, op << ": context " << context << " is longer than the sequence (" << L << " tokens)",
                   "the anchor (position context − 1) must lie inside the sequence");
}

KeptSets kept_rows(const Tensor& t) {
  const int64_t B = t.size(0), n = t.size(1);
  const std::vector<int64_t> v = t.to_ints();
  KeptSets rows(B);
  for (int64_t b = 0; b < B; ++b) rows[b].assign(v.begin() + b * n, v.begin() + (b + 1) * n);
  return rows;
}

// The fixed kept sets of simba_forward_kept, checked as its header states; returns n_ℓ.
std::vector<int64_t> check_fixed(const std::vector<Tensor>& kept, int64_t layers, int64_t B, int64_t c) {
  const char* op = "simba_forward_kept";
  SIMBA_CHECK(static_cast<int64_t>(kept.size()) == layers,
              op << ": " << kept.size() << " kept sets for a model of " << layers << " layers");
  std::vector<int64_t> counts;
  KeptSets prev;
  for (int64_t l = 0; l < layers; ++l) {
    const Tensor& t = kept[l];
    SIMBA_CHECK(t.defined() && t.dtype() == DType::I64 && t.dim() == 2 && t.size(0) == B && t.size(1) >= 1,
                op << ": kept[" << l << "] must be int64 (B=" << B << ", n >= 1), got "
                   << (t.defined() ? std::string(dtype_name(t.dtype())) + " " + shape_str(t.shape()) : "undefined"));
    const int64_t n = t.size(1);
    SIMBA_CHECK(l > 0 || n == c, op << ": kept[0] has " << n << " tokens; layer 0 processes the whole context of " << c);
    const KeptSets rows = kept_rows(t);
    for (int64_t b = 0; b < B; ++b) {
      const auto& r = rows[b];
      for (int64_t i = 0; i < n; ++i)
        SIMBA_CHECK(r[i] >= 0 && r[i] < c && (i == 0 || r[i] > r[i - 1]),
                    op << ": kept[" << l << "] row " << b << " must be strictly ascending positions in [0, " << c
                       << "), entry " << i << " is " << r[i]);
      SIMBA_CHECK(r.back() == c - 1, op << ": kept[" << l << "] row " << b << " lacks the anchor, position " << c - 1);
      if (l > 0) {
        // Both rows ascend: r ⊆ prev[b] by one merge walk.
        size_t j = 0;
        for (int64_t p : r) {
          while (j < prev[b].size() && prev[b][j] < p) ++j;
          SIMBA_CHECK(j < prev[b].size() && prev[b][j] == p,
                      op << ": kept[" << l << "] row " << b << " holds position " << p
                         << ", which layer " << l - 1 << " had already pruned");
        }
      }
    }
    if (l > 0) SIMBA_CHECK(n <= counts.back(), op << ": kept[" << l << "] has more tokens than kept[" << l - 1 << "]");
    counts.push_back(n);
    prev = rows;
  }
  return counts;
}

// The criterion's (B, n) scores of a layer's n context rows; k = the next layer's count.
Tensor layer_scores(const SimbaOptions& opt, const MixerTrace& trace, const Tensor& input, const Tensor& mixer_out,
                    int64_t n, int64_t k, int64_t layer) {
  const int64_t B = input.size(0);
  switch (opt.criterion) {
    case SimbaCriterion::Simba:
    case SimbaCriterion::SimbaAbs:
    case SimbaCriterion::SimbaL2: return simba_scores(trace, n, opt.criterion);
    case SimbaCriterion::Norm: return norm_scores(input, n);
    case SimbaCriterion::Clip: return clip_scores(mixer_out, n);
    case SimbaCriterion::Delta: return delta_scores(trace, n);
    case SimbaCriterion::Random: return random_scores(B, n, opt.seed, layer, input.dtype()).to(input.device());
    case SimbaCriterion::Stride: return stride_scores(B, n, k, input.dtype()).to(input.device());
  }
  SIMBA_FAIL("simba_forward: unknown criterion");
}

// The walk over the layers shared by both entry points: `opt` chooses kept sets from scores,
// or `fixed` gives them.
SimbaResult run(const MambaLM& model, const Tensor& ids, int64_t c, const SimbaOptions* opt,
                const std::vector<Tensor>* fixed, bool keep_trace) {
  const auto& layers = model.backbone().layers;
  const int64_t Lyr = static_cast<int64_t>(layers.size());
  const int64_t B = ids.size(0), L = ids.size(1), m = L - c, D = model.config().hidden_size;
  SimbaResult res;
  res.context = c;
  res.counts = opt ? simba_token_counts(*opt, Lyr, c) : check_fixed(*fixed, Lyr, B, c);
  res.scores.resize(Lyr);

  // The kept sets live where the model does, as (B, n_ℓ) int64 tensors: scoring, selection and
  // the row gathers run there, and nothing is read back to the host.
  const Device dev = model.device();
  Tensor kept = Tensor::arange(c, DType::I64, dev).unsqueeze(0).expand({B, c}).contiguous();
  Variable h = model.embed(ids);  // (B, L, D)
  // Without autograd and without the per-layer trace nothing else holds the residual stream, so
  // a pruned layer adds its rows into it in place instead of into a copy of all B·L rows (its
  // input rows were gathered before). Its rows `flat` strictly increase (each kept set ascends,
  // the continuation rows follow it, the sequences come in order): IndexOrder::Increasing.
  const bool update_in_place = !grad_enabled() && !keep_trace;
  for (int64_t l = 0; l < Lyr; ++l) {
    const MambaBlock& block = *layers[l];
    const int64_t n = res.counts[l], T = n + m;
    const bool full = n == c;
    const bool select_next = l + 1 < Lyr && res.counts[l + 1] < n;
    const bool score_here = opt && (select_next || keep_trace);
    res.kept.push_back(kept);

    Tensor flat;   // (B·T): row b·L + position of every processed token
    Variable x = h;  // the layer's input rows, gathered where anything reads them
    Variable normed;
    if (!full) {
      flat = Tensor::empty({B * T}, DType::I64, dev);
      SIMBA_ON_DEVICE(dev, "simba_forward", simba_rows, flat.device_data<int64_t>(), kept.device_data<int64_t>(), B,
                      n, c, m);
      // Without autograd only the norm and the norm criterion read the gathered rows: else the
      // norm reads them from the stream itself (gather_rms_norm, the same bits), and the rows are
      // not written and read once more.
      if (!grad_enabled() && !(score_here && opt->criterion == SimbaCriterion::Norm))
        normed = Variable(gather_rms_norm(h.data().reshape({B * L, D}), flat, block.norm->weight.data(),
                                          block.norm->eps)
                              .view({B, T, D}));
      else
        x = reshape(index_select(reshape(h, {B * L, D}), 0, flat), {B, T, D});
    }
    if (!normed.defined()) normed = block.norm->forward(x);
    MixerTrace trace;
    const bool need_trace = score_here && reads_mixer_trace(opt->criterion);
    Variable mo = block.mixer->forward(normed, need_trace ? &trace : nullptr);  // (B, T, D)
    if (full)
      h = h + mo;
    else if (update_in_place)
      index_add_(h.data().view({B * L, D}), 0, flat, mo.data().reshape({B * T, D}), IndexOrder::Increasing);
    else
      h = reshape(index_add(reshape(h, {B * L, D}), 0, flat, reshape(mo, {B * T, D})), {B, L, D});
    if (keep_trace) res.layer_hidden.push_back(h.data());

    if (score_here) {
      const int64_t k = l + 1 < Lyr ? res.counts[l + 1] : n;
      res.scores[l] = layer_scores(*opt, trace, x.data(), mo.data(), n, k, l);
      if (select_next) {
        const Tensor s = res.scores[l].contiguous();
        Tensor next = Tensor::empty({B, k}, DType::I64, dev);
        SIMBA_DISPATCH_COMPUTE_KERNEL(dev, s.dtype(), "simba_forward", simba_select, next.device_data<int64_t>(),
                                      s.device_data<scalar_t>(), kept.device_data<int64_t>(), B, n, k);
        kept = next;
      }
    } else if (fixed && l + 1 < Lyr) {
      kept = (*fixed)[l + 1].to(dev).contiguous();
    }
  }

  res.hidden = h;
  if (m > 0)
    res.logits = model.head(narrow(h, 1, c - 1, m));
  else
    res.logits = Variable(Tensor::zeros({B, 0, model.config().vocab_size}, h.dtype(), dev));
  res.flops = pruned_forward_flops(model.config(), B, res.counts, m, opt != nullptr,
                                   opt ? opt->criterion : SimbaCriterion::Simba);
  return res;
}

}  // namespace

SimbaResult simba_forward(const MambaLM& model, const Tensor& ids, int64_t context, const SimbaOptions& opt,
                          bool keep_trace) {
  check_ids("simba_forward", ids, context);
  opt.validate("simba_forward");
  return run(model, ids, context, &opt, nullptr, keep_trace);
}

SimbaResult simba_forward_kept(const MambaLM& model, const Tensor& ids, int64_t context,
                               const std::vector<Tensor>& kept, bool keep_trace) {
  check_ids("simba_forward_kept", ids, context);
  return run(model, ids, context, nullptr, &kept, keep_trace);
}

Tensor continuation_targets(const Tensor& ids, int64_t context) {
  check_ids("continuation_targets", ids, context);
  return ids.narrow(1, context, ids.size(1) - context).contiguous();
}

Variable continuation_loss(const SimbaResult& result, const Tensor& ids) {
  const Tensor targets = continuation_targets(ids, result.context);  // (B, m)
  const int64_t B = targets.size(0), m = targets.size(1);
  SIMBA_CHECK(m >= 1, "continuation_loss: no continuation tokens (context " << result.context
                                                                             << " = the whole sequence)");
  SIMBA_CHECK(result.logits.defined() && result.logits.dim() == 3 && result.logits.size(0) == B &&
                  result.logits.size(1) == m,
              "continuation_loss: logits " << (result.logits.defined() ? shape_str(result.logits.shape()) : "undefined")
                                           << " do not fit ids " << shape_str(ids.shape()) << " with context "
                                           << result.context << " (expected (" << B << ", " << m << ", V))");
  const int64_t V = result.logits.size(2);
  return cross_entropy(reshape(result.logits, {B * m, V}), targets.reshape({B * m}));
}

}  // namespace simba
