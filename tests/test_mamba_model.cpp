// The Mamba mixer and language model: float64 finite-difference checks of the
// selective-scan op, the whole mixer and the LM loss w.r.t. every parameter
// (autograd/gradcheck.h: eps 1e-5, |a−n|/max(|a|,|n|,1e-3) <= 1e-6), recurrent
// step mode vs the parallel forward, checkpoint round trip and load errors.
#include <doctest/doctest.h>

#include <cmath>

#include "autograd/gradcheck.h"
#include "autograd/ops.h"
#include "nn/safetensors.h"
#include "ssm/decode_step.h"
#include "ssm/delta_softplus.h"
#include "ssm/mamba_model.h"
#include "ssm/selective_scan_autograd.h"
#include "tests/model_util.h"
#include "tests/test_util.h"

using namespace simba;

namespace {

void expect_ok(const GradcheckResult& r) {
  INFO("max error " << r.max_error << " at " << r.where << " (" << r.checked << " elements)");
  CHECK(r.checked > 0);
  CHECK(r.ok);
}

std::vector<std::string> names_of(const std::vector<std::pair<std::string, Variable>>& ps) {
  std::vector<std::string> n;
  for (auto& p : ps) n.push_back(p.first);
  return n;
}
std::vector<Variable> vars_of(const std::vector<std::pair<std::string, Variable>>& ps) {
  std::vector<Variable> v;
  for (auto& p : ps) v.push_back(p.second);
  return v;
}

}  // namespace

TEST_CASE("gradcheck: selective_scan op in every input, with column-view operands") {
  const int64_t B = 2, L = 5, Di = 3, N = 2;
  Generator g(5);
  Tensor xz = randn({B, L, 2 * Di}, g, DType::F64);
  Tensor delta = affine(rand({B, L, Di}, g, DType::F64), 0.5, 0.1);
  Tensor A = affine(rand({Di, N}, g, DType::F64), -1.5, -0.2);
  Tensor bc = randn({B, L, 2 * N + 1}, g, DType::F64);
  Tensor D = randn({Di}, g, DType::F64);
  auto f = [&](const std::vector<Variable>& v) {
    // u and z as the two halves of one (B, L, 2Di) tensor, B and C as column views of another.
    return selective_scan(narrow(v[0], -1, 0, Di), v[1], v[2], narrow(v[3], -1, 1, N), narrow(v[3], -1, 1 + N, N), v[4],
                          narrow(v[0], -1, Di, Di));
  };
  expect_ok(gradcheck(f, {xz, delta, A, bc, D}));
  // Without the optional skip and gate.
  auto g2 = [&](const std::vector<Variable>& v) {
    return selective_scan(v[0], v[1], v[2], v[3], v[4], Variable(), Variable());
  };
  expect_ok(gradcheck(g2, {randn({B, L, Di}, g, DType::F64), delta, A, randn({B, L, N}, g, DType::F64),
                           randn({B, L, N}, g, DType::F64)}));
}

