// bench/bench_gpu.cpp: Mamba throughput and the selective scan on a CUDA device (not a test).
//
//   build/bench_gpu [--out FILE.jsonl] [--device I] [--configs A,B,S] [--rows NAME,...]
//                   [--warmup W] [--samples S] [--budget SECONDS] [--kernels K] [--peer FILE]
//                   [--decode-parts P]
//
// On one GPU:
//   copy_d2d  a 1 GiB device-to-device cuda_copy: the bandwidth the scan is compared with,
//             counted as bytes read plus bytes written (2 × 1 GiB per copy)
//   gemm      an 8192 × 8192 × 8192 matrix product through tensor/matmul.h (cuBLAS), float32
//             (TF32 off) and bfloat16: the matrix peak the model rows are compared with
//   scan_fwd, scan_bwd
//             selective_scan_forward_cuda / selective_scan_backward_cuda alone, float32 and
//             bfloat16, at Config B's mixer shape (B 8, L 1024, Di 1536, N 16) and at B 4 ×
//             L 2048 × Di 1536 and B 32 × L 256 × Di 512 (N 16, with z and D), and their
//             effective bandwidth: the bytes the kernel must move at least (scan_min_bytes
//             below) over its time
// The models, in float32 and in bfloat16:
//   train, train_bf16
//             tokens/s of Trainer::train_step (train/trainer.cpp) with one micro-batch of
//             random token ids: the batch drawn on the host and uploaded, zero_grad, forward,
//             mean cross-entropy, backward, clipping (the norm read back a step later),
//             AdamW, with the trainer's default settings; train_bf16 is --dtype bfloat16,
//             mixed precision (bfloat16 compute on a copy of the float32 master weights)
//   infer, infer_bf16
//             tokens/s of a forward producing all logits, without autograd, of the model in
//             float32 / converted to bfloat16
// for Config A (V 256, D 256, 4 layers, batch 32 × 256) and Config B (V 50280, D 768,
// 24 layers, batch 8 × 1024: the 130M Mamba shape), both with N 16, expand 2, K 4 and
// R = ceil(D / 16), freshly initialised; with Config B also
//   prefill, prefill_bf16
//             infer's measurement at the prefill shape of the GPU performance issue: batch
//             4 × length 2048 (all 4 · 2048 positions' logits)
//   decode, decode_bf16
//             tokens/s of greedy generation with the recurrent step (DecodeStep: the model's
//             step recorded as a CUDA graph, as `simba generate` runs it), batch 1 and 32: 256
//             steps from a one-token prompt, each one token per sequence through all layers
//             and the head, the next ids the argmax of the logits on the device (nothing read
//             back); tokens/s = batch · 256 / median time of the 256 steps. The batch runs
//             in DecodeStep's default parts (ssm/decode_step.h), or in --decode-parts P (at
//             most the batch); JSON "parts"
// and with --configs S (config "S" in the rows; Config B's model, float32 and bfloat16):
//   simba_dense, simba_pruned, simba_dense_bf16, simba_pruned_bf16
//             simba_forward (ssm/simba_forward.h) without autograd on batch 1 (one long prompt)
//             and batch 8 (Config B's batch) of c = 8192 context tokens plus a continuation of
//             m = 1 token: dense is keep=1
//             (every layer processes all c + m tokens; the same forward as MambaLM::forward
//             with the logits of the m continuation positions only), pruned is
//             keep=0.1,schedule=linear with the default criterion (simba). The pruned row also
//             records the acceptance test of the Simba issue, "Simba prefill on the GPU,
//             config B shape, context 8192, keep 0.1 linear":
//               time ratio = median(pruned) / median(dense) <= FLOPs ratio + 0.05,
//             the FLOPs ratio being FLOPs(pruned) / FLOPs(dense) counted by ssm/flops.h (as
//             bench/bench_simba.cpp does on CPU); it is printed after the table. A bound not
//             met is reported, not an error (the exit code counts failed measurements only).
// --configs selects A, B and S, comma-separated, default all three; "" runs the scan, the copy
// and the gemm only. --rows keeps only the rows of those bench names (e.g. train_bf16: one model step
// under a profiler such as Nsight Compute, without the other rows' kernels).
//
// Peak device memory (peak_bytes in JSON, peak_MiB in the table) of every model row (train*,
// infer*, prefill*, simba*): the allocator's peak (tensor/cuda_device.h) is reset when the row
// starts and read after its measurement, so it covers building the model (uploading its
// weights), the warm-up and the samples. Every row builds its own model, data and optimiser in
// its own function and they are freed when it returns, so the previous rows' tensors are gone:
// what is still held at the start (start_bytes in JSON, included in the peak) is the 32 MiB
// cuBLAS workspace, held from the first GEMM on (tensor/matmul.cu), and 0 before it. The count
// is of bytes handed out by simba's caching allocator and not yet freed (live tensors plus that
// workspace), not of what its stream-ordered pool keeps reserved from the driver: freed blocks
// cached in the pool count nothing, so nvidia-smi shows more.
//
// Method (the same as the mamba_ssm peer's): W warm-up calls, then up to S samples, each the
// host wall time of `inner` calls between two cuda_synchronize calls, divided by `inner`;
// the median sample is reported. The training rows take inner = kTrainSteps consecutive steps:
// a step reads its gradient norm one step late (train/trainer.h), so steps follow one another
// on the device without a wait, and a sample of one step would time the device's start and
// drain as well. The other model rows take inner = 1; the scan and the copy take inner = 10, so
// that one synchronisation's latency is spread thin. A measurement stops early after --budget
// seconds of samples (at least 3 samples). The scan and the copy run first: a model step that
// fails (its message is printed and recorded) leaves them measured.
//
// --kernels K: where each row's time goes. After its samples, each row runs one more
// (untimed) sample under bench/kernel_trace.h, and the K kernels (copies and fills included)
// with the most device time are printed after the table, per call, beside the sum of all
// kernel time and the row's median: a sum well below the median means the GPU sat idle
// (launch-bound). Where it sat idle follows: the idle time summed by the kernel whose launch
// ended it (time before the step's first kernel is host work; time spread over many small
// kernels means the host launches slower than they run), then the host's time in CUDA
// runtime calls, by call, from one more traced sample (recording each call slows it). JSON
// gets every kernel ("kernels"), that sum ("kernel_ms"), "idle_before" and "runtime_calls".
//
// Prints one table row per measurement; with --out, every finished row is also in FILE as
// one JSON object per line (rewritten atomically after each row). Without a usable CUDA
// device it prints "no CUDA device (<reason>)" and exits 0. Exit code 1 if any measurement
// failed.
//
// --peer FILE: the same rows measured on the official Mamba kernels (outside the repository, in
// the same run) are printed beside simba's after the table, with the speedup, both peaks, both
// fractions of the run's limits and the GPU performance issue's targets (bench/peer_table.h).
// Recorded results and the peer comparison: bench/RESULTS.md.
#include <CLI/CLI.hpp>

