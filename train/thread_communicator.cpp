// train/thread_communicator.cpp: ranks as threads (see train/thread_communicator.h).
#include "train/thread_communicator.h"

#include <cstring>
#include <exception>
#include <thread>

#include "tensor/error.h"

namespace simba {

namespace {

const char* const kAborted = "another rank of the thread group failed; this collective was abandoned";

template <class T>
void sum_in_rank_order(T* out, const std::vector<Tensor>& inputs, int64_t n) {
  const T* first = static_cast<const T*>(inputs[0].raw_data());
  for (int64_t i = 0; i < n; ++i) out[i] = first[i];
  for (size_t r = 1; r < inputs.size(); ++r) {
    const T* in = static_cast<const T*>(inputs[r].raw_data());
    for (int64_t i = 0; i < n; ++i) out[i] += in[i];
  }
}

}  // namespace

ThreadGroup::ThreadGroup(int world_size) : world_size_(world_size), posted_(static_cast<size_t>(world_size)) {
  SIMBA_CHECK(world_size >= 1, "ThreadGroup: the world size must be >= 1, got " << world_size);
}

void ThreadGroup::arrive_and_wait() {
  std::unique_lock<std::mutex> lock(mutex_);
  SIMBA_CHECK(!aborted_, kAborted);
  const uint64_t generation = generation_;
  if (++arrived_ == world_size_) {
    arrived_ = 0;
    ++generation_;
    cv_.notify_all();
    return;
  }
  cv_.wait(lock, [&] { return generation_ != generation || aborted_; });
  SIMBA_CHECK(generation_ != generation, kAborted);
}

void ThreadGroup::abort() {
  std::lock_guard<std::mutex> lock(mutex_);
  aborted_ = true;
  cv_.notify_all();
}

ThreadCommunicator::ThreadCommunicator(std::shared_ptr<ThreadGroup> group, int rank)
    : group_(std::move(group)), rank_(rank) {
  SIMBA_CHECK(group_ != nullptr, "ThreadCommunicator: no group given");
  SIMBA_CHECK(rank >= 0 && rank < group_->world_size(),
              "ThreadCommunicator: rank " << rank << " is outside [0, " << group_->world_size() << ")");
}

void ThreadCommunicator::post(const Tensor& t, const char* op) {
  SIMBA_CHECK(t.device().is_cpu() && t.is_contiguous(),
              op << ": the thread communicator reduces contiguous CPU tensors, got one on " << t.device().str());
  SIMBA_CHECK(t.dtype() == DType::F32 || t.dtype() == DType::F64 || t.dtype() == DType::I64,
              op << ": the thread communicator handles float32, float64 and int64, got " << dtype_name(t.dtype()));
  group_->posted()[static_cast<size_t>(rank_)] = t;
  group_->arrive_and_wait();
  // Every rank makes the same comparison of the same posts, so all throw or none does.
  const std::vector<Tensor>& all = group_->posted();
  for (size_t r = 1; r < all.size(); ++r)
    SIMBA_CHECK(all[r].shape() == all[0].shape() && all[r].dtype() == all[0].dtype(),
                op << ": rank " << r << " posted a " << dtype_name(all[r].dtype()) << " tensor of shape "
                   << shape_str(all[r].shape()) << ", rank 0 a " << dtype_name(all[0].dtype()) << " one of shape "
                   << shape_str(all[0].shape()) << "; every rank must pass the same shape and dtype");
}

void ThreadCommunicator::all_reduce_sum(const Tensor& t) {
  post(t, "all_reduce_sum");
  // Each rank sums every buffer into a private result, and writes it over its
  // own buffer only after every rank has finished reading the inputs.
  const Tensor sum = Tensor::empty(t.shape(), t.dtype());
  const std::vector<Tensor>& all = group_->posted();
  if (t.dtype() == DType::F32) sum_in_rank_order(sum.data<float>(), all, t.numel());
  else if (t.dtype() == DType::F64) sum_in_rank_order(sum.data<double>(), all, t.numel());
  else sum_in_rank_order(sum.data<int64_t>(), all, t.numel());
  group_->arrive_and_wait();
  Tensor out = t;  // a handle: writes through to the caller's buffer
  out.copy_(sum);
}

void ThreadCommunicator::broadcast(const Tensor& t, int root) {
  SIMBA_CHECK(root >= 0 && root < world_size(), "broadcast: root " << root << " is outside [0, " << world_size() << ")");
  post(t, "broadcast");
  if (rank_ != root) {
    const Tensor& source = group_->posted()[static_cast<size_t>(root)];
    std::memcpy(t.raw_data(), source.raw_data(), static_cast<size_t>(t.numel()) * dtype_size(t.dtype()));
  }
  group_->arrive_and_wait();  // the root's buffer stays unchanged until every rank has copied it
}

void run_ranks(int world_size, const std::function<void(Communicator&)>& fn) {
  auto group = std::make_shared<ThreadGroup>(world_size);
  std::vector<std::exception_ptr> errors(static_cast<size_t>(world_size));
  std::vector<char> from_abort(static_cast<size_t>(world_size), 0);  // not vector<bool>: each thread writes its own element
  std::vector<std::thread> threads;
  for (int r = 0; r < world_size; ++r)
    threads.emplace_back([&, r] {
      try {
        ThreadCommunicator comm(group, r);
        fn(comm);
      } catch (const Error& e) {
        errors[static_cast<size_t>(r)] = std::current_exception();
        from_abort[static_cast<size_t>(r)] = e.message() == kAborted;
        group->abort();
      } catch (...) {
        errors[static_cast<size_t>(r)] = std::current_exception();
        group->abort();
      }
    });
  for (std::thread& t : threads) t.join();
  for (int r = 0; r < world_size; ++r)
    if (errors[static_cast<size_t>(r)] && !from_abort[static_cast<size_t>(r)]) std::rethrow_exception(errors[static_cast<size_t>(r)]);
  for (const std::exception_ptr& e : errors)
    if (e) std::rethrow_exception(e);
}

}  // namespace simba