TEST_CASE("delta_softplus: the CPU kernel against the reference, the unfused ops' bits, the gradients") {
  const int64_t M = 37, Di = 19;
  Generator g(71);
  // dt spans softplus' three regimes: e^v tiny, moderate, and past the v > 20 cut.
  const Tensor dt64 = affine(rand({M, Di}, g, DType::F64), 60.0, -35.0), b64 = randn({Di}, g, DType::F64);
  for (const DType dt_type : {DType::F64, DType::F32, DType::BF16}) {
    INFO(dtype_name(dt_type));
    const Tensor dt = dt64.to(dt_type), b = b64.to(dt_type);
    // The reference in double from the same stored values, and the CPU kernel into a poisoned output.
    std::vector<double> ref(M * Di);
    const std::vector<double> dtv = dt.to(DType::F64).to_vector(), bv = b.to(DType::F64).to_vector();
    delta_softplus_forward_ref<double>(ref.data(), dtv.data(), bv.data(), M, Di);
    const Tensor got = delta_softplus(Variable(dt), Variable(b)).data();
    Tensor poisoned = Tensor::full({M, Di}, std::nan(""), dt_type);
    SIMBA_DISPATCH_COMPUTE(dt_type, "test", [&] {
      delta_softplus_forward_cpu<scalar_t>(poisoned.data<scalar_t>(), dt.data<scalar_t>(),
                                           b.data<scalar_t>(), M, Di);
    });
    CHECK(poisoned.to_vector() == got.to_vector());
    const double tol = dt_type == DType::F64 ? 1e-15 : dt_type == DType::F32 ? 1e-6 : 4e-3;  // relative
    const std::vector<double> gv = got.to_vector();
    for (int64_t i = 0; i < M * Di; ++i) CHECK(gv[i] == doctest::Approx(ref[i]).epsilon(tol));
    // In float32 and float64 the bias is added in T, as the unfused add did: the same bits.
    if (dt_type != DType::BF16) CHECK(gv == softplus(add(dt, b)).to_vector());
  }
  // Gradients in float64 with a random upstream gradient, through the op on a (2, M, Di) input.
  auto f = [](const std::vector<Variable>& v) { return delta_softplus(v[0], v[1]); };
  expect_ok(gradcheck(f, {affine(rand({2, 5, Di}, g, DType::F64), 8.0, -4.0), randn({Di}, g, DType::F64)}));
  CHECK(contains(error_of([&] { delta_softplus(Variable(dt64), Variable(b64.narrow(0, 0, 5))); }),
                 "delta_softplus: bias of shape (5,) for dt of shape (37, 19) (expected (19,))"));
}

TEST_CASE("gradcheck: the whole mixer, w.r.t. its input and every parameter") {
  MambaConfig cfg = tiny_config();
  Generator init(3);
  MambaMixer mixer(cfg, &init, DType::F64);
  jitter(mixer, 4, 0.1);
  Generator g(6);
  Variable x(randn({2, 4, cfg.hidden_size}, g, DType::F64), true);
  auto params = mixer.named_parameters();
  std::vector<Variable> wrt = vars_of(params);
  std::vector<std::string> names = names_of(params);
  wrt.push_back(x);
  names.push_back("input");
  expect_ok(gradcheck_variables([&] { return mixer.forward(x); }, wrt, names));
}

TEST_CASE("gradcheck: LM loss w.r.t. every parameter (tiny config, tied and untied head)") {
  for (bool tied : {true, false}) {
    INFO("tied " << tied);
    MambaConfig cfg = tiny_config();
    cfg.tie_word_embeddings = tied;
    cfg.use_bias = !tied;  // exercise the optional in/out_proj biases too
    MambaLM model(cfg, 7, DType::F64);
    jitter(model, 8, 0.05);
    Tensor ids = random_ids(2, 5, cfg.vocab_size, 9);
    auto params = model.named_parameters();
    expect_ok(gradcheck_variables([&] { return model.loss(ids); }, vars_of(params), names_of(params)));
  }
}

