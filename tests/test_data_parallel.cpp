// tests/test_data_parallel.cpp: data-parallel training on the CPU
// (train/trainer.h, "Data parallelism"): the thread communicator, bucketed
// gradient averaging, the trainer with W ranks against one process with the
// same global batch, resume across world sizes, and the --gpus launcher's
// checks (its workers need GPUs, so only its environment and errors are tested).
//
// W = 1 claims are bitwise. W = 2 adds each gradient as two half-batch sums
// instead of one, a float32 rounding difference: those claims use a relative
// tolerance, and also check that the runs did move (so equality is not vacuous).
#include <doctest/doctest.h>

#include <cmath>
#include <cstdlib>
#include <filesystem>
#include <sstream>

#include "autograd/ops.h"
#include "tensor/file_io.h"
#include "tests/test_util.h"
#include "tests/trainer_state_check.h"
#include "train/byte_tokenizer.h"
#include "train/cli.h"
#include "train/gradient_buckets.h"
#include "train/launcher.h"
#include "train/thread_communicator.h"
#include "train/train_state.h"
#include "train/trainer.h"

using namespace simba;

namespace {

const TempDir g_tmp("test_data_parallel");

TrainOptions tiny_options(const std::string& out_name) {
  TrainOptions o;
  o.batch_size = 4;
  o.seq_len = 16;
  o.grad_accum = 2;
  o.steps = 6;
  o.lr = 1e-2;
  o.warmup_steps = 2;
  o.grad_clip = 0.5;  // small, so that clipping is active and measures the averaged gradient
  o.eval_batches = 1;
  o.out_dir = g_tmp.file(out_name);
  return o;
}

std::unique_ptr<Trainer> make_trainer(const TrainOptions& o, std::shared_ptr<Communicator> comm = nullptr,
                                      uint64_t model_seed = 5) {
  return std::make_unique<Trainer>(o, std::make_shared<MambaLM>(tiny_train_config(), model_seed),
                                   TextData(ByteTokenizer().encode(toy_text()), o.val_fraction, o.seed, "toy text"),
                                   cpu(), std::move(comm));
}

// A non-owning shared_ptr to a rank's communicator (it outlives the trainer inside run_ranks).
std::shared_ptr<Communicator> borrow(Communicator& comm) { return {std::shared_ptr<Communicator>{}, &comm}; }

double loss_of(const StepStats& s) { return mean_losses({s.losses})[0]; }

// max |a - b| / max |b| over every element of every parameter and AdamW state tensor.
double max_relative_difference(const Trainer& a, const Trainer& b) {
  double worst = 0.0;
  auto compare = [&](const Tensor& x, const Tensor& y) {
    const std::vector<double> vx = x.to_vector(), vy = y.to_vector();
    REQUIRE(vx.size() == vy.size());
    double diff = 0.0, scale = 0.0;
    for (size_t i = 0; i < vx.size(); ++i) {
      diff = std::max(diff, std::abs(vx[i] - vy[i]));
      scale = std::max(scale, std::abs(vy[i]));
    }
    if (scale > 0.0) worst = std::max(worst, diff / scale);
  };
  for (const auto& [name, t] : a.model().state_tensors()) compare(t, b.model().state_tensors().at(name));
  const NamedTensors sa = a.optimizer().state_tensors(), sb = b.optimizer().state_tensors();
  for (size_t i = 0; i < sa.size(); ++i) compare(sa[i].second, sb[i].second);
  return worst;
}

// Copies of rank 0's results out of run_ranks.
struct RankResults {
  std::vector<double> losses;
  std::unique_ptr<Trainer> trainer;
};

}  // namespace

