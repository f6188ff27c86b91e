// train/text_data.h: a tokenised text file, split into training and validation
// streams, and the windows a language model trains and is evaluated on.
//
// The file becomes one token stream; the first (1 - val_fraction) of it is the
// train split and the rest the validation split, so validation text is never
// seen in training (a contiguous tail, not scattered windows, so that no
// train window overlaps it). val_fraction 1 makes the whole file the
// validation split (the evaluation commands' way to score a held-out file);
// two streams can also be given apart (simba train --val-data). A window of length L at start s is
//   inputs  = stream[s .. s+L)      targets = stream[s+1 .. s+L+1)
// i.e. targets[t] is the token that follows inputs[t], and it needs L+1 tokens.
//
// Training windows start at uniformly random positions drawn from a seeded
// Generator owned by the dataset. That generator plus the number of batches
// drawn is the "data cursor": saving it in a checkpoint and restoring it makes
// a resumed run draw exactly the batches the uninterrupted run would have.
// Validation windows are deterministic, so every evaluation scores the same
// tokens and losses are comparable across steps and runs.
#pragma once

#include <cstdint>
#include <string>
#include <vector>

#include "tensor/random.h"
#include "tensor/tensor.h"
#include "train/byte_tokenizer.h"

namespace simba {

enum class Split { Train, Validation };

// What the evaluation commands accept as --val-fraction: (0, 1], 1 scoring the whole file.
// Throws otherwise, naming the flag.
void check_eval_val_fraction(double f);
const char* split_name(Split split);  // "train" / "validation"

// inputs and targets: (B, L) int64 token ids, targets[b, t] following inputs[b, t].
struct Batch {
  Tensor inputs;
  Tensor targets;
};

class TextData {
 public:
  // validation_batches(.., kAllBatches) covers the whole validation split.
  static constexpr int64_t kAllBatches = -1;

  // Reads and tokenises the whole file. Errors name the path: missing or
  // unreadable file, empty file, val_fraction outside [0, 1].
  static TextData from_file(const std::string& path, const Tokenizer& tokenizer,
                            double val_fraction = 0.1, uint64_t seed = 0);
  // An already tokenised stream; `source` names it in error messages. The
  // validation split is the last round(n · val_fraction) tokens.
  // token_bytes is the tokenizer's Tokenizer::token_byte_counts(); empty
  // means one byte per token (the byte tokenizer).
  TextData(std::vector<int64_t> stream, double val_fraction, uint64_t seed,
           std::string source = "<in-memory tokens>", std::vector<int64_t> token_bytes = {});
  // The two splits given apart (e.g. two files: `source` names both).
  TextData(std::vector<int64_t> train, std::vector<int64_t> validation, uint64_t seed, std::string source,
           std::vector<int64_t> token_bytes = {});

  const std::vector<int64_t>& tokens(Split split) const;
  // Bytes of text the tokens `ids` stand for; an id outside the tokenizer's
  // table is an error naming the source.
  int64_t text_bytes(const Tensor& ids) const;
  const std::string& source() const { return source_; }

  // Throws unless `split` holds at least one window of length L (L+1 tokens);
  // the error names the source, the split, its token count and L+1. The batch
  // functions call it; a trainer can call it before building a model.
  void check_window(Split split, int64_t L) const;

  // Throws unless every token of both splits is in [0, vocab_size): the
  // error names the source, the split and the first id outside.
  void check_vocab(int64_t vocab_size) const;

  // B windows at independent uniform starts in [0, n_train - L), drawn in
  // row order from the data generator.
  Batch next_train_batch(int64_t B, int64_t L);
  int64_t batches_drawn() const { return batches_drawn_; }

  // The data cursor as one line of text, exact. set_cursor_state accepts only
  // a cursor saved from a train split of the same length (resuming on
  // different data cannot reproduce the run) and leaves the cursor unchanged
  // when it throws.
  std::string cursor_state() const;
  void set_cursor_state(const std::string& state);

  // Non-overlapping windows: window k has inputs at validation positions
  // [kL, kL+L), so every validation token after the first is a target exactly
  // once until the windows run out. Windows are grouped B to a batch in order;
  // the last batch holds the remaining windows (fewer than B) if they do not
  // divide evenly. All of them with kAllBatches; with at most max_batches
  // batches (>= 1) of the W windows, the q-th of the w taken is window
  // floor(q·W/w): spread evenly over the split rather than its beginning (a
  // split made of documents in path order begins with one directory's files).
  // The same result on every call.
  std::vector<Batch> validation_batches(int64_t B, int64_t L, int64_t max_batches) const;

 private:
  std::string source_;
  std::vector<int64_t> train_, validation_;
  std::vector<int64_t> token_bytes_;
  Generator generator_;
  int64_t batches_drawn_ = 0;
};

}  // namespace simba