TEST_CASE("parameter names and shapes follow Hugging Face MambaForCausalLM") {
  MambaConfig cfg = tiny_config();
  MambaLM model(cfg, 1);
  auto params = model.named_parameters();
  std::vector<std::string> expect{
      "backbone.embeddings.weight",           "backbone.layers.0.norm.weight",
      "backbone.layers.0.mixer.conv1d.weight", "backbone.layers.0.mixer.conv1d.bias",
      "backbone.layers.0.mixer.in_proj.weight", "backbone.layers.0.mixer.x_proj.weight",
      "backbone.layers.0.mixer.dt_proj.weight", "backbone.layers.0.mixer.dt_proj.bias",
      "backbone.layers.0.mixer.A_log",         "backbone.layers.0.mixer.D",
      "backbone.layers.0.mixer.out_proj.weight"};
  REQUIRE(params.size() == 2 + 10 * 2);
  for (size_t i = 0; i < expect.size(); ++i) CHECK(params[i].first == expect[i]);
  CHECK(params.back().first == "backbone.norm_f.weight");
  const int64_t Di = 12;
  CHECK(model.parameter("backbone.layers.1.mixer.in_proj.weight").shape() == Shape{2 * Di, 6});
  CHECK(model.parameter("backbone.layers.1.mixer.conv1d.weight").shape() == Shape{Di, 1, 3});
  CHECK(model.parameter("backbone.layers.1.mixer.x_proj.weight").shape() == Shape{2 + 2 * 3, Di});
  CHECK(model.parameter("backbone.layers.1.mixer.A_log").shape() == Shape{Di, 3});

  // MambaLM::unset allocates the same parameters (names, shapes, dtypes) without drawing them,
  // tied or untied; loading a saved model into it gives that model back exactly.
  for (const bool tied : {true, false}) {
    cfg.tie_word_embeddings = tied;
    const MambaLM seeded(cfg, 3, DType::F64);
    const auto unset = MambaLM::unset(cfg, DType::F64);
    const auto a = seeded.named_parameters(), b = unset->named_parameters();
    REQUIRE(a.size() == b.size());
    for (size_t i = 0; i < a.size(); ++i) {
      CHECK(a[i].first == b[i].first);
      CHECK(a[i].second.shape() == b[i].second.shape());
      CHECK(b[i].second.dtype() == DType::F64);
    }
    unset->load_tensors(seeded.state_tensors(), "seeded");
    const auto loaded = unset->state_tensors();
    for (const auto& [name, t] : seeded.state_tensors()) CHECK(t.to_vector() == loaded.at(name).to_vector());
  }
}

TEST_CASE("official initialisation: A_log = log(1..N), D = 1, dt bias gives Δ in [dt_min, dt_max]") {
  MambaConfig cfg = tiny_config();
  cfg.hidden_size = 32;
  cfg.time_step_rank = 2;
  MambaLM model(cfg, 3);
  Tensor a_log = model.parameter("backbone.layers.0.mixer.A_log").data();
  for (int64_t n = 0; n < 3; ++n) CHECK(a_log.at({5, n}) == doctest::Approx(std::log(n + 1.0)));
  CHECK(sum(model.parameter("backbone.layers.0.mixer.D").data()).item() == 64.0);
  Tensor delta = softplus(model.parameter("backbone.layers.1.mixer.dt_proj.bias").data());
  CHECK(-max(neg(delta)).item() >= 1e-3 * (1 - 1e-5));
  CHECK(max(delta).item() <= 0.1 * (1 + 1e-5));
  Tensor emb = model.parameter("backbone.embeddings.weight").data();
  double sd = std::sqrt(mean(square(emb)).item());
  CHECK(sd == doctest::Approx(0.02).epsilon(0.25));
  // The same seed gives the same model.
  MambaLM again(cfg, 3);
  CHECK(again.parameter("backbone.layers.1.mixer.in_proj.weight").data().to_vector() ==
        model.parameter("backbone.layers.1.mixer.in_proj.weight").data().to_vector());
}

TEST_CASE("recurrent step mode gives the parallel forward's logits") {
  MambaConfig cfg = tiny_config();
  cfg.hidden_size = 16;
  cfg.state_size = 4;
  cfg.conv_kernel = 4;
  cfg.num_hidden_layers = 3;
  cfg.vocab_size = 19;
  MambaLM model(cfg, 21);
  jitter(model, 22, 0.05);
  const int64_t B = 3, L = 9;
  Tensor ids = random_ids(B, L, cfg.vocab_size, 23);
  Tensor logits;
  {
    NoGradGuard ng;
    logits = model.forward(ids).data();  // (B, L, V)
  }
  auto state = model.new_state(B);
  // Error per position relative to that position's logit scale:
  // max_v |step − parallel| / max_v |parallel|, worst over (b, t).
  double worst = 0;
  for (int64_t t = 0; t < L; ++t) {
    Tensor step_logits = model.step(ids.select(1, t).contiguous(), state);  // (B, V)
    Tensor ref = logits.select(1, t);
    for (int64_t b = 0; b < B; ++b) {
      double diff = 0, scale = 0;
      for (int64_t v = 0; v < cfg.vocab_size; ++v) {
        double r = ref.at({b, v}), s = step_logits.at({b, v});
        diff = std::max(diff, std::fabs(r - s));
        scale = std::max(scale, std::fabs(r));
      }
      worst = std::max(worst, diff / scale);
    }
  }
  MESSAGE("step vs parallel logits (float32): max relative error " << worst);
  CHECK(worst <= 1e-5);
}