TEST_CASE("thread communicator: sums in rank order, broadcasts, and fails all ranks alike") {
  SUBCASE("the sum is ((t0 + t1) + t2) in float32 on every rank, an order the result shows") {
    // 1e8 + 1 rounds to 1e8 in float32: rank order gives (1e8 + 1) - 1e8 = 0, any other order 1.
    const std::vector<double> values = {1e8, 1.0, -1e8};
    std::vector<double> got(3, -1.0);
    run_ranks(3, [&](Communicator& comm) {
      const Tensor t = Tensor::full({2}, values[static_cast<size_t>(comm.rank())], DType::F32);
      comm.all_reduce_sum(t);
      got[static_cast<size_t>(comm.rank())] = t.to_vector()[1];
    });
    CHECK(got == std::vector<double>{0.0, 0.0, 0.0});
  }
  SUBCASE("all_reduce_mean divides by the world size; broadcast copies the root's") {
    std::vector<double> mean(2), root(2);
    run_ranks(2, [&](Communicator& comm) {
      const Tensor t = Tensor::from_vector({2}, {comm.rank() == 0 ? 1.0 : 4.0, 8.0}, DType::F64);
      all_reduce_mean(comm, t);
      const Tensor b = Tensor::full({3}, static_cast<double>(comm.rank() + 7), DType::F32);
      comm.broadcast(b, 1);
      comm.barrier();
      mean[static_cast<size_t>(comm.rank())] = t.to_vector()[0] + t.to_vector()[1];
      root[static_cast<size_t>(comm.rank())] = b.to_vector()[2];
    });
    CHECK(mean == std::vector<double>{10.5, 10.5});
    CHECK(root == std::vector<double>{8.0, 8.0});
  }
  SUBCASE("a shape mismatch is an error on every rank, naming both shapes") {
    const std::string e = error_of([] {
      run_ranks(2, [](Communicator& comm) { comm.all_reduce_sum(Tensor::zeros({comm.rank() + 1})); });
    });
    CHECK(contains(e, "all_reduce_sum: rank 1 posted a float32 tensor of shape (2,), rank 0 a float32 one of shape (1,)"));
  }
  SUBCASE("a rank that throws stops the others waiting in a collective; its own error is rethrown") {
    const std::string e = error_of([] {
      run_ranks(3, [](Communicator& comm) {
        SIMBA_CHECK(comm.rank() != 2, "rank 2 broke");
        comm.all_reduce_sum(Tensor::zeros({1}));
      });
    });
    CHECK(contains(e, "rank 2 broke"));
  }
}

TEST_CASE("gradient buckets: every gradient becomes the mean over ranks, whatever the bucket size") {
  for (size_t bucket_bytes : {size_t{4}, size_t{20}, kGradientBucketBytes}) {
    INFO("bucket bytes " << bucket_bytes);
    std::vector<std::vector<double>> seen(2);
    run_ranks(2, [&](Communicator& comm) {
      const double r = comm.rank();
      Variable a(Tensor::zeros({2, 2}), true), b(Tensor::zeros({3}), true), c(Tensor::zeros({1}), true);
      a.set_grad(Tensor::from_vector({2, 2}, {1 + r, 2 + r, 3 + r, 4 + r}));
      c.set_grad(Tensor::from_vector({1}, {10 * r}));
      if (comm.rank() == 1) b.set_grad(Tensor::from_vector({3}, {2, 4, 6}));  // rank 0 has none: zero
      all_reduce_gradients(comm, {a, b, c}, bucket_bytes);
      std::vector<double> all;
      for (const Variable& v : {a, b, c})
        for (double x : v.grad().to_vector()) all.push_back(x);
      seen[static_cast<size_t>(comm.rank())] = all;
    });
    const std::vector<double> expected = {1.5, 2.5, 3.5, 4.5, 1, 2, 3, 5};
    CHECK(seen[0] == expected);
    CHECK(seen[1] == expected);
  }
  SUBCASE("world size 1 leaves the gradient tensor itself in place") {
    Variable a(Tensor::zeros({2}), true);
    a.set_grad(Tensor::from_vector({2}, {1, 2}));
    const Tensor before = a.grad();
    SingleProcessCommunicator single;
    all_reduce_gradients(single, {a});
    CHECK(a.grad().shares_storage(before));
  }
}

