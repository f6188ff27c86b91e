// train/text_data.cpp: splitting a token stream, drawing training windows,
// tiling validation windows, and the data cursor's text format.
#include "train/text_data.h"

#include <algorithm>
#include <cmath>
#include <cstring>
#include <sstream>
#include <utility>

#include "tensor/error.h"
#include "tensor/file_io.h"

namespace simba {

namespace {

// The cursor's first words; the version lets a later format stay readable.
const char* const kCursorMagic = "simba-data-cursor";
const int kCursorVersion = 1;

void check_batch_shape(const char* op, int64_t B, int64_t L) {
  SIMBA_CHECK(B >= 1 && L >= 1, op << ": batch size B and window length L must be >= 1, got B " << B
                                   << ", L " << L);
}

// Row b of `batch` (both (B, L) int64, contiguous) <- the window at `start` of `stream`.
void copy_window(Batch& batch, int64_t b, const std::vector<int64_t>& stream, int64_t start, int64_t L) {
  const size_t bytes = static_cast<size_t>(L) * sizeof(int64_t);
  std::memcpy(batch.inputs.data<int64_t>() + b * L, stream.data() + start, bytes);
  std::memcpy(batch.targets.data<int64_t>() + b * L, stream.data() + start + 1, bytes);
}

Batch empty_batch(int64_t B, int64_t L) {
  return Batch{Tensor::empty({B, L}, DType::I64), Tensor::empty({B, L}, DType::I64)};
}

}  // namespace

const char* split_name(Split split) { return split == Split::Train ? "train" : "validation"; }

TextData TextData::from_file(const std::string& path, const Tokenizer& tokenizer, double val_fraction,
                             uint64_t seed) {
  const std::string text = read_file(path);
  SIMBA_CHECK_HINT(!text.empty(), "text data file '" << path << "' is empty: there is nothing to train on",
                   "pass a UTF-8 text file with at least a few kilobytes of text");
  return TextData(tokenizer.encode(text), val_fraction, seed, path, tokenizer.token_byte_counts());
}

void check_eval_val_fraction(double f) {
  SIMBA_CHECK(f > 0.0 && f <= 1.0,
              "--val-fraction: expected a fraction in (0, 1] (1: the whole file is evaluated), got " << f);
}

TextData::TextData(std::vector<int64_t> train, std::vector<int64_t> validation, uint64_t seed, std::string source,
                   std::vector<int64_t> token_bytes)
    : source_(std::move(source)),
      train_(std::move(train)),
      validation_(std::move(validation)),
      token_bytes_(std::move(token_bytes)),
      generator_(seed) {}

TextData::TextData(std::vector<int64_t> stream, double val_fraction, uint64_t seed, std::string source,
                   std::vector<int64_t> token_bytes)
    : source_(std::move(source)), token_bytes_(std::move(token_bytes)), generator_(seed) {
  SIMBA_CHECK(val_fraction >= 0.0 && val_fraction <= 1.0,
              "text data '" << source_ << "': validation fraction must be in [0, 1], got " << val_fraction);
  const int64_t n = static_cast<int64_t>(stream.size());
  const int64_t n_val = std::llround(static_cast<double>(n) * val_fraction);
  validation_.assign(stream.end() - n_val, stream.end());
  stream.resize(static_cast<size_t>(n - n_val));
  train_ = std::move(stream);
}

const std::vector<int64_t>& TextData::tokens(Split split) const {
  return split == Split::Train ? train_ : validation_;
}

int64_t TextData::text_bytes(const Tensor& ids) const {
  const std::vector<int64_t> v = ids.to_ints();
  if (token_bytes_.empty()) return static_cast<int64_t>(v.size());
  int64_t bytes = 0;
  for (int64_t id : v) {
    SIMBA_CHECK(id >= 0 && id < static_cast<int64_t>(token_bytes_.size()),
                "text data '" << source_ << "': token id " << id << " is outside the tokenizer's vocabulary [0, "
                              << token_bytes_.size() << ")");
    bytes += token_bytes_[static_cast<size_t>(id)];
  }
  return bytes;
}

void TextData::check_vocab(int64_t V) const {
  for (Split split : {Split::Train, Split::Validation})
    for (int64_t id : tokens(split))
      SIMBA_CHECK_HINT(id >= 0 && id < V,
                       "text data '" << source_ << "': token id " << id << " in the " << split_name(split)
                                     << " split is outside the model's vocabulary [0, " << V << ")",
                       "the model's vocab_size must cover the tokenizer (256 for bytes)");
}

void TextData::check_window(Split split, int64_t L) const {
  const int64_t n = static_cast<int64_t>(tokens(split).size());
  SIMBA_CHECK_HINT(n >= L + 1,
                   "text data '" << source_ << "': the " << split_name(split) << " split has " << n
                                 << " tokens, but a window of length L = " << L << " needs at least L+1 = "
                                 << L + 1,
                   "use a shorter sequence length, a larger file, or a different validation fraction");
}

Batch TextData::next_train_batch(int64_t B, int64_t L) {
  check_batch_shape("next_train_batch", B, L);
  check_window(Split::Train, L);
  const int64_t n_starts = static_cast<int64_t>(train_.size()) - L;
  Batch batch = empty_batch(B, L);
  for (int64_t b = 0; b < B; ++b) copy_window(batch, b, train_, generator_.randint(0, n_starts), L);
  ++batches_drawn_;
  return batch;
}

std::string TextData::cursor_state() const {
  std::ostringstream o;
  o << kCursorMagic << ' ' << kCursorVersion << " train_tokens " << train_.size() << " batches "
    << batches_drawn_ << " rng " << generator_.state();
  return o.str();
}

void TextData::set_cursor_state(const std::string& state) {
  std::istringstream in(state);
  std::string magic, train_key, batches_key, rng_key;
  int version = 0;
  int64_t train_tokens = -1, batches = -1;
  in >> magic >> version >> train_key >> train_tokens >> batches_key >> batches >> rng_key;
  std::string rng_state;
  std::getline(in, rng_state);
  const bool well_formed = !in.fail() && magic == kCursorMagic && version == kCursorVersion &&
                           train_key == "train_tokens" && batches_key == "batches" && rng_key == "rng" &&
                           train_tokens >= 0 && batches >= 0;
  SIMBA_CHECK_HINT(well_formed,
                   "text data '" << source_ << "': malformed data cursor '" << state.substr(0, 80)
                                 << (state.size() > 80 ? "..." : "") << "'",
                   "expected '" << kCursorMagic << ' ' << kCursorVersion
                                << " train_tokens <n> batches <n> rng <state>' as written by cursor_state()");
  SIMBA_CHECK_HINT(train_tokens == static_cast<int64_t>(train_.size()),
                   "text data '" << source_ << "': the data cursor was saved for a train split of "
                                 << train_tokens << " tokens, but this train split has " << train_.size(),
                   "resume with the same data file, tokenizer and validation split (--val-fraction or --val-data) as "
                   "the original run");
  // Parse into a scratch generator first so a bad state leaves this cursor untouched.
  Generator restored;
  try {
    restored.set_state(rng_state);
  } catch (const Error& e) {
    SIMBA_FAIL("text data '" << source_ << "': malformed data cursor: " << e.message());
  }
  generator_ = restored;
  batches_drawn_ = batches;
}

std::vector<Batch> TextData::validation_batches(int64_t B, int64_t L, int64_t max_batches) const {
  check_batch_shape("validation_batches", B, L);
  SIMBA_CHECK(max_batches >= 1 || max_batches == kAllBatches,
              "validation_batches: max_batches must be >= 1 or kAllBatches (-1), got " << max_batches);
  check_window(Split::Validation, L);
  // Window k reads positions kL .. kL+L (its last target), so it fits while kL + L < n.
  const int64_t n_windows = (static_cast<int64_t>(validation_.size()) - 1) / L;
  int64_t n_batches = (n_windows + B - 1) / B;
  if (max_batches != kAllBatches && max_batches < n_batches) n_batches = max_batches;
  // The q-th window taken is window floor(q · n_windows / taken): all of them in order when every
  // window is taken, else a subset spread evenly over the split.
  const int64_t taken = std::min(n_batches * B, n_windows);

  std::vector<Batch> batches;
  batches.reserve(static_cast<size_t>(n_batches));
  for (int64_t i = 0; i < n_batches; ++i) {
    const int64_t rows = std::min(B, taken - i * B);
    Batch batch = empty_batch(rows, L);
    for (int64_t b = 0; b < rows; ++b) copy_window(batch, b, validation_, (i * B + b) * n_windows / taken * L, L);
    batches.push_back(std::move(batch));
  }
  return batches;
}

}  // namespace simba