// A state that does not fit the batch or the layer is refused before any kernel runs, naming the
// state and the shape expected.
TEST_CASE("recurrent step refuses a state of the wrong shape") {
  MambaConfig cfg = tiny_config(2);
  MambaLM model(cfg, 41);
  const int64_t B = 2;
  const Tensor ids = random_ids(B, 1, cfg.vocab_size, 42).select(1, 0).contiguous();
  auto wrong_batch = model.new_state(B + 1);
  CHECK(contains(error_of([&] { model.step(ids, wrong_batch); }), "MambaMixer::step: state for"));
  auto wrong_conv = model.new_state(B);
  const Shape bad{B, wrong_conv[1].conv.size(1), wrong_conv[1].conv.size(2) + 1};
  wrong_conv[1].conv = Tensor::zeros(bad, wrong_conv[1].conv.dtype());
  const std::string m = error_of([&] { model.step(ids, wrong_conv); });
  CHECK_MESSAGE(contains(m, "MambaMixer::step: conv state of shape " + shape_str(bad) + ", expected"), m);
}

// Without autograd the forward fuses each residual add with the next norm (add_rms_norm_), which
// gives the same bits, and runs in_proj as one product of 2Di columns instead of two of Di:
// another GEMM shape, which BLAS may sum in another order (at D 8 OpenBLAS's float32 logits then
// differ in the last bit), so the two forwards agree to rounding, float32 and float64. A wrong
// half of in_proj for x or z would move the logits by far more.
TEST_CASE("forward without autograd (fused residual adds, in_proj as one product) equals the recorded forward") {
  for (const DType dt : {DType::F32, DType::F64}) {
    INFO(dtype_name(dt));
    MambaConfig cfg = tiny_config(3);
    cfg.hidden_size = 8;
    MambaLM model(cfg, 31);
    jitter(model, 32, 0.05);
    model.to(dt);
    const Tensor ids = random_ids(2, 7, cfg.vocab_size, 33);
    const Tensor recorded = model.forward(ids).data();
    Tensor fused;
    {
      NoGradGuard ng;
      fused = model.forward(ids).data();
    }
    REQUIRE(fused.shape() == recorded.shape());
    const std::vector<double> a = fused.to(DType::F64).to_vector(), b = recorded.to(DType::F64).to_vector();
    double diff = 0.0, scale = 0.0;
    for (size_t i = 0; i < a.size(); ++i) {
      diff = std::max(diff, std::abs(a[i] - b[i]));
      scale = std::max(scale, std::abs(b[i]));
    }
    CHECK(scale > 0.1);
    CHECK(diff <= (dt == DType::F32 ? 1e-6 : 1e-14) * scale);
  }
}