TEST_CASE("gradient buckets overlap backward: the last layers' buckets are reduced before the first's gradients exist") {
  // y = w3·(w2·(w1·x)), one parameter a bucket (4-byte buckets); the log records each
  // parameter's leaf_done and each bucket's all-reduce as backward runs.
  std::vector<std::vector<std::string>> logs(2);
  std::vector<std::vector<double>> grads(2);
  run_ranks(2, [&](Communicator& comm) {
    const double r = comm.rank();
    Variable w1(Tensor::from_vector({2}, {1 + r, 2}), true), w2(Tensor::from_vector({2}, {3, 4 - r}), true);
    Variable w3(Tensor::from_vector({2}, {0.5, 5 + r}), true);
    const Variable x(Tensor::from_vector({2}, {1, -1}));
    std::vector<std::string>& log = logs[static_cast<size_t>(comm.rank())];
    const std::vector<Variable> params{w1, w2, w3};
    struct Logging final : Communicator {
      Communicator& inner;
      std::vector<std::string>& log;
      Logging(Communicator& c, std::vector<std::string>& l) : inner(c), log(l) {}
      int rank() const override { return inner.rank(); }
      int world_size() const override { return inner.world_size(); }
      void all_reduce_sum(const Tensor& t) override {
        log.push_back("reduce");
        inner.all_reduce_sum(t);
      }
      void broadcast(const Tensor& t, int root) override { inner.broadcast(t, root); }
      void barrier() override { inner.barrier(); }
    } logging(comm, log);
    GradientReducer reducer(logging, params, 4);
    const Variable y = sum(mul(w3, mul(w2, mul(w1, x))));
    y.backward(Tensor(), false, [&](const VariableImpl& leaf) {
      for (size_t k = 0; k < params.size(); ++k)
        if (&leaf == params[k].impl().get()) log.push_back("done w" + std::to_string(k + 1));
      reducer.leaf_done(leaf);
    });
    log.push_back("backward returned");
    reducer.finish();
    for (const Variable& v : params)
      for (double g : v.grad().to_vector()) grads[static_cast<size_t>(comm.rank())].push_back(g);
  });
  // Two buckets are reduced before backward reaches w1: backward and reduction overlap.
  const std::vector<std::string> expected = {"done w3", "reduce", "done w2", "reduce",
                                             "done w1", "reduce", "backward returned"};
  CHECK(logs[0] == expected);
  CHECK(logs[1] == expected);
  // The means over the two ranks: dy/dw1 = w2·w3·x, dy/dw2 = w1·w3·x, dy/dw3 = w1·w2·x.
  const std::vector<double> mean = {(3 * 0.5 + 3 * 0.5) / 2,      (-4 * 5 - 3 * 6) / 2.0,
                                    (1 * 0.5 + 2 * 0.5) / 2,      (-2 * 5 - 2 * 6) / 2.0,
                                    (1 * 3 + 2 * 3) / 2.0,        (-2 * 4 - 2 * 3) / 2.0};
  CHECK(grads[0] == mean);
  CHECK(grads[1] == mean);
}

TEST_CASE("data parallel, 2 ranks, bfloat16: the steps of one process within bfloat16 rounding") {
  // Under --dtype bfloat16 a parameter's final gradient is its compute copy's, widened when
  // backward reports the copy (train/trainer.cpp): every master gradient must still arrive.
  TrainOptions o = tiny_options("dp_w2_bf16_single");
  o.dtype = DType::BF16;
  auto single = make_trainer(o);
  std::vector<double> single_losses;
  for (int64_t i = 0; i < o.steps; ++i) single_losses.push_back(loss_of(single->train_step()));
  std::vector<std::vector<double>> losses(2);
  run_ranks(2, [&](Communicator& comm) {
    auto t = make_trainer(o, borrow(comm), comm.rank() == 0 ? 5 : 77);
    for (int64_t i = 0; i < o.steps; ++i) losses[static_cast<size_t>(comm.rank())].push_back(loss_of(t->train_step()));
  });
  CHECK(losses[0] == losses[1]);
  for (size_t i = 0; i < single_losses.size(); ++i) {
    INFO("step " << i + 1 << ": 2 ranks " << losses[0][i] << ", one process " << single_losses[i]);
    CHECK(std::abs(losses[0][i] - single_losses[i]) <= 2e-2 * single_losses[i]);
  }
  CHECK(std::abs(single_losses.back() - single_losses.front()) > 1e-3);  // it trained
}