#include <algorithm>
#include <cstdio>
#include <exception>
#include <functional>
#include <memory>
#include <sstream>
#include <string>
#include <utility>
#include <vector>

#include <nlohmann/json.hpp>

#include "autograd/ops.h"
#include "bench/kernel_trace.h"
#include "bench/peer_table.h"
#include "ssm/decode_step.h"
#include "ssm/mamba_model.h"
#include "ssm/selective_scan.h"
#include "ssm/simba.h"
#include "ssm/simba_forward.h"
#include "tensor/cuda_device.h"
#include "tensor/dispatch.h"
#include "tensor/elementwise.h"
#include "tensor/file_io.h"
#include "tensor/matmul.h"
#include "tensor/random.h"
#include "tensor/reduce.h"
#include "train/metrics_log.h"
#include "train/trainer.h"

using namespace simba;

namespace {

struct ModelBench {
  const char* name;
  int64_t vocab, d_model, layers, batch, length;
};
const ModelBench kModels[] = {{"A", 256, 256, 4, 32, 256}, {"B", 50280, 768, 24, 8, 1024}};
// Config B's model at the prefill shape: one forward over 4 prompts of 2048 tokens.
const ModelBench kPrefill = {"B", 50280, 768, 24, 4, 2048};

// The Simba rows: Config B's model, batches of c context tokens and m continuation tokens,
// and the slack: time ratio <= FLOPs ratio + kSimbaSlack.
const ModelBench& kSimbaModel = kModels[1];
constexpr int64_t kSimbaContext = 8192, kSimbaContinuation = 1;
constexpr int64_t kSimbaBatches[] = {1, 8};
constexpr double kSimbaSlack = 0.05;

// Config B's mixer: Di = 2 · 768.
struct ScanShape {
  int64_t B, L, Di, N;
  std::string str() const {
    return "B" + std::to_string(B) + " L" + std::to_string(L) + " Di" + std::to_string(Di) + " N" + std::to_string(N);
  }
};
const ScanShape kScanShapes[] = {{8, 1024, 1536, 16}, {4, 2048, 1536, 16}, {32, 256, 512, 16}};

struct Settings {
  int device = 0;
  int warmup = 3;
  int samples = 10;
  double budget_s = 20.0;
  int kernels = 0;  // --kernels: trace one more sample, show this many kernels
  int decode_parts = 0;  // --decode-parts: the parts of a decode batch (0: DecodeStep's default)
  std::string out;
  std::string peer;  // --peer: the peer's results
};

// One finished measurement: a table row and a JSON line.
struct Row {
  Row(std::string bench_, std::string config_, std::string shape_)
      : bench(std::move(bench_)), config(std::move(config_)), shape(std::move(shape_)) {}
  std::string bench, config, shape;
  std::vector<double> samples_s;
  double median_s = 0.0;
  int warmup = 0, inner = 0;
  int64_t tokens = 0;  // tokens per call (model rows)
  double bytes = 0.0;  // bytes moved per call (scan and copy rows)
  nlohmann::json extra = nlohmann::json::object();
  // --kernels, per call: device time of each kernel; device idle time by the kernel that ended
  // it; host time in each CUDA runtime call (bench/kernel_trace.h)
  std::vector<KernelTime> kernels, api;
  IdleTime idle;
  std::string error;  // non-empty: the measurement failed
  bool memory = false;  // a model row: its peak device memory is recorded (the file comment)
};

// A model row's labels, with its peak device memory recorded.
Row model_row(std::string bench, std::string config, std::string shape) {
  Row r(std::move(bench), std::move(config), std::move(shape));
  r.memory = true;
  return r;
}

double median(std::vector<double> v) {
  std::sort(v.begin(), v.end());
  const size_t n = v.size();
  return n % 2 ? v[n / 2] : 0.5 * (v[n / 2 - 1] + v[n / 2]);
}

// The timing method of the file comment.
void time_on_device(Row& row, const Settings& s, int inner, const std::function<void()>& call) {
  for (int i = 0; i < s.warmup; ++i) call();
  cuda_synchronize(s.device);
  double total = 0.0;
  while (static_cast<int>(row.samples_s.size()) < s.samples &&
         (row.samples_s.size() < 3 || total < s.budget_s)) {
    Stopwatch clock;
    for (int i = 0; i < inner; ++i) call();
    cuda_synchronize(s.device);
    const double t = clock.seconds();
    total += t;
    row.samples_s.push_back(t / inner);
  }
  row.median_s = median(row.samples_s);
  row.warmup = s.warmup;
  row.inner = inner;
  if (s.kernels > 0) {
    auto traced = [&](bool host_api) {
      return trace_kernels(s.device, [&] { for (int i = 0; i < inner; ++i) call(); }, host_api);
    };
    auto per_call = [&](std::vector<KernelTime> v) {  // a count that is not a multiple stays a fraction
      for (KernelTime& k : v) k.ms /= inner;
      return v;
    };
    traced(false);  // CUPTI's first records of a trace come late: a warm-up trace
    const KernelTrace t = traced(false);
    row.kernels = per_call(t.kernels);
    row.idle = t.idle;
    row.idle.before = per_call(t.idle.before);
    row.api = per_call(traced(true).api);  // a sample of its own: recording the calls slows them
  }
}

double kernel_ms(const Row& r) {
  double sum = 0.0;
  for (const KernelTime& k : r.kernels) sum += k.ms;
  return sum;
}

// Bytes the selective scan must read and write at least (e bytes per element), each operand
// once, the (B, L, Di, N) states never stored:
//   forward:  reads u, Δ, z (B·L·Di each), B, C (B·L·N each), A (Di·N), D (Di); writes out
//             (B·L·Di):  e·(4·B·L·Di + 2·B·L·N + Di·N + Di)
//   backward: reads dout, u, Δ, z, B, C, A, D; writes du, dΔ, dz, dB, dC, dA, dD:
//             e·(7·B·L·Di + 4·B·L·N + 2·(Di·N + Di))
double scan_min_bytes(const ScanShape& sh, double e, bool backward) {
  const double BLDi = double(sh.B) * sh.L * sh.Di, BLN = double(sh.B) * sh.L * sh.N;
  const double DiN = double(sh.Di) * sh.N, Di = double(sh.Di);
  return backward ? e * (7.0 * BLDi + 4.0 * BLN + 2.0 * (DiN + Di)) : e * (4.0 * BLDi + 2.0 * BLN + DiN + Di);
}

// A device-to-device copy of 1 GiB; bytes counted read + written.
constexpr size_t kCopyBytes = size_t(1) << 30;
void bench_copy(Row& row, const Settings& s, Device dev) {
  Storage src(kCopyBytes, dev), dst(kCopyBytes, dev);
  row.bytes = 2.0 * double(kCopyBytes);
  time_on_device(row, s, 10, [&] { cuda_copy(dst.data(), dev, src.data(), dev, kCopyBytes); });
}

// The scan alone in storage type dt, inputs drawn like the mixer's: u, z, B, C, D standard
// normal, Δ in [0.001, 0.1] (softplus already applied), A = −[0.5, 4.5).
void bench_scan(Row& row, const Settings& s, Device dev, const ScanShape& sh, DType dt, bool backward) {
  const int64_t B = sh.B, L = sh.L, Di = sh.Di, N = sh.N;
  Generator g(4);
  auto put = [&](const Tensor& t) { return t.to(dt).to(dev); };
  Tensor u = put(randn({B, L, Di}, g)), z = put(randn({B, L, Di}, g)), dout = put(randn({B, L, Di}, g));
  Tensor delta = put(affine(rand({B, L, Di}, g), 0.099, 0.001));
  Tensor A = put(affine(rand({Di, N}, g), -4.0, -0.5));
  Tensor Bm = put(randn({B, L, N}, g)), Cm = put(randn({B, L, N}, g)), D = put(randn({Di}, g));
  Tensor out = Tensor::empty({B, L, Di}, dt, dev);
  Tensor du = Tensor::empty({B, L, Di}, dt, dev), dd = Tensor::empty({B, L, Di}, dt, dev);
  Tensor dz = Tensor::empty({B, L, Di}, dt, dev), dA = Tensor::empty({Di, N}, dt, dev);
  Tensor dB = Tensor::empty({B, L, N}, dt, dev), dC = Tensor::empty({B, L, N}, dt, dev);
  Tensor dD = Tensor::empty({Di}, dt, dev);
  row.bytes = scan_min_bytes(sh, double(dtype_size(dt)), backward);
  SIMBA_DISPATCH_COMPUTE(dt, "bench_scan", [&] {
    using T = scalar_t;
    auto v = [](const Tensor& t) { return SeqView<const T>{t.device_data<T>(), t.size(2)}; };
    auto m = [](const Tensor& t) { return SeqView<T>{t.device_data<T>(), t.size(2)}; };
    T* const no_state = nullptr;
    const T* const no_h0 = nullptr;
    if (!backward)
      time_on_device(row, s, 10, [&] {
        SIMBA_DEVICE_CALL(dev, "selective_scan_forward", selective_scan_forward_cpu<T>, selective_scan_forward_cuda<T>, m(out), no_state, v(u), v(delta),
                        A.device_data<T>(), v(Bm), v(Cm), D.device_data<T>(), v(z), no_h0, B, L, Di, N);
      });
    else
      time_on_device(row, s, 10, [&] {
        SIMBA_DEVICE_CALL(dev, "selective_scan_backward", selective_scan_backward_cpu<T>, selective_scan_backward_cuda<T>, m(du), m(dd), dA.device_data<T>(),
                        m(dB), m(dC), dD.device_data<T>(), m(dz), no_state, v(dout), no_h0, v(u), v(delta),
                        A.device_data<T>(), v(Bm), v(Cm), D.device_data<T>(), v(z), no_h0, B, L, Di, N);
      });
  });
}

// The matrix peak: C = A · B for random 8192 × 8192 A and B of dtype dt, 2 · 8192³ FLOPs a call.
constexpr int64_t kGemmSize = 8192;
void bench_gemm(Row& row, const Settings& s, Device dev, DType dt) {
  Generator g(7);
  const Tensor a = randn({kGemmSize, kGemmSize}, g).to(dt).to(dev), b = randn({kGemmSize, kGemmSize}, g).to(dt).to(dev);
  time_on_device(row, s, 10, [&] { matmul(a, b); });
  row.extra["TFLOP_per_s"] = 2.0 * double(kGemmSize) * kGemmSize * kGemmSize / row.median_s / 1e12;
}

MambaConfig model_config(const ModelBench& b) {
  MambaConfig c = demo_model_config();  // N 16, expand 2, K 4, official init
  c.vocab_size = b.vocab;
  c.hidden_size = b.d_model;
  c.num_hidden_layers = b.layers;
  c.time_step_rank = MambaConfig::auto_time_step_rank(b.d_model);
  return c;
}

std::string model_shape(const ModelBench& b) {
  return "V" + std::to_string(b.vocab) + " D" + std::to_string(b.d_model) + " x" + std::to_string(b.layers) + " B" +
         std::to_string(b.batch) + " L" + std::to_string(b.length);
}

Tensor random_ids(int64_t B, int64_t L, int64_t V, uint64_t seed, Device dev) {
  Generator g(seed);
  std::vector<int64_t> v(B * L);
  for (auto& x : v) x = g.randint(0, V);
  return Tensor::from_ints({B, L}, v, dev);
}

// Consecutive training steps a sample (the file comment).
constexpr int kTrainSteps = 5;

// Trainer::train_step with one micro-batch of B windows of L tokens, drawn from a stream of
// random ids (the run's data are not the point; 20 windows' worth, a tenth held out).
void bench_train(Row& row, const Settings& s, Device dev, const ModelBench& b, DType dtype) {
  row.tokens = b.batch * b.length;
  TrainOptions o;
  o.batch_size = b.batch;
  o.seq_len = b.length;
  o.steps = 1000000;
  o.dtype = dtype;
  const int64_t n = 20 * b.batch * (b.length + 1);
  TextData data(random_ids(1, n, b.vocab, 2, cpu()).to_ints(), o.val_fraction, o.seed, "random ids");
  auto model = std::make_shared<MambaLM>(model_config(b), 1);
  const int64_t parameters = model->num_parameters();
  Trainer trainer(o, std::move(model), std::move(data), dev);
  std::vector<Tensor> losses;
  Tensor norm;
  time_on_device(row, s, kTrainSteps, [&] {
    const StepStats step = trainer.train_step();
    losses.push_back(step.losses);
    norm = step.grad_norm;
  });
  trainer.check_step();
  const std::vector<double> means = mean_losses(losses);
  // A fresh model starts near ln V (random ids: the loss stays there).
  row.extra.update({{"loss_first", means.front()}, {"loss_last", means.back()}, {"grad_norm_last", norm.item()},
                    {"steps", static_cast<int64_t>(means.size())}, {"parameters", parameters}});
}

// infer and prefill: one forward of B × L random ids, all B·L logits, no autograd; the logits
// are freed as soon as each call has been queued.
void bench_infer(Row& row, const Settings& s, Device dev, const ModelBench& b, DType dtype) {
  row.tokens = b.batch * b.length;
  MambaLM model(model_config(b), 1);
  model.to(dtype);
  model.to(dev);
  const Tensor ids = random_ids(b.batch, b.length, b.vocab, 3, dev);
  NoGradGuard no_grad;
  time_on_device(row, s, 1, [&] { model.forward(ids); });
  row.extra["parameters"] = model.num_parameters();
}

// Greedy decoding of kDecodeTokens tokens per sequence from the state after one prompt token
// (the file comment), one recorded DecodeStep (ssm/decode_step.h: a CUDA graph) a token, the
// argmax fed back outside it. The state is reset each call, so every call decodes the same tokens.
constexpr int64_t kDecodeTokens = 256;
constexpr int64_t kDecodeBatches[] = {1, 32};
void bench_decode(Row& row, const Settings& s, Device dev, DType dtype, int64_t batch) {
  const ModelBench& b = kModels[1];
  row.tokens = batch * kDecodeTokens;
  MambaLM model(model_config(b), 1);
  model.to(dtype);
  model.to(dev);
  const Tensor prompt = random_ids(batch, 1, b.vocab, 6, dev).reshape({batch});
  NoGradGuard no_grad;
  DecodeStep step(model, batch, int(std::min<int64_t>(s.decode_parts, batch)));
  row.extra["parts"] = step.parts();
  time_on_device(row, s, 1, [&] {
    step.reset();
    step.ids.copy_(prompt);
    for (int64_t i = 0; i < kDecodeTokens; ++i) {
      step.run();
      step.ids.copy_(argmax(step.logits, 1));
    }
  });
}

// What the dense Simba row leaves for the pruned row of the same dtype: its median time (0 if
// it failed).
struct SimbaDense {
  double median_s = 0.0;
};

// simba_forward on Config B's model (random init, the same weights in every row: seed 1) and
// `batch` sequences of c + m random ids, no autograd. Each call's result (logits, kept sets, stream) is
// freed once the call has been queued; only its FLOPs count is kept. The pruned row compares
// its median with the dense row's (the file comment).
void bench_simba(Row& row, const Settings& s, Device dev, DType dtype, int64_t batch, const SimbaOptions& opt,
                 SimbaDense& dense) {
  const int64_t c = kSimbaContext, m = kSimbaContinuation;
  row.tokens = batch * (c + m);
  const MambaConfig cfg = model_config(kSimbaModel);
  MambaLM model(cfg, 1);
  model.to(dtype);
  model.to(dev);
  const Tensor ids = random_ids(batch, c + m, kSimbaModel.vocab, 5, dev);
  NoGradGuard no_grad;
  ForwardFlops flops;
  time_on_device(row, s, 1, [&] { flops = simba_forward(model, ids, c, opt).flops; });
  std::vector<int64_t> counts;  // n_ℓ: context tokens processed by each layer
  for (const LayerFlops& l : flops.layers) counts.push_back(l.tokens - m);
  row.extra.update({{"simba", opt.to_string()}, {"context", c}, {"continuation", m}, {"counts", counts},
                    {"flops", flops.total()}});
  if (opt.keep >= 1.0) {
    dense.median_s = row.median_s;
    return;
  }
  // The dense count as ssm/flops.h gives it for simba_forward with keep=1: every layer processes
  // all c + m tokens, none is scored, the head runs on the m continuation positions.
  const double flops_ratio = double(flops.total()) / double(dense_forward_flops(cfg, batch, c + m, m).total());
  const double bound = flops_ratio + kSimbaSlack;
  row.extra.update({{"flops_ratio", flops_ratio}, {"bound", bound}});
  if (dense.median_s > 0) {
    const double time_ratio = row.median_s / dense.median_s;
    row.extra.update({{"dense_median_ms", dense.median_s * 1e3}, {"time_ratio", time_ratio},
                      {"bound_met", time_ratio <= bound}});
  }
}

std::string fmt(double v, const char* spec) {
  char buf[64];
  std::snprintf(buf, sizeof buf, spec, v);
  return buf;
}

void print_header() {
  std::printf("%-10s %-17s %-6s %-27s %10s %12s %9s %7s %7s %9s\n", "impl", "bench", "config", "shape", "median_ms",
              "tokens/s", "GB/s", "%copy", "samples", "peak_MiB");
}

void print_row(const Row& r, double copy_gbs) {
  if (!r.error.empty()) {
    std::printf("%-10s %-17s %-6s %-27s FAILED: %s\n", "simba", r.bench.c_str(), r.config.c_str(), r.shape.c_str(),
                r.error.c_str());
  } else {
    const double gbs = r.bytes > 0 ? r.bytes / r.median_s / 1e9 : 0.0;
    const bool peak = r.extra.contains("peak_bytes");
    std::printf("%-10s %-17s %-6s %-27s %10.3f %12s %9s %7s %7zu %9s\n", "simba", r.bench.c_str(), r.config.c_str(),
                r.shape.c_str(), r.median_s * 1e3, r.tokens > 0 ? fmt(r.tokens / r.median_s, "%.0f").c_str() : "-",
                r.bytes > 0 ? fmt(gbs, "%.1f").c_str() : "-",
                r.bytes > 0 && copy_gbs > 0 ? fmt(100.0 * gbs / copy_gbs, "%.1f").c_str() : "-", r.samples_s.size(),
                peak ? fmt(r.extra["peak_bytes"].get<double>() / double(1 << 20), "%.0f").c_str() : "-");
  }
  std::fflush(stdout);
}

// The --kernels breakdown of a row (after the table).
void print_kernels(const Row& r, int top) {
  if (r.kernels.empty()) return;
  const double sum = kernel_ms(r);
  std::printf("\n%s %s %s: kernel time %.3f ms of the median %.3f ms per call (%.0f %%)\n", r.bench.c_str(),
              r.config.c_str(), r.shape.c_str(), sum, r.median_s * 1e3, 100.0 * sum / (r.median_s * 1e3));
  for (size_t i = 0; i < r.kernels.size() && int(i) < top; ++i) {
    const KernelTime& k = r.kernels[i];
    std::printf("  %9.3f ms %5.1f %% %8.1f x  %s\n", k.ms, 100.0 * k.ms / sum, double(k.count) / r.inner,
                k.name.c_str());
  }
  double idle = 0.0, host = 0.0;
  for (const KernelTime& k : r.idle.before) idle += k.ms;
  for (const KernelTime& k : r.api) host += k.ms;
  std::printf("  device idle %.3f ms per call, before:\n", idle);
  for (size_t i = 0; i < r.idle.before.size() && int(i) < top / 2; ++i)
    std::printf("  %9.3f ms %8.1f gaps  %s\n", r.idle.before[i].ms, double(r.idle.before[i].count) / r.inner,
                r.idle.before[i].name.c_str());
  std::printf("  the longest idle stretches of the traced sample (at: ms since it began):\n");
  for (const Gap& g : r.idle.longest)
    std::printf("  %9.3f ms at %9.3f  after %s, before %s\n", g.ms, g.at_ms,
                g.after.empty() ? "(the start)" : g.after.c_str(), g.before.c_str());
  std::printf("  host time in CUDA runtime calls %.3f ms per call (a traced sample of its own):\n", host);
  for (size_t i = 0; i < r.api.size() && int(i) < top / 2; ++i)
    std::printf("  %9.3f ms %8.1f calls  %s\n", r.api[i].ms, double(r.api[i].count) / r.inner, r.api[i].name.c_str());
}

// The Simba acceptance line of a pruned row (after the table).
void print_simba_check(const Row& r) {
  if (!r.error.empty() || !r.extra.contains("flops_ratio")) return;
  const double flops_ratio = r.extra["flops_ratio"].get<double>(), bound = r.extra["bound"].get<double>();
  if (!r.extra.contains("time_ratio")) {
    std::printf("%s: FLOPs ratio %.3f, bound %.3f: no time ratio (the dense row failed)\n", r.bench.c_str(),
                flops_ratio, bound);
    return;
  }
  const double time_ratio = r.extra["time_ratio"].get<double>();
  std::printf("%s (%s, %s): time(pruned)/time(dense) %.3f, FLOPs ratio %.3f, bound (FLOPs + %.2f) %.3f: %s\n",
              r.bench.c_str(), r.shape.c_str(),
              r.extra["simba"].get<std::string>().c_str(), time_ratio, flops_ratio, kSimbaSlack, bound,
              r.extra["bound_met"].get<bool>() ? "met" : "NOT met");
}

nlohmann::json to_json(const Row& r, double copy_gbs) {
  nlohmann::json j = {{"impl", "simba"}, {"bench", r.bench}, {"config", r.config}, {"shape", r.shape}};
  if (!r.error.empty()) {
    j["status"] = "failed";
    j["error"] = r.error;
    return j;
  }
  j["status"] = "ok";
  j["median_ms"] = r.median_s * 1e3;
  std::vector<double> ms;
  for (double t : r.samples_s) ms.push_back(t * 1e3);
  j["samples_ms"] = ms;
  j["warmup"] = r.warmup;
  j["inner"] = r.inner;
  if (r.tokens > 0) {
    j["tokens_per_call"] = r.tokens;
    j["tokens_per_s"] = r.tokens / r.median_s;
  }
  if (r.bytes > 0) {
    const double gbs = r.bytes / r.median_s / 1e9;
    j["bytes_per_call"] = r.bytes;
    j["GB_per_s"] = gbs;
    if (copy_gbs > 0) j["fraction_of_copy"] = gbs / copy_gbs;
  }
  for (const auto& [k, v] : r.extra.items()) j[k] = v;
  if (!r.kernels.empty()) {
    j["kernel_ms"] = kernel_ms(r);
    auto list = [&](const std::vector<KernelTime>& v, const char* count) {
      nlohmann::json a = nlohmann::json::array();
      for (const KernelTime& k : v) a.push_back({{"name", k.name}, {"ms", k.ms}, {count, double(k.count) / r.inner}});
      return a;
    };
    j["kernels"] = list(r.kernels, "launches");
    j["idle_before"] = list(r.idle.before, "gaps");
    j["runtime_calls"] = list(r.api, "calls");
  }
  return j;
}

}  // namespace