TEST_CASE("checkpoint round trip and loader errors") {
  TempDir tmp("test_mamba_model");
  const std::string dir = tmp.file("model");
  MambaConfig cfg = tiny_config();
  MambaLM model(cfg, 31);
  model.save(dir);
  auto loaded = MambaLM::load(dir);
  Tensor ids = random_ids(2, 6, cfg.vocab_size, 32);
  {
    NoGradGuard ng;
    CHECK(loaded->forward(ids).data().to_vector() == model.forward(ids).data().to_vector());
  }
  TensorMap tensors = load_safetensors(dir + "/model.safetensors");
  CHECK(tensors.count("lm_head.weight") == 0);  // tied: not stored

  // The original spelling of the embedding is accepted.
  TensorMap renamed = tensors;
  renamed["backbone.embedding.weight"] = renamed["backbone.embeddings.weight"];
  renamed.erase("backbone.embeddings.weight");
  MambaLM other(cfg, 99);
  other.load_tensors(renamed, "renamed");
  CHECK(other.parameter("backbone.embeddings.weight").data().to_vector() ==
        model.parameter("backbone.embeddings.weight").data().to_vector());

  TensorMap missing = tensors;
  missing.erase("backbone.layers.1.mixer.A_log");
  CHECK(error_of([&] { other.load_tensors(missing, "m.safetensors"); }).find("missing tensor 'backbone.layers.1.mixer.A_log'") !=
        std::string::npos);
  TensorMap wrong = tensors;
  wrong["backbone.norm_f.weight"] = Tensor::zeros({7});
  std::string e = error_of([&] { other.load_tensors(wrong, "w.safetensors"); });
  CHECK(e.find("backbone.norm_f.weight") != std::string::npos);
  CHECK(e.find("(7,)") != std::string::npos);
  CHECK(e.find("(6,)") != std::string::npos);
  TensorMap extra = tensors;
  extra["backbone.layers.2.norm.weight"] = Tensor::zeros({6});
  CHECK(error_of([&] { other.load_tensors(extra, "x.safetensors"); }).find("unexpected tensor 'backbone.layers.2.norm.weight'") !=
        std::string::npos);
}

TEST_CASE("a bfloat16 or float16 checkpoint loads into a float32 model, each value widened exactly") {
  TempDir tmp("test_mamba_model_half");
  const MambaLM model(tiny_config(), 31);
  for (const DType half : {DType::BF16, DType::F16}) {
    INFO(dtype_name(half));
    const std::string dir = tmp.file(dtype_name(half));
    model.save(dir);
    TensorMap stored;
    for (const auto& [name, t] : model.state_tensors()) stored[name] = t.to(half);
    save_safetensors(dir + "/model.safetensors", stored);
    REQUIRE(load_safetensors(dir + "/model.safetensors").at("backbone.norm_f.weight").dtype() == half);
    const TensorMap loaded = MambaLM::load(dir)->state_tensors();
    REQUIRE(loaded.size() == stored.size());
    for (const auto& [name, t] : stored) {
      INFO(name);
      CHECK(loaded.at(name).dtype() == DType::F32);
      CHECK(loaded.at(name).to_vector() == t.to_vector());
    }
  }
}

TEST_CASE("loading refuses NaN and Inf weights, naming the tensor and the index") {
  MambaLM model(tiny_config(), 31);
  TensorMap tensors = model.state_tensors();
  for (const double bad : {std::nan(""), HUGE_VAL, -HUGE_VAL}) {
    TensorMap damaged;
    for (const auto& [name, t] : tensors) damaged[name] = t.clone();
    Tensor w = damaged["backbone.layers.1.mixer.out_proj.weight"];
    w.view({-1}).narrow(0, 5, 1).fill_(bad);
    MambaLM other(tiny_config(), 7);
    const std::string e = error_of([&] { other.load_tensors(damaged, "d.safetensors"); });
    INFO(e);
    CHECK(contains(e, "d.safetensors: tensor 'backbone.layers.1.mixer.out_proj.weight' (6, 12) holds a non-finite value ("));
    CHECK(contains(e, ") at flat index 5"));
  }
}

TEST_CASE("MambaConfig::num_parameters counts exactly the parameters MambaLM allocates") {
  for (const bool tied : {true, false}) {
    for (const bool bias : {true, false}) {
      MambaConfig c = tiny_config(3);
      c.tie_word_embeddings = tied;
      c.use_bias = bias;
      c.use_conv_bias = !bias;
      INFO("tied " << tied << ", bias " << bias);
      CHECK(c.num_parameters() == MambaLM(c, 1).num_parameters());
    }
  }
}