TEST_CASE("data parallel, world size 1: bit-identical to the plain trainer, step by step") {
  const TrainOptions o = tiny_options("dp_w1_plain");
  auto plain = make_trainer(o);
  std::vector<double> plain_losses;
  for (int64_t i = 0; i < o.steps; ++i) plain_losses.push_back(loss_of(plain->train_step()));
  TrainOptions o1 = o;
  o1.out_dir = g_tmp.file("dp_w1_thread");
  RankResults got;
  run_ranks(1, [&](Communicator& comm) {
    auto t = make_trainer(o1, borrow(comm));
    for (int64_t i = 0; i < o1.steps; ++i) got.losses.push_back(loss_of(t->train_step()));
    got.trainer = std::move(t);
  });
  CHECK(got.losses == plain_losses);
  check_same_state(*plain, *got.trainer);
}

TEST_CASE("data parallel, 2 ranks: the steps of one process with the same global batch, within float32 rounding") {
  const TrainOptions o = tiny_options("dp_w2_single");
  auto single = make_trainer(o);
  std::vector<double> single_losses;
  for (int64_t i = 0; i < o.steps; ++i) single_losses.push_back(loss_of(single->train_step()));
  std::vector<std::unique_ptr<Trainer>> ranks(2);
  std::vector<std::vector<double>> losses(2);
  run_ranks(2, [&](Communicator& comm) {
    // Rank 1 starts from other weights: the broadcast of rank 0's must make them equal.
    auto t = make_trainer(o, borrow(comm), comm.rank() == 0 ? 5 : 77);
    for (int64_t i = 0; i < o.steps; ++i) losses[static_cast<size_t>(comm.rank())].push_back(loss_of(t->train_step()));
    ranks[static_cast<size_t>(comm.rank())] = std::move(t);
  });
  // The ranks agree bit for bit: same averaged gradients, same updates.
  check_same_state(*ranks[0], *ranks[1]);
  CHECK(losses[0] == losses[1]);
  for (size_t i = 0; i < single_losses.size(); ++i) {
    INFO("step " << i + 1 << ": 2 ranks " << losses[0][i] << ", one process " << single_losses[i]);
    CHECK(std::abs(losses[0][i] - single_losses[i]) <= 1e-6 * single_losses[i]);
  }
  CHECK(std::abs(single_losses.back() - single_losses.front()) > 1e-3);  // it trained
  const double rel = max_relative_difference(*ranks[0], *single);
  MESSAGE("2 ranks vs one process after " << o.steps << " steps: max relative difference " << rel);
  CHECK(rel <= 1e-5);
  CHECK(ranks[0]->data().cursor_state() == single->data().cursor_state());  // the cursor is global
}

TEST_CASE("data parallel: a run saved by 2 ranks resumes on 1, and one saved by 1 resumes on 2") {
  const int64_t K = 3;
  const TrainOptions o = tiny_options("dp_resume_straight");
  auto straight = make_trainer(o);
  for (int64_t i = 0; i < o.steps; ++i) straight->train_step();

  SUBCASE("2 ranks, then 1") {
    TrainOptions oa = o;
    oa.out_dir = g_tmp.file("dp_resume_2_to_1");
    std::filesystem::remove_all(oa.out_dir);
    run_ranks(2, [&](Communicator& comm) {
      auto t = make_trainer(oa, borrow(comm));
      for (int64_t i = 0; i < K; ++i) t->train_step();
      t->save_checkpoint();
    });
    const Checkpoint c = load_checkpoint(checkpoint_dir(oa.out_dir));  // a plain checkpoint
    CHECK(c.state.step == K);
    auto resumed = make_trainer(oa, nullptr, 99);
    resumed->restore(c);
    for (int64_t i = K; i < o.steps; ++i) resumed->train_step();
    CHECK(resumed->data().cursor_state() == straight->data().cursor_state());
    CHECK(max_relative_difference(*resumed, *straight) <= 1e-5);
  }
  SUBCASE("1, then 2 ranks") {
    TrainOptions ob = o;
    ob.out_dir = g_tmp.file("dp_resume_1_to_2");
    std::filesystem::remove_all(ob.out_dir);
    auto first = make_trainer(ob);
    for (int64_t i = 0; i < K; ++i) first->train_step();
    first->save_checkpoint();
    RankResults got;
    run_ranks(2, [&](Communicator& comm) {
      auto t = make_trainer(ob, borrow(comm), 99);
      t->restore(load_checkpoint(checkpoint_dir(ob.out_dir)));
      for (int64_t i = K; i < ob.steps; ++i) t->train_step();
      if (comm.rank() == 0) got.trainer = std::move(t);
    });
    CHECK(got.trainer->step() == o.steps);
    CHECK(got.trainer->data().cursor_state() == straight->data().cursor_state());
    CHECK(max_relative_difference(*got.trainer, *straight) <= 1e-5);
  }
}