int main(int argc, char** argv) {
  Settings s;
  std::string configs = "A,B,S";
  std::vector<std::string> only_rows;
  CLI::App app{"bench_gpu: Mamba training/inference tokens/s and the selective scan on a CUDA device"};
  app.add_option("--out", s.out, "also write the results here, one JSON object per line");
  app.add_option("--device", s.device, "CUDA device index")->check(CLI::NonNegativeNumber);
  app.add_option("--configs", configs,
                 "model configs to run, comma-separated: A, B (with the prefill and decode rows), S (Simba dense vs pruned on "
                 "Config B's model, context 8192); empty: scan, copy and gemm only")
      ->capture_default_str();
  app.add_option("--rows", only_rows, "run only the rows of these bench names, comma-separated (e.g. train_bf16)")
      ->delimiter(',');
  app.add_option("--warmup", s.warmup, "warm-up calls before timing")->check(CLI::NonNegativeNumber);
  app.add_option("--samples", s.samples, "timed samples per measurement (the median is reported)")
      ->check(CLI::Range(3, 1000));
  app.add_option("--budget", s.budget_s, "seconds of samples after which a measurement stops (>= 3 samples)")
      ->check(CLI::PositiveNumber);
  app.add_option("--peer", s.peer,
                 "print these rows of the official Mamba kernels (JSON Lines, bench/peer_table.h) beside simba's")
      ->check(CLI::ExistingFile);
  app.add_option("--kernels", s.kernels,
                 "trace one more sample of each row and print its K most expensive kernels (0: off)")
      ->check(CLI::NonNegativeNumber);
  app.add_option("--decode-parts", s.decode_parts,
                 "cut each decode batch into this many parts (at most the batch; ssm/decode_step.h), 0: the default")
      ->check(CLI::Range(0, kMaxCudaBranches));
  CLI11_PARSE(app, argc, argv);

  std::vector<const ModelBench*> models;
  bool simba_rows = false;
  std::stringstream list(configs);
  for (std::string name; std::getline(list, name, ',');) {
    if (name == "S") {
      simba_rows = true;
      continue;
    }
    auto it = std::find_if(std::begin(kModels), std::end(kModels), [&](const ModelBench& b) { return name == b.name; });
    if (it == std::end(kModels)) {
      std::fprintf(stderr, "bench_gpu: --configs: unknown config '%s' (expected A, B or S)\n", name.c_str());
      return 2;
    }
    models.push_back(&*it);
  }
  const SimbaOptions simba_dense = parse_simba_options("keep=1", "bench_gpu");
  const SimbaOptions simba_pruned = parse_simba_options("keep=0.1,schedule=linear", "bench_gpu");
  // The plan is made (and --rows checked) before the device is looked at: nothing in it touches
  // the GPU until a row is measured.
  const Device dev{DeviceType::CUDA, s.device};

  // The plan: each row's labels, and the measurement that fills in the rest.
  std::vector<std::pair<Row, std::function<void(Row&)>>> plan = {
      {Row{"copy_d2d", "-", "1 GiB"}, [&](Row& r) { bench_copy(r, s, dev); }},
  };
  for (const DType dt : {DType::F32, DType::BF16})
    plan.push_back({Row{"gemm", dt == DType::F32 ? "f32" : "bf16", "M8192 N8192 K8192"},
                    [&s, dev, dt](Row& r) { bench_gemm(r, s, dev, dt); }});
  for (const bool backward : {false, true})
    for (const DType dt : {DType::F32, DType::BF16})
      for (const ScanShape& sh : kScanShapes)
        plan.push_back({Row{backward ? "scan_bwd" : "scan_fwd", dt == DType::F32 ? "f32" : "bf16", sh.str()},
                        [&s, dev, sh, dt, backward](Row& r) { bench_scan(r, s, dev, sh, dt, backward); }});
  for (const ModelBench* b : models) {
    for (const DType dt : {DType::F32, DType::BF16}) {
      const std::string suffix = dt == DType::F32 ? "" : "_bf16";
      plan.push_back({model_row("train" + suffix, b->name, model_shape(*b)),
                      [&s, dev, b, dt](Row& r) { bench_train(r, s, dev, *b, dt); }});
      plan.push_back({model_row("infer" + suffix, b->name, model_shape(*b)),
                      [&s, dev, b, dt](Row& r) { bench_infer(r, s, dev, *b, dt); }});
    }
    if (b->name == std::string("B")) {
      for (const DType dt : {DType::F32, DType::BF16})
        plan.push_back({model_row(dt == DType::F32 ? "prefill" : "prefill_bf16", "B", model_shape(kPrefill)),
                        [&s, dev, dt](Row& r) { bench_infer(r, s, dev, kPrefill, dt); }});
      for (const int64_t batch : kDecodeBatches)
        for (const DType dt : {DType::F32, DType::BF16}) {
          const std::string shape = "V" + std::to_string(b->vocab) + " D" + std::to_string(b->d_model) + " x" +
                                    std::to_string(b->layers) + " B" + std::to_string(batch) + " gen" +
                                    std::to_string(kDecodeTokens);
          plan.push_back({model_row(dt == DType::F32 ? "decode" : "decode_bf16", "B", shape),
                          [&s, dev, dt, batch](Row& r) { bench_decode(r, s, dev, dt, batch); }});
        }
    }
  }
  if (simba_rows) {
    for (const int64_t batch : kSimbaBatches) {
      const std::string shape = "V" + std::to_string(kSimbaModel.vocab) + " D" + std::to_string(kSimbaModel.d_model) +
                                " x" + std::to_string(kSimbaModel.layers) + " B" + std::to_string(batch) + " c" +
                                std::to_string(kSimbaContext) + " m" + std::to_string(kSimbaContinuation);
      for (const DType dt : {DType::F32, DType::BF16}) {
        const std::string suffix = dt == DType::F32 ? "" : "_bf16";
        auto dense = std::make_shared<SimbaDense>();  // the dense row's median, for the pruned row
        plan.push_back({model_row("simba_dense" + suffix, "S", shape),
                        [&s, dev, dt, batch, &simba_dense, dense](Row& r) {
                          bench_simba(r, s, dev, dt, batch, simba_dense, *dense);
                        }});
        plan.push_back({model_row("simba_pruned" + suffix, "S", shape),
                        [&s, dev, dt, batch, &simba_pruned, dense](Row& r) {
                          bench_simba(r, s, dev, dt, batch, simba_pruned, *dense);
                        }});
      }
    }
  }
  if (!only_rows.empty()) {
    for (const std::string& name : only_rows)
      if (std::none_of(plan.begin(), plan.end(), [&](const auto& p) { return p.first.bench == name; })) {
        std::fprintf(stderr, "bench_gpu: --rows: no row named '%s' in the selected configs\n", name.c_str());
        return 2;
      }
    plan.erase(std::remove_if(plan.begin(), plan.end(),
                              [&](const auto& p) {
                                return std::find(only_rows.begin(), only_rows.end(), p.first.bench) == only_rows.end();
                              }),
               plan.end());
  }
  // The peer's file is read before anything is measured: a malformed one fails at once.
  std::vector<nlohmann::json> peer;
  if (!s.peer.empty()) {
    try {
      peer = read_result_lines(s.peer);
    } catch (const std::exception& e) {
      std::fprintf(stderr, "bench_gpu: %s\n", e.what());
      return 2;
    }
  }
  const std::string reason = cuda_unavailable_reason();
  if (!reason.empty()) {
    std::printf("bench_gpu: no CUDA device (%s): nothing measured\n", reason.c_str());
    return 0;
  }
  if (s.device >= cuda_device_count()) {
    std::fprintf(stderr, "bench_gpu: --device %d, but this machine has %d CUDA device(s)\n", s.device,
                 cuda_device_count());
    return 2;
  }
  std::printf("bench_gpu on %s: %d warm-up calls, median of up to %d samples\n", dev.str().c_str(), s.warmup,
              s.samples);
  print_header();
  std::vector<nlohmann::json> results;
  std::string lines;
  double copy_gbs = 0.0;
  bool failed = false;
  for (auto& [row, measure] : plan) {
    try {
      // A model row's peak: from here (nothing of the previous rows is left but the cuBLAS
      // workspace) to the end of its measurement, read after its function has returned (its
      // model already freed: the peak keeps the maximum).
      if (row.memory) {
        cuda_reset_peak_bytes(s.device);
        row.extra["start_bytes"] = cuda_memory_stats(s.device).current_bytes;
      }
      measure(row);
      if (row.memory) row.extra["peak_bytes"] = cuda_memory_stats(s.device).peak_bytes;
    } catch (const std::exception& e) {
      row.error = e.what();
      failed = true;
    }
    if (row.bench == "copy_d2d" && row.error.empty()) copy_gbs = row.bytes / row.median_s / 1e9;
    print_row(row, copy_gbs);
    results.push_back(to_json(row, copy_gbs));
    lines += results.back().dump() + "\n";
    if (!s.out.empty()) write_file_atomic(s.out, lines);
  }
  for (const auto& [row, measure] : plan) print_kernels(row, s.kernels);
  for (const auto& [row, measure] : plan) print_simba_check(row);
  if (!peer.empty()) {
    std::vector<std::string> unpaired;
    const HardwareLimits limits = limits_of(results);
    print_peer_table(compare_with_peer(results, peer, limits, unpaired), unpaired, limits, s.peer, stdout);
  }
  return failed ? 1 : 0;
}