TEST_CASE("DecodeStep on the CPU: run() is MambaLM::step bit for bit, the state updated in place; reset() restarts") {
  MambaConfig cfg = tiny_config(2);
  MambaLM model(cfg, 21);
  jitter(model, 22, 0.05);
  const int64_t B = 3;
  DecodeStep step(model, B);
  const Tensor ssm0 = step.state[0].ssm;  // the graph on a GPU keeps these addresses
  for (int round = 0; round < 2; ++round) {
    INFO("round " << round);
    std::vector<MixerState> ref = model.new_state(B);
    for (int t = 0; t < 5; ++t) {
      const Tensor ids = Tensor::from_ints({B}, {(t * 7) % cfg.vocab_size, (t * 3 + 1) % cfg.vocab_size, 2});
      step.ids.copy_(ids);
      step.run();
      const Tensor expected = model.step(ids, ref);
      CHECK(step.logits.to_vector() == expected.to_vector());
    }
    for (size_t l = 0; l < ref.size(); ++l) {
      CHECK(step.state[l].ssm.to_vector() == ref[l].ssm.to_vector());
      CHECK(step.state[l].conv.to_vector() == ref[l].conv.to_vector());
    }
    CHECK(step.state[0].ssm.shares_storage(ssm0));
    step.reset();
  }
}

TEST_CASE("DecodeStep in parts on the CPU: each part stepped alone and the head over the batch, bit for bit") {
  MambaConfig cfg = tiny_config(2);
  MambaLM model(cfg, 23);
  jitter(model, 24, 0.05);
  const int64_t B = 5;
  for (int parts : {2, 3, 5}) {
    INFO(parts << " parts");
    DecodeStep step(model, B, parts);
    REQUIRE(step.parts() == parts);
    std::vector<std::vector<MixerState>> ref;  // a state of its own for each part's rows
    for (int p = 0; p < parts; ++p) ref.push_back(model.new_state(B * (p + 1) / parts - B * p / parts));
    std::vector<MixerState> whole = model.new_state(B);
    for (int t = 0; t < 4; ++t) {
      std::vector<int64_t> v;
      for (int64_t b = 0; b < B; ++b) v.push_back((t * 5 + b * 3 + 1) % cfg.vocab_size);
      const Tensor ids = Tensor::from_ints({B}, v);
      step.ids.copy_(ids);
      step.logits.fill_(std::nan(""));  // run() must write every logit
      step.run();
      CHECK(step.logits.to_vector() == step_in_parts(model, ids, ref).to_vector());
      // The same function as the whole batch's step: its rows differ by float32 rounding at most.
      const std::vector<double> got = step.logits.to_vector(), full = model.step(ids, whole).to_vector();
      for (size_t k = 0; k < got.size(); ++k) CHECK(got[k] == doctest::Approx(full[k]).epsilon(1e-5));
    }
    for (int p = 0; p < parts; ++p)
      for (size_t l = 0; l < ref[p].size(); ++l) {
        const int64_t r0 = B * p / parts, n = B * (p + 1) / parts - r0;
        CHECK(step.state[l].ssm.narrow(0, r0, n).to_vector() == ref[p][l].ssm.to_vector());
        CHECK(step.state[l].conv.narrow(0, r0, n).to_vector() == ref[p][l].conv.to_vector());
      }
  }
  CHECK(contains(error_of([&] { DecodeStep(model, 3, 4); }), "DecodeStep: 4 parts for a batch of 3, expected 1 to 3"));
  CHECK(contains(error_of([&] { DecodeStep(model, 20, 9); }), "9 parts for a batch of 20, expected 1 to 8"));
  CHECK(contains(error_of([&] { DecodeStep(model, 3, -1); }), "-1 parts for a batch of 3"));
  // The default: one part on the CPU and in bfloat16; on a GPU in float32 two from kMinRowsToSplit
  // rows on.
  const Device gpu{DeviceType::CUDA, 0};
  CHECK(DecodeStep::default_parts(32, cpu(), DType::F32) == 1);
  CHECK(DecodeStep::default_parts(DecodeStep::kMinRowsToSplit - 1, gpu, DType::F32) == 1);
  CHECK(DecodeStep::default_parts(DecodeStep::kMinRowsToSplit, gpu, DType::F32) == 2);
  CHECK(DecodeStep::default_parts(32, gpu, DType::BF16) == 1);
  CHECK(DecodeStep(model, 32).parts() == 1);
}
