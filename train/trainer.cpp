// train/trainer.cpp: training options, the optimiser step, validation, the
// run loop and checkpoint restore (see train/trainer.h).
#include "train/trainer.h"

#include <algorithm>
#include <cmath>
#include <cstdio>
#include <cstring>
#include <limits>
#include <sstream>
#include <type_traits>
#include <utility>

#include "autograd/ops.h"
#include "nn/cross_entropy.h"
#include "ssm/simba_forward.h"
#include "tensor/blas_core.h"
#include "tensor/error.h"
#include "train/gradient_buckets.h"

namespace simba {

namespace {

// Calls f(key, flag, shapes_trajectory, o.field...) for every field of
// TrainOptions, passing that field of each of the objects `o` (const or not).
// key is the JSON name, flag the `simba train` option; shapes_trajectory
// marks the fields a resumed run must keep, because the parameters after
// step n depend on them (steps is checked on its own: a resumed run may
// extend it).
template <class F, class... Options>
void for_each_option(F&& f, Options&... o) {
  f("batch_size", "--batch-size", true, o.batch_size...);
  f("seq_len", "--seq-len", true, o.seq_len...);
  f("grad_accum", "--grad-accum", true, o.grad_accum...);
  f("steps", "--steps", false, o.steps...);
  f("lr", "--lr", true, o.lr...);
  f("min_lr", "--min-lr", true, o.min_lr...);
  f("warmup_steps", "--warmup", true, o.warmup_steps...);
  f("weight_decay", "--weight-decay", true, o.weight_decay...);
  f("beta1", "--beta1", true, o.beta1...);
  f("beta2", "--beta2", true, o.beta2...);
  f("grad_clip", "--grad-clip", true, o.grad_clip...);
  f("seed", "--seed", true, o.seed...);
  f("val_fraction", "--val-fraction", true, o.val_fraction...);
  f("simba_min_context", "--simba-min-context", true, o.simba_min_context...);
  f("eval_every", "--eval-every", false, o.eval_every...);
  f("eval_batches", "--eval-batches", false, o.eval_batches...);
  f("save_every", "--save-every", false, o.save_every...);
  f("log_every", "--log-every", false, o.log_every...);
  f("out_dir", "--out", false, o.out_dir...);
  f("log_file", "--log-file", false, o.log_file...);
}

template <class T>
struct is_optional : std::false_type {};
template <class T>
struct is_optional<std::optional<T>> : std::true_type {};

// Whether JSON value v can be read as a T without loss.
template <class T>
bool json_holds(const nlohmann::json& v) {
  if constexpr (std::is_same_v<T, std::string>) return v.is_string();
  else if constexpr (std::is_floating_point_v<T>) return v.is_number();
  else if constexpr (std::is_unsigned_v<T>) return v.is_number_unsigned();
  else
    return v.is_number_integer() &&
           (!v.is_number_unsigned() || v.get<uint64_t>() <= static_cast<uint64_t>(std::numeric_limits<T>::max()));
}

template <class T>
const char* json_type_name() {
  if constexpr (std::is_same_v<T, std::string>) return "a string";
  else if constexpr (std::is_floating_point_v<T>) return "a number";
  else if constexpr (std::is_unsigned_v<T>) return "a non-negative integer";
  else return "an integer";
}

// Values as the error messages show them: JSON's shortest exact form, so two
// doubles that differ never print alike.
template <class T>
std::string show(const T& value) {
  return nlohmann::json(value).dump();
}

template <class T>
std::string show(const std::optional<T>& value) {
  return value ? show(*value) : "(default)";
}

bool all_finite(const Tensor& t) {
  for (double v : t.to_vector())
    if (!std::isfinite(v)) return false;
  return true;
}

// --simba as the checkpoint records and error messages show it.
std::string simba_text(const std::optional<SimbaOptions>& simba) {
  return simba ? simba->to_string() : "(none)";
}

uint64_t splitmix64(uint64_t x) {
  x += 0x9e3779b97f4a7c15ULL;
  x = (x ^ (x >> 30)) * 0xbf58476d1ce4e5b9ULL;
  x = (x ^ (x >> 27)) * 0x94d049bb133111ebULL;
  return x ^ (x >> 31);
}

// Mean cross-entropy of the continuation inputs[:, c:] given the pruned
// context inputs[:, :c] (docs/simba.md §3). The window's own inputs are the
// whole sequence, so every continuation target lies inside it; the batch's
// last target column is not used.
Variable simba_batch_loss(const MambaLM& model, const Batch& batch, int64_t context, const SimbaOptions& opt) {
  return continuation_loss(simba_forward(model, batch.inputs, context, opt), batch.inputs);
}

// Mean cross-entropy of the batch's next-token predictions, as a graph node.
Variable batch_loss(const MambaLM& model, const Batch& batch) { return model.loss(batch.inputs, batch.targets); }

TrainOptions validated(TrainOptions o) {
  o.validate();
  return o;
}

std::string thousands(int64_t n) {
  std::string digits = std::to_string(n);
  for (int i = static_cast<int>(digits.size()) - 3; i > 0; i -= 3) digits.insert(static_cast<size_t>(i), ",");
  return digits;
}

}  // namespace

MambaConfig demo_model_config() {
  MambaConfig c;
  c.vocab_size = 256;
  c.hidden_size = 128;
  c.num_hidden_layers = 4;
  c.state_size = 16;
  c.expand = 2;
  c.conv_kernel = 4;
  c.time_step_rank = MambaConfig::auto_time_step_rank(c.hidden_size);
  // mamba_ssm's official init scales out_proj by 1/sqrt(n_layer) (HF's config default is off).
  c.rescale_prenorm_residual = true;
  return c;
}

// ---------------------------------------------------------------- TrainOptions

void TrainOptions::validate() const {
  auto positive_int = [](const char* flag, int64_t v) {
    SIMBA_CHECK(v >= 1, flag << " must be >= 1, got " << v);
  };
  auto non_negative_int = [](const char* flag, int64_t v) {
    SIMBA_CHECK(v >= 0, flag << " must be >= 0, got " << v);
  };
  positive_int("--batch-size", batch_size);
  positive_int("--seq-len", seq_len);
  positive_int("--grad-accum", grad_accum);
  positive_int("--steps", steps);
  SIMBA_CHECK(std::isfinite(lr) && lr > 0.0, "--lr must be a finite number > 0, got " << lr);
  const double min = resolved_min_lr();
  SIMBA_CHECK(std::isfinite(min) && min >= 0.0 && min <= lr,
              "--min-lr must be in [0, --lr] = [0, " << lr << "], got " << min);
  const int64_t warmup = resolved_warmup();
  SIMBA_CHECK(warmup >= 0 && warmup <= steps, "--warmup must be in [0, --steps] = [0, " << steps << "], got " << warmup);
  SIMBA_CHECK(std::isfinite(weight_decay) && weight_decay >= 0.0,
              "--weight-decay must be a finite number >= 0, got " << weight_decay);
  SIMBA_CHECK(beta1 >= 0.0 && beta1 < 1.0, "--beta1 must be in [0, 1), got " << beta1);
  SIMBA_CHECK(beta2 >= 0.0 && beta2 < 1.0, "--beta2 must be in [0, 1), got " << beta2);
  SIMBA_CHECK(std::isfinite(grad_clip) && grad_clip >= 0.0,
              "--grad-clip must be a finite number >= 0 (0 = no clipping), got " << grad_clip);
  SIMBA_CHECK(val_fraction > 0.0 && val_fraction < 1.0, "--val-fraction must be in (0, 1), got " << val_fraction);
  non_negative_int("--eval-every", eval_every);
  positive_int("--eval-batches", eval_batches);
  non_negative_int("--save-every", save_every);
  positive_int("--log-every", log_every);
  SIMBA_CHECK(!out_dir.empty(), "--out must name a directory, got an empty string");
  SIMBA_CHECK(shard_bytes > 0, "--shard-size must be a size in bytes > 0, got 0");
  SIMBA_CHECK(dtype == DType::F32 || dtype == DType::BF16,
              "--dtype must be float32 or bfloat16, got " << dtype_name(dtype));
  if (simba) {
    simba->validate("--simba");
    const int64_t c = resolved_simba_min_context();
    SIMBA_CHECK_HINT(c >= 1 && c <= seq_len - 1,
                     "--simba-min-context must be in [1, --seq-len - 1] = [1, " << seq_len - 1 << "], got " << c,
                     "a window of --seq-len tokens is split into a context of at least one token and a "
                     "continuation of at least one");
  }
}

nlohmann::json TrainOptions::to_json() const {
  TrainOptions r = *this;
  r.min_lr = resolved_min_lr();
  r.warmup_steps = resolved_warmup();
  r.simba_min_context = resolved_simba_min_context();
  nlohmann::json j = nlohmann::json::object();
  for_each_option([&](const char* key, const char*, bool, const auto& value) {
    if constexpr (is_optional<std::decay_t<decltype(value)>>::value) j[key] = *value;
    else j[key] = value;
  }, r);
  j["simba"] = simba ? nlohmann::json(simba->to_string()) : nlohmann::json(nullptr);
  j["dtype"] = dtype_name(dtype);
  return j;
}

TrainOptions TrainOptions::from_json(const nlohmann::json& j, const std::string& source) {
  SIMBA_CHECK(j.is_object(), source << ": training options must be a JSON object, got " << j.type_name());
  TrainOptions o;
  for_each_option([&](const char* key, const char*, bool, auto& field) {
    using Field = std::decay_t<decltype(field)>;
    auto it = j.find(key);
    SIMBA_CHECK(it != j.end(), source << ": training options have no '" << key << "'");
    if constexpr (is_optional<Field>::value) {
      using T = typename Field::value_type;
      SIMBA_CHECK(json_holds<T>(*it), source << ": training option '" << key << "' must be " << json_type_name<T>()
                                             << ", got " << it->dump());
      field = it->template get<T>();
    } else {
      SIMBA_CHECK(json_holds<Field>(*it), source << ": training option '" << key << "' must be "
                                                 << json_type_name<Field>() << ", got " << it->dump());
      field = it->template get<Field>();
    }
  }, o);
  auto it = j.find("simba");
  SIMBA_CHECK(it != j.end(), source << ": training options have no 'simba'");
  SIMBA_CHECK(it->is_null() || it->is_string(),
              source << ": training option 'simba' must be null or a string, got " << it->dump());
  if (it->is_string()) o.simba = parse_simba_options(it->get<std::string>(), source + " option 'simba'");
  // Runs saved before --dtype existed trained in float32.
  it = j.find("dtype");
  if (it != j.end()) {
    const bool known = it->is_string() && (*it == dtype_name(DType::F32) || *it == dtype_name(DType::BF16));
    SIMBA_CHECK(known, source << ": training option 'dtype' must be \"float32\" or \"bfloat16\", got " << it->dump());
    o.dtype = *it == dtype_name(DType::BF16) ? DType::BF16 : DType::F32;
  }
  return o;
}

void TrainOptions::check_resumable(const TrainOptions& saved, int64_t saved_step, const std::string& source) const {
  TrainOptions mine = *this, theirs = saved;
  for (TrainOptions* o : {&mine, &theirs}) {
    o->min_lr = o->resolved_min_lr();
    o->warmup_steps = o->resolved_warmup();
    o->simba_min_context = o->resolved_simba_min_context();
  }
  const std::string simba_mine = simba_text(simba), simba_theirs = simba_text(saved.simba);
  SIMBA_CHECK_HINT(simba_mine == simba_theirs,
                   "--simba is " << simba_mine << ", but the run in '" << source << "' was trained with --simba "
                                 << simba_theirs,
                   "a resumed run continues the original only with the same optimisation flags; leave --simba "
                   "out to use the checkpoint's value, or start a new run");
  SIMBA_CHECK_HINT(dtype == saved.dtype,
                   "--dtype is " << dtype_name(dtype) << ", but the run in '" << source << "' was trained with --dtype "
                                 << dtype_name(saved.dtype),
                   "a resumed run continues the original only with the same optimisation flags; leave --dtype "
                   "out to use the checkpoint's value, or start a new run");
  for_each_option([&](const char*, const char* flag, bool shapes_trajectory, const auto& value, const auto& other) {
    SIMBA_CHECK_HINT(!shapes_trajectory || value == other,
                     flag << " is " << show(value) << ", but the run in '" << source << "' was trained with " << flag
                          << " " << show(other),
                     "a resumed run continues the original only with the same optimisation flags; leave "
                         << flag << " out to use the checkpoint's value, or start a new run");
  }, mine, theirs);
  SIMBA_CHECK(steps >= saved_step, "--steps " << steps << " is below the step of the checkpoint in '" << source
                                              << "' (" << saved_step << "): that run is already past it");
}

TrainOptions TrainOptions::overridden_by(const TrainOptions& given, const std::set<std::string>& flags) const {
  TrainOptions out = *this;
  for_each_option([&](const char*, const char* flag, bool, auto& field, const auto& value) {
    if (flags.count(flag)) field = value;
  }, out, given);
  if (flags.count("--simba")) out.simba = given.simba;
  if (flags.count("--dtype")) out.dtype = given.dtype;
  return out;
}

int64_t simba_split_point(const TrainOptions& options, int64_t step, int64_t micro_batch) {
  const int64_t m = options.resolved_simba_min_context();
  SIMBA_CHECK(m >= 1 && m < options.seq_len,
              "simba_split_point: --simba-min-context " << m << " is outside [1, --seq-len - 1] = [1, "
                                                         << options.seq_len - 1 << "]");
  const uint64_t h = splitmix64(splitmix64(splitmix64(options.seed) ^ static_cast<uint64_t>(step)) ^
                                static_cast<uint64_t>(micro_batch));
  return m + static_cast<int64_t>(h % static_cast<uint64_t>(options.seq_len - m));
}

bool is_no_decay_parameter(const std::string& name) {
  auto ends_with = [&](const std::string& suffix) {
    return name.size() >= suffix.size() && name.compare(name.size() - suffix.size(), suffix.size(), suffix) == 0;
  };
  return ends_with("norm.weight") || ends_with("norm_f.weight") || ends_with(".bias") || ends_with(".A_log") ||
         ends_with(".D");
}

std::vector<double> mean_losses(const std::vector<Tensor>& micro_batch_losses) {
  if (micro_batch_losses.empty()) return {};
  // Gathered into one float64 tensor on their device (copies queued there), then read at once.
  int64_t total = 0;
  for (const Tensor& t : micro_batch_losses) total += t.numel();
  const Tensor all = Tensor::empty({total}, DType::F64, micro_batch_losses.front().device());
  int64_t offset = 0;
  for (const Tensor& t : micro_batch_losses) {
    all.narrow(0, offset, t.numel()).copy_(t.reshape({t.numel()}));
    offset += t.numel();
  }
  const std::vector<double> values = all.to_vector();
  std::vector<double> means;
  offset = 0;
  for (const Tensor& t : micro_batch_losses) {
    double sum = 0.0;
    for (int64_t i = 0; i < t.numel(); ++i) sum += values[static_cast<size_t>(offset + i)];
    means.push_back(sum * (1.0 / static_cast<double>(t.numel())));
    offset += t.numel();
  }
  return means;
}

ValidationResult evaluate(const MambaLM& model, const TextData& data, int64_t B, int64_t L, int64_t max_batches) {
  NoGradGuard no_grad;
  const Device device = model.device();
  double total = 0.0;  // Σ per-token nats in double over every batch
  int64_t bytes = 0;   // bytes of text the scored targets stand for
  ValidationResult r;
  for (const Batch& batch : data.validation_batches(B, L, max_batches)) {
    const Tensor logits = model.forward(batch.inputs.to(device)).data();  // (B, L, V)
    for (double loss : cross_entropy_rows(logits, batch.targets.to(device)).to_vector()) total += loss;
    r.tokens += batch.targets.numel();
    bytes += data.text_bytes(batch.targets);
    ++r.batches;
  }
  r.loss = total / static_cast<double>(r.tokens);
  // Bits per byte of the text the targets spell: one byte per token for bytes, ~4 for GPT-NeoX BPE.
  r.bits_per_byte = bits_per_byte(r.loss, static_cast<double>(bytes) / static_cast<double>(r.tokens));
  return r;
}

// ---------------------------------------------------------------- Trainer

Trainer::Trainer(TrainOptions options, std::shared_ptr<MambaLM> model, TextData data, Device device,
                 std::shared_ptr<Communicator> comm)
    : options_(validated(std::move(options))),
      device_(device),
      model_(std::move(model)),
      data_(std::move(data)),
      schedule_(options_.lr, options_.resolved_min_lr(), options_.resolved_warmup(), options_.steps),
      norm_read_(device, 1),
      comm_(comm ? std::move(comm) : std::make_shared<SingleProcessCommunicator>()) {
  SIMBA_CHECK(model_ != nullptr, "Trainer: no model given");
  const int world = comm_->world_size();
  SIMBA_CHECK_HINT(options_.batch_size % world == 0,
                   "--batch-size " << options_.batch_size << " is not a multiple of the number of GPUs (--gpus) "
                                   << world,
                   "--batch-size counts the windows of a micro-batch over all GPUs, each taking an equal share; "
                   "pick a multiple of " << world);
  data_.check_window(Split::Train, options_.seq_len);
  data_.check_window(Split::Validation, options_.seq_len);
  data_.check_vocab(model_->config().vocab_size);
  // Before the optimiser exists, so that its state is made beside the parameters.
  model_->to(device_);
  for (const Variable& p : model_->parameters()) comm_->broadcast(p.data(), 0);
  if (options_.dtype == DType::BF16) {
    compute_ = MambaLM::unset(model_->config(), DType::BF16);
    compute_->to(device_);
    refresh_compute_copy();
  }
  AdamWOptions adamw;
  adamw.lr = options_.lr;
  adamw.beta1 = options_.beta1;
  adamw.beta2 = options_.beta2;
  optimizer_ = std::make_unique<AdamW>(split_decay_groups(*model_, options_.weight_decay, is_no_decay_parameter), adamw);
  if (compute_) {  // each step's update writes the compute copy in the same pass
    NamedTensors copies;
    for (const auto& [name, p] : compute_->named_parameters()) copies.emplace_back(name, p.data());
    optimizer_->set_bfloat16_copies(copies);
  }
}

Batch Trainer::next_batch() {
  // The whole micro-batch is drawn on every rank (a few random numbers), so the cursor stays global.
  Batch host = data_.next_train_batch(options_.batch_size, options_.seq_len);
  if (comm_->world_size() > 1) {
    const int64_t rows = options_.batch_size / comm_->world_size(), first = comm_->rank() * rows;
    host = {host.inputs.narrow(0, first, rows), host.targets.narrow(0, first, rows)};
  }
  if (device_.is_cpu()) return host;
  // Inputs and targets go up in one staged copy (a second would wait for the first) into one
  // device buffer, viewed as the two tensors.
  const Tensor inputs = host.inputs.contiguous(), targets = host.targets.contiguous();
  const int64_t n = inputs.numel(), m = targets.numel();
  std::vector<int64_t> both(static_cast<size_t>(n + m));
  std::memcpy(both.data(), inputs.data<int64_t>(), static_cast<size_t>(n) * sizeof(int64_t));
  std::memcpy(both.data() + n, targets.data<int64_t>(), static_cast<size_t>(m) * sizeof(int64_t));
  const Tensor up = Tensor::empty({n + m}, DType::I64, device_);
  cuda_upload_staged(up.device_data<int64_t>(), device_.index, both.data(), both.size() * sizeof(int64_t));
  return {up.narrow(0, 0, n).view(inputs.shape()), up.narrow(0, n, m).view(targets.shape())};
}

void Trainer::refresh_compute_copy() {
  const auto master = model_->named_parameters();
  auto copy = compute_->named_parameters();
  for (size_t i = 0; i < master.size(); ++i) copy[i].second.data().copy_(master[i].second.data());
}

Tensor Trainer::accumulate_gradients() {
  optimizer_->zero_grad();
  const MambaLM& model = compute_model();
  const double scale = 1.0 / static_cast<double>(options_.grad_accum);
  const Tensor losses = Tensor::empty({options_.grad_accum}, DType::F64, device_);
  // With several ranks the gradients are averaged bucket by bucket while the last micro-batch's
  // backward runs (train/gradient_buckets.h): a gradient is final when that backward is done
  // with it. Under --dtype bfloat16 the final gradient of a master parameter is its compute
  // copy's, widened, so the copy's notice widens it and passes the master's on.
  const NamedVariables master = model_->named_parameters();
  const NamedVariables copy = compute_ ? compute_->named_parameters() : NamedVariables{};
  std::unordered_map<const VariableImpl*, size_t> index_of;  // a compute copy's parameter -> its index
  for (size_t k = 0; k < copy.size(); ++k) index_of[copy[k].second.impl().get()] = k;
  GradientReducer reducer(*comm_, model_->parameters());
  auto widen = [&](size_t k) { widen_gradients({{copy[k].second, master[k].second}}); };
  const LeafDone leaf_done = [&](const VariableImpl& leaf) {
    if (!compute_) return reducer.leaf_done(leaf);
    auto it = index_of.find(&leaf);
    if (it == index_of.end()) return;
    widen(it->second);
    reducer.leaf_done(*master[it->second].second.impl());
  };
  for (int64_t i = 0; i < options_.grad_accum; ++i) {
    const Batch batch = next_batch();
    const Variable loss =
        options_.simba
            ? simba_batch_loss(model, batch, simba_split_point(options_, step_, i), *options_.simba)
            : batch_loss(model, batch);
    losses.narrow(0, i, 1).copy_(loss.data().reshape({1}));  // stays on the device
    const bool last = i + 1 == options_.grad_accum;
    // The gradient of the mean over micro-batches.
    (loss * scale).backward(Tensor(), false, last && comm_->world_size() > 1 ? leaf_done : nullptr);
  }
  if (compute_) {  // the copies backward did not report (all of them with one rank, which asks for no reports)
    std::vector<std::pair<Variable, Variable>> pending;
    for (size_t k = 0; k < copy.size(); ++k)
      if (copy[k].second.grad().defined()) pending.emplace_back(copy[k].second, master[k].second);
    widen_gradients(pending);  // one kernel call for all of them
  }
  reducer.finish();
  all_reduce_mean(*comm_, losses);
  return losses;
}

StepStats Trainer::train_step() {
  SIMBA_CHECK(step_ < options_.steps,
              "train_step: the run is complete (" << step_ << " of --steps " << options_.steps << " done)");
  Stopwatch clock;
  StepStats s;
  s.lr = schedule_.lr(step_);
  s.losses = accumulate_gradients();
  // The norm and the update's scale stay on the device: the scale clips the gradients inside the
  // update's pass, and a non-finite norm makes it NaN, which skips the update there.
  const GradientNorm g = gradient_norm(model_->parameters(), options_.grad_clip > 0.0
                                                                 ? options_.grad_clip
                                                                 : std::numeric_limits<double>::infinity());
  // The previous step's norm has long arrived: this step's work keeps the device busy meanwhile.
  check_step();
  norm_read_.queue(g.norm);
  unchecked_ = UncheckedStep{step_ + 1, s.lr, s.losses};
  optimizer_->set_grad_scale(g.scale);
  optimizer_->set_lr(s.lr);
  optimizer_->step();  // under --dtype bfloat16 it refreshes the compute copy too
  s.grad_norm = g.norm;
  s.step = ++step_;
  s.tokens = options_.grad_accum * options_.batch_size * options_.seq_len;
  s.seconds = clock.seconds();
  return s;
}

void Trainer::check_step() {
  if (!unchecked_) return;
  const UncheckedStep u = *unchecked_;
  unchecked_.reset();
  const double norm = norm_read_.wait()[0];
  if (std::isfinite(norm)) return;
  // The device skipped the update; the host's counts are taken back, so the Trainer stands
  // where it stood before that step.
  optimizer_->retract_step();
  step_ = u.step - 1;
  const double loss = mean_losses({u.losses})[0];  // the run stops: reading it costs nothing that matters
  SIMBA_FAIL_HINT("training stopped at step " << u.step << ": "
                      << (std::isfinite(loss) ? "the gradient norm" : "the loss") << " is not finite (loss " << loss
                      << ", gradient norm " << norm << "); no parameter was updated",
                  stopped_hint(u.lr));
}

ValidationResult Trainer::validate() const {
  return evaluate(*model_, data_, options_.batch_size, options_.seq_len, options_.eval_batches);
}

std::string Trainer::stopped_hint(double step_lr) const {
  std::ostringstream hint;
  hint << "lower the learning rate (--lr " << options_.lr << ", this step's lr " << step_lr << ") or check the data; ";
  if (last_saved_step_ >= 0)
    hint << "the last good checkpoint, '" << checkpoint_dir(options_.out_dir) << "' (step " << last_saved_step_
         << "), was kept";
  else
    hint << "no checkpoint had been written yet";
  return hint.str();
}

void Trainer::save_checkpoint() {
  check_step();
  // The checkpoint rule of train/trainer.h. The losses of the steps since the
  // last checkpoint were finite (train_step and Trainer::run check them), but
  // each was taken before its step's update: only a loss of the weights
  // themselves shows whether the last update blew them up. The files get host
  // copies of the parameters and the optimiser state (save_safetensors), the
  // same bytes whatever device the run is on.
  const double step_lr = schedule_.lr(std::max<int64_t>(step_ - 1, 0));
  for (const auto& [name, p] : model_->named_parameters())
    SIMBA_CHECK_HINT(all_finite(p.data()),
                     "refusing to save a checkpoint at step " << step_ << ": parameter '" << name
                                                              << "' holds NaN or Inf",
                     stopped_hint(step_lr));
  const int64_t V = model_->config().vocab_size;
  const double bound = 2.0 * std::log(static_cast<double>(V));
  const double loss = evaluate(*model_, data_, options_.batch_size, options_.seq_len, 1).loss;
  SIMBA_CHECK_HINT(std::isfinite(loss) && loss <= bound,
                   "training stopped at step " << step_ << ": the model has diverged: its loss on the first "
                       << "validation batch is " << loss << " nats/token, and a checkpoint needs a finite loss of at "
                       << "most 2 ln V = " << bound << " (twice that of a uniform guess over the " << V
                       << " tokens of the vocabulary); the checkpoint of step " << step_ << " was not written",
                   stopped_hint(step_lr));
  TrainingState state;
  state.step = step_;
  state.data_cursor = data_.cursor_state();
  state.options = options_.to_json();
  state.elapsed_seconds = elapsed_seconds();
  state.optimizer = optimizer_->state_tensors();
  state.tokenizer_json = tokenizer_json_;
  if (comm_->world_size() == 1) {
    simba::save_checkpoint(checkpoint_dir(options_.out_dir), *model_, state, options_.shard_bytes);
  } else {
    // Rank 0 writes; its outcome is broadcast, so that no rank carries on past a checkpoint that failed.
    Tensor written = Tensor::zeros({1}, DType::F64, device_);
    if (comm_->rank() == 0) {
      try {
        simba::save_checkpoint(checkpoint_dir(options_.out_dir), *model_, state, options_.shard_bytes);
      } catch (...) {
        comm_->broadcast(written, 0);
        throw;
      }
      written.fill_(1.0);
    }
    comm_->broadcast(written, 0);
    SIMBA_CHECK(written.item() == 1.0, "rank " << comm_->rank() << ": rank 0 failed to write the checkpoint of step "
                                               << step_ << " (its error says why)");
  }
  last_saved_step_ = step_;
}

void Trainer::restore(const Checkpoint& c) {
  const nlohmann::json mine = model_->config().to_json(), theirs = c.config.to_json();
  for (const auto& [key, value] : mine.items())
    SIMBA_CHECK_HINT(theirs.contains(key) && theirs[key] == value,
                     "checkpoint '" << c.dir << "' holds a model with " << key << " = "
                                    << (theirs.contains(key) ? theirs[key].dump() : "(none)")
                                    << ", but this run's model has " << key << " = " << value.dump(),
                     "resume with the model of the checkpoint (simba train --resume reads its config.json)");
  const TrainOptions saved = TrainOptions::from_json(c.state.options, "'" + c.state_path + "' metadata 'options'");
  options_.check_resumable(saved, c.state.step, c.state_path);
  try {
    optimizer_->load_state(c.state.optimizer);
  } catch (const Error& e) {
    SIMBA_FAIL_HINT("'" << c.state_path << "': " << e.message(), e.hint());
  }
  SIMBA_CHECK(optimizer_->step_count() == c.state.step,
              "'" << c.state_path << "': the optimiser state has taken " << optimizer_->step_count()
                  << " steps, but the metadata says step " << c.state.step);
  model_->load_tensors(c.weights, c.weights_path);
  if (compute_) refresh_compute_copy();
  data_.set_cursor_state(c.state.data_cursor);
  step_ = c.state.step;
  last_saved_step_ = step_;
  elapsed_before_ = c.state.elapsed_seconds;
  tokenizer_json_ = c.state.tokenizer_json;
  session_clock_.reset();
  unchecked_.reset();
}

ValidationResult Trainer::run(std::ostream& lead_out) {
  // Rank 0 alone prints and keeps the log; the others discard their output (a stream without a buffer).
  const bool lead = comm_->rank() == 0;
  std::ostream discard(nullptr);
  std::ostream& out = lead ? lead_out : discard;
  std::optional<MetricsLog> metrics;
  if (lead) metrics.emplace(options_.resolved_log_file(), step_);
  auto log_write = [&](const nlohmann::json& record) {
    if (metrics) metrics->write(record);
  };
  const MambaConfig& cfg = model_->config();
  const int64_t tokens_per_step = options_.grad_accum * options_.batch_size * options_.seq_len;
  char line[320];
  std::snprintf(line, sizeof line,
                "model: %.2fM parameters (hidden %lld, %lld layers, state %lld, expand %lld, conv %lld, dt rank %lld, "
                "vocab %lld)\n",
                static_cast<double>(model_->num_parameters()) / 1e6, static_cast<long long>(cfg.hidden_size),
                static_cast<long long>(cfg.num_hidden_layers), static_cast<long long>(cfg.state_size),
                static_cast<long long>(cfg.expand), static_cast<long long>(cfg.conv_kernel),
                static_cast<long long>(cfg.time_step_rank), static_cast<long long>(cfg.vocab_size));
  out << line;
  out << "cpu: OpenBLAS core " << blas_core_description() << "\n";
  out << "device: " << device_.str();
  if (!device_.is_cpu()) out << " (" << cuda_device_name(device_.index) << ")";
  out << "\n";
  out << "data: '" << data_.source() << "': " << thousands(static_cast<int64_t>(data_.tokens(Split::Train).size()))
      << " train + " << thousands(static_cast<int64_t>(data_.tokens(Split::Validation).size()))
      << " validation tokens\n";
  std::snprintf(line, sizeof line,
                "training: %lld steps x %s tokens (batch %lld x seq %lld x accum %lld), lr %.2e -> %.2e, warmup %lld, "
                "weight decay %g, clip %g, seed %llu\n",
                static_cast<long long>(options_.steps), thousands(tokens_per_step).c_str(),
                static_cast<long long>(options_.batch_size), static_cast<long long>(options_.seq_len),
                static_cast<long long>(options_.grad_accum), options_.lr, options_.resolved_min_lr(),
                static_cast<long long>(options_.resolved_warmup()), options_.weight_decay, options_.grad_clip,
                static_cast<unsigned long long>(options_.seed));
  out << line;
  if (comm_->world_size() > 1)
    out << "data parallel: " << comm_->world_size() << " ranks, " << options_.batch_size / comm_->world_size()
        << " windows each per micro-batch, gradients averaged\n";
  if (compute_)
    out << "precision: bfloat16 forward and backward on a copy of the float32 master weights (AdamW state, "
           "clipping, validation and checkpoints in float32)\n";
  if (options_.simba)
    out << "simba: " << options_.simba->to_string() << ", context split uniform in ["
        << options_.resolved_simba_min_context() << ", " << options_.seq_len - 1
        << "], loss on the continuation; validation dense\n";
  if (step_ > 0) out << "resuming from '" << checkpoint_dir(options_.out_dir) << "' at step " << step_ << "\n";
  log_write({{"event", step_ == 0 ? "start" : "resume"},
             {"step", step_},
             {"data", data_.source()},
             {"parameters", model_->num_parameters()},
             {"model", cfg.to_json()},
             {"options", options_.to_json()}});

  auto report_validation = [&](const ValidationResult& v) {
    std::snprintf(line, sizeof line, "validation bits/byte: %.4f  (loss %.4f nats/token, step %lld, %s tokens)\n",
                  v.bits_per_byte, v.loss, static_cast<long long>(step_), thousands(v.tokens).c_str());
    out << line << std::flush;
    log_write({{"step", step_}, {"val_loss", v.loss}, {"val_bpb", v.bits_per_byte}, {"elapsed", elapsed_seconds()}});
  };

  ValidationResult last_validation = validate();
  report_validation(last_validation);
  const int64_t start_step = step_;
  double interval_loss = 0.0, interval_seconds = 0.0;
  int64_t interval_steps = 0, interval_tokens = 0;
  // The wall time of the steps since the last progress line, validations and checkpoints left
  // out: interval_seconds up to the last of those, interval_clock since. (A step's own
  // StepStats::seconds ends before the device has finished it.)
  Stopwatch interval_clock;
  // The steps whose losses are still on the device, each with the run time at its end. Their
  // records are written, in step order, when the losses are read: before a progress line, a
  // validation, a checkpoint, or an error that stops the run.
  std::vector<std::pair<StepStats, double>> pending;
  auto log_pending = [&] {
    std::vector<Tensor> values;  // every pending step's losses, then their gradient norms
    for (const auto& [s, elapsed] : pending) values.push_back(s.losses);
    for (const auto& [s, elapsed] : pending) values.push_back(s.grad_norm);
    const std::vector<double> v = mean_losses(values);  // one read for all of them
    const size_t n = pending.size();
    for (size_t i = 0; i < n; ++i) {
      const StepStats& s = pending[i].first;
      log_write({{"step", s.step},
                 {"loss", v[i]},
                 {"lr", s.lr},
                 {"grad_norm", v[n + i]},
                 {"tokens_per_sec", static_cast<double>(s.tokens) / s.seconds},
                 {"elapsed", pending[i].second}});
      SIMBA_CHECK_HINT(std::isfinite(v[i]), "training stopped at step " << step_ << ": the loss of step " << s.step
                                                << " is not finite (" << v[i] << ")",
                       stopped_hint(s.lr));
      interval_loss += v[i];
      interval_tokens += s.tokens;
      ++interval_steps;
    }
    pending.clear();
  };
  // Runs train_step or check_step; when one reports a failed step, the records of the steps
  // before it are written before the error goes on.
  auto reporting = [&](auto&& f) {
    try {
      f();
    } catch (const Error&) {
      pending.erase(std::remove_if(pending.begin(), pending.end(),
                                   [&](const std::pair<StepStats, double>& p) { return p.first.step > step_; }),
                    pending.end());
      log_pending();
      throw;
    }
  };
  // Before the run's state is read: the last step checked, the pending records written.
  auto settle = [&] {
    reporting([&] { check_step(); });
    log_pending();
  };
  while (step_ < options_.steps) {
    StepStats taken;
    reporting([&] { taken = train_step(); });
    pending.emplace_back(taken, elapsed_seconds());
    const int64_t step = pending.back().first.step;
    const double lr = pending.back().first.lr;
    if (step % options_.log_every == 0 || step == options_.steps) {
      settle();
      interval_seconds += interval_clock.seconds();
      // The loss shown is the mean over the steps since the last line: one step's loss is noisy.
      out << progress_line(step, options_.steps, interval_loss / static_cast<double>(interval_steps),
                           static_cast<double>(interval_tokens) / interval_seconds, elapsed_seconds(), lr)
          << "\n"
          << std::flush;
      interval_loss = interval_seconds = 0.0;
      interval_steps = interval_tokens = 0;
      interval_clock.reset();
    }
    if (step == options_.steps) break;  // the final validation and checkpoint follow the loop
    if (options_.eval_every > 0 && step % options_.eval_every == 0) {
      settle();
      interval_seconds += interval_clock.seconds();
      report_validation(validate());
      interval_clock.reset();
    }
    if (options_.save_every > 0 && step % options_.save_every == 0) {
      settle();
      interval_seconds += interval_clock.seconds();
      save_checkpoint();
      interval_clock.reset();
    }
  }
  // A resumed run that was already complete has taken no step: the first
  // validation scored the final weights, and logging it twice would repeat the step.
  if (step_ > start_step) {
    last_validation = validate();
    report_validation(last_validation);
  }
  save_checkpoint();
  out << "checkpoint: '" << checkpoint_dir(options_.out_dir) << "' (step " << step_ << ")\n" << std::flush;
  return last_validation;
}

}  // namespace simba