TEST_CASE("data parallel run: rank 0 alone prints and writes the log and checkpoint") {
  TrainOptions o = tiny_options("dp_run");
  o.steps = 2;
  o.log_every = 1;
  std::filesystem::remove_all(o.out_dir);
  std::vector<std::string> printed(2);
  run_ranks(2, [&](Communicator& comm) {
    std::ostringstream out;
    make_trainer(o, borrow(comm))->run(out);
    printed[static_cast<size_t>(comm.rank())] = out.str();
  });
  CHECK(contains(printed[0], "data parallel: 2 ranks, 2 windows each per micro-batch"));
  CHECK(contains(printed[0], "checkpoint: '"));
  CHECK(printed[1].empty());
  CHECK(load_checkpoint(checkpoint_dir(o.out_dir)).state.step == 2);
  const std::string log = read_file(o.resolved_log_file());
  size_t lines = 0;
  for (char ch : log) lines += ch == '\n';
  CHECK(lines == 1 + 1 + 2 + 1);  // start, first validation, 2 steps, final validation: once each
}

TEST_CASE("data parallel: bad world sizes and worker environments are errors naming the flag or variable") {
  TrainOptions o = tiny_options("dp_bad");
  o.batch_size = 3;
  const std::string e = error_of([&] { run_ranks(2, [&](Communicator& comm) { make_trainer(o, borrow(comm)); }); });
  CHECK(contains(e, "--batch-size 3 is not a multiple of the number of GPUs (--gpus) 2"));

  SUBCASE("worker environment") {
    unsetenv("SIMBA_WORLD_SIZE");
    CHECK_FALSE(worker_env().has_value());
    setenv("SIMBA_WORLD_SIZE", "2", 1);
    setenv("SIMBA_RANK", "1", 1);
    setenv("SIMBA_LOCAL_RANK", "1", 1);
    setenv("SIMBA_NCCL_ID", "ab", 1);
    const std::optional<WorkerEnv> w = worker_env();
    REQUIRE(w.has_value());
    CHECK(w->rank == 1);
    CHECK(w->world_size == 2);
    CHECK(w->nccl_id == "ab");
    setenv("SIMBA_RANK", "2", 1);
    CHECK(contains(error_of([] { worker_env(); }), "SIMBA_RANK must be an integer in [0, 1], got '2'"));
    unsetenv("SIMBA_NCCL_ID");
    setenv("SIMBA_RANK", "0", 1);
    CHECK(contains(error_of([] { worker_env(); }), "SIMBA_NCCL_ID is not set"));
    for (const char* v : {"SIMBA_WORLD_SIZE", "SIMBA_RANK", "SIMBA_LOCAL_RANK"}) unsetenv(v);
  }
  SUBCASE("the workers' command line is the launcher's without --gpus") {
    CHECK(args_without({"simba", "train", "--gpus", "2", "--out", "x", "--gpus=4"}, "--gpus") ==
          std::vector<std::string>{"simba", "train", "--out", "x"});
  }
  SUBCASE("simba train --gpus: more GPUs than the machine has, or with --device") {
    const std::string data = g_tmp.file("dp_data.txt");
    write_file_atomic(data, toy_text());
    auto [code, err] = run_simba("train --data " + data + " --out " + g_tmp.file("dp_cli") + " --gpus 64");
    CHECK(code == 1);
    CHECK(contains(err, "--gpus 64"));
    auto [code2, err2] = run_simba("train --data " + data + " --out " + g_tmp.file("dp_cli") + " --gpus 1 --device cpu");
    CHECK(code2 == 1);
    CHECK(contains(err2, "--device excludes --gpus"));
  }
}
