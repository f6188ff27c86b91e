// The training data side: byte tokenizer, train/validation windows, the data
// cursor, the JSONL metrics log and the progress line.
#include <doctest/doctest.h>

#include <chrono>
#include <cmath>
#include <filesystem>
#include <set>
#include <sstream>
#include <thread>
#include <unistd.h>

#include "tensor/file_io.h"
#include "tests/test_util.h"
#include "train/byte_tokenizer.h"
#include "train/metrics_log.h"
#include "train/text_data.h"

using namespace simba;

namespace {

// A fresh scratch directory per test process, so parallel ctest runs do not collide.
std::string scratch_path() {
  return (std::filesystem::temp_directory_path() / ("simba_test_train_data_" + std::to_string(::getpid())))
      .string();
}

std::string scratch_dir() {
  make_dirs(scratch_path());
  return scratch_path();
}

// Removes the scratch directory when the test program exits.
struct ScratchCleanup {
  ~ScratchCleanup() {
    std::error_code ignored;  // a destructor must not throw; a leftover temp dir is harmless
    std::filesystem::remove_all(scratch_path(), ignored);
  }
} scratch_cleanup;

std::string write_text(const std::string& name, const std::string& text) {
  const std::string path = scratch_dir() + "/" + name;
  write_file_atomic(path, text);
  return path;
}

// 0, 1, .., n-1: each token names its own position, so a window reveals where it starts.
std::vector<int64_t> iota_tokens(int64_t n) {
  std::vector<int64_t> v(static_cast<size_t>(n));
  for (int64_t i = 0; i < n; ++i) v[static_cast<size_t>(i)] = i;
  return v;
}

bool same_batch(const Batch& a, const Batch& b) {
  return a.inputs.shape() == b.inputs.shape() && a.inputs.to_ints() == b.inputs.to_ints() &&
         a.targets.to_ints() == b.targets.to_ints();
}

std::vector<std::string> lines_of(const std::string& text) {
  std::vector<std::string> lines;
  std::istringstream in(text);
  for (std::string line; std::getline(in, line);) lines.push_back(line);
  return lines;
}

}  // namespace

TEST_CASE("ByteTokenizer round-trips all 256 byte values and UTF-8 text") {
  ByteTokenizer byte_tokenizer;
  const Tokenizer& tok = byte_tokenizer;  // used through the interface, as TextData does
  CHECK(tok.name() == "byte");
  CHECK(tok.vocab_size() == 256);

  std::string all_bytes;
  for (int b = 0; b < 256; ++b) all_bytes.push_back(static_cast<char>(b));
  const std::vector<int64_t> ids = tok.encode(all_bytes);
  CHECK(ids == iota_tokens(256));
  CHECK(tok.decode(ids) == all_bytes);

  const std::string utf8 = "h\xC3\xA9llo \xE4\xB8\x96\xE7\x95\x8C \xF0\x9F\x99\x82";  // "héllo 世界 🙂"
  const std::vector<int64_t> utf8_ids = tok.encode(utf8);
  CHECK(utf8_ids.size() == utf8.size());
  CHECK(utf8_ids[1] == 0xC3);  // é = C3 A9: non-ASCII bytes map to 128..255, never negative
  CHECK(utf8_ids[2] == 0xA9);
  CHECK(tok.decode(utf8_ids) == utf8);
  CHECK(tok.encode("").empty());
  CHECK(tok.decode({}).empty());
}

TEST_CASE("ByteTokenizer::decode names an id outside the byte vocabulary") {
  ByteTokenizer tok;
  const std::string high = error_of([&] { tok.decode({104, 105, 300}); });
  CHECK(high.find("token id 300") != std::string::npos);
  CHECK(high.find("position 2") != std::string::npos);
  CHECK(high.find("[0, 256)") != std::string::npos);
  CHECK(error_of([&] { tok.decode({-1}); }).find("token id -1") != std::string::npos);
  CHECK(error_of([&] { tok.decode({0, 255}); }).empty());
}

TEST_CASE("TextData splits the stream into a train head and a validation tail") {
  TextData d(iota_tokens(1000), 0.1, 0);
  const std::vector<int64_t>& train = d.tokens(Split::Train);
  const std::vector<int64_t>& val = d.tokens(Split::Validation);
  REQUIRE(train.size() == 900);
  REQUIRE(val.size() == 100);
  CHECK(train.front() == 0);
  CHECK(train.back() == 899);
  CHECK(val.front() == 900);
  CHECK(val.back() == 999);

  CHECK(TextData(iota_tokens(10), 0.25, 0).tokens(Split::Validation).size() == 3);  // round(2.5)
  CHECK(TextData(iota_tokens(10), 0.0, 0).tokens(Split::Validation).empty());

  const std::string text = "The quick brown fox jumps over the lazy dog.\n";
  const std::string path = write_text("fox.txt", text);
  TextData f = TextData::from_file(path, ByteTokenizer(), 0.2);
  CHECK(f.source() == path);
  std::vector<int64_t> joined = f.tokens(Split::Train);
  joined.insert(joined.end(), f.tokens(Split::Validation).begin(), f.tokens(Split::Validation).end());
  CHECK(joined == ByteTokenizer().encode(text));
  CHECK(f.tokens(Split::Validation).size() == 9);  // round(45 * 0.2)

  // 1: the whole stream is the validation split (the evaluation commands' held-out file).
  const TextData all(iota_tokens(10), 1.0, 0);
  CHECK(all.tokens(Split::Train).empty());
  CHECK(all.tokens(Split::Validation) == iota_tokens(10));
  const std::string bad = error_of([] { TextData(iota_tokens(10), 1.5, 0, "frac.txt"); });
  CHECK(bad.find("frac.txt") != std::string::npos);
  CHECK(bad.find("validation fraction must be in [0, 1], got 1.5") != std::string::npos);

  // The two splits given apart (simba train --val-data).
  const TextData apart(iota_tokens(7), iota_tokens(3), 0, "a + b");
  CHECK(apart.tokens(Split::Train) == iota_tokens(7));
  CHECK(apart.tokens(Split::Validation) == iota_tokens(3));
  CHECK(apart.source() == "a + b");
}

TEST_CASE("training windows: targets are the inputs shifted by one, within the train split") {
  // 30 tokens, validation the last 10: train holds 0..19, so L = 5 allows starts 0..14.
  TextData d(iota_tokens(30), 1.0 / 3.0, 7);
  REQUIRE(d.tokens(Split::Train).size() == 20);
  const int64_t B = 4, L = 5;
  std::set<int64_t> starts;
  for (int i = 0; i < 100; ++i) {
    Batch batch = d.next_train_batch(B, L);
    REQUIRE(batch.inputs.shape() == Shape{B, L});
    REQUIRE(batch.targets.shape() == Shape{B, L});
    REQUIRE(batch.inputs.dtype() == DType::I64);
    REQUIRE(batch.targets.dtype() == DType::I64);
    const std::vector<int64_t> in = batch.inputs.to_ints(), tg = batch.targets.to_ints();
    for (int64_t b = 0; b < B; ++b) {
      const int64_t s = in[b * L];
      CHECK(s >= 0);
      CHECK(s + L < 20);  // the last target (s + L) is still a train token
      for (int64_t t = 0; t < L; ++t) {
        CHECK(in[b * L + t] == s + t);
        CHECK(tg[b * L + t] == s + t + 1);
      }
      starts.insert(s);
    }
  }
  CHECK(d.batches_drawn() == 100);
  // 400 uniform draws over 15 starts reach every one, including the last valid start 14.
  CHECK(starts.size() == 15);
  CHECK(*starts.rbegin() == 14);
}

TEST_CASE("the same seed draws the same batches, another seed different ones") {
  TextData a(iota_tokens(5000), 0.1, 42), b(iota_tokens(5000), 0.1, 42), c(iota_tokens(5000), 0.1, 43);
  bool all_same_as_c = true;
  for (int i = 0; i < 5; ++i) {
    Batch x = a.next_train_batch(8, 16), y = b.next_train_batch(8, 16), z = c.next_train_batch(8, 16);
    CHECK(same_batch(x, y));
    all_same_as_c = all_same_as_c && same_batch(x, z);
  }
  CHECK(!all_same_as_c);
}

TEST_CASE("a restored data cursor continues with exactly the same batches") {
  TextData original(iota_tokens(5000), 0.1, 1234);
  for (int i = 0; i < 3; ++i) original.next_train_batch(4, 32);
  const std::string cursor = original.cursor_state();
  std::vector<Batch> expected;
  for (int i = 0; i < 2; ++i) expected.push_back(original.next_train_batch(4, 32));

  // A different seed proves the cursor, not the seed, decides the batches.
  TextData resumed(iota_tokens(5000), 0.1, 999);
  resumed.set_cursor_state(cursor);
  CHECK(resumed.batches_drawn() == 3);
  for (int i = 0; i < 2; ++i) CHECK(same_batch(resumed.next_train_batch(4, 32), expected[i]));
  CHECK(resumed.batches_drawn() == 5);
  CHECK(resumed.cursor_state() == original.cursor_state());
}

TEST_CASE("set_cursor_state rejects malformed or foreign cursors and keeps the cursor") {
  TextData d(iota_tokens(5000), 0.1, 5, "corpus.txt");
  const std::string cursor = d.cursor_state();

  const std::string garbage = error_of([&] { d.set_cursor_state("not a cursor"); });
  CHECK(garbage.find("corpus.txt") != std::string::npos);
  CHECK(garbage.find("malformed data cursor 'not a cursor'") != std::string::npos);

  const std::string truncated = error_of([&] { d.set_cursor_state(cursor.substr(0, cursor.size() / 2)); });
  CHECK(truncated.find("malformed data cursor") != std::string::npos);
  CHECK(truncated.find("random generator state") != std::string::npos);

  std::string negative = cursor;
  negative.replace(negative.find("batches 0"), 9, "batches -3");
  CHECK(error_of([&] { d.set_cursor_state(negative); }).find("malformed data cursor") != std::string::npos);

  const std::string foreign = TextData(iota_tokens(4000), 0.1, 5).cursor_state();
  const std::string mismatch = error_of([&] { d.set_cursor_state(foreign); });
  CHECK(mismatch.find("saved for a train split of 3600 tokens, but this train split has 4500") !=
        std::string::npos);

  // None of the failures moved the cursor: d still draws what a fresh seed-5 dataset draws.
  CHECK(d.cursor_state() == cursor);
  CHECK(d.batches_drawn() == 0);
  TextData fresh(iota_tokens(5000), 0.1, 5);
  CHECK(same_batch(d.next_train_batch(2, 8), fresh.next_train_batch(2, 8)));
}

TEST_CASE("validation batches tile the validation split in order, identically every call; a few are spread over it") {
  // Validation = tokens 100..129 (30 tokens); L = 4 fits (30 - 1) / 4 = 7 windows.
  TextData d(iota_tokens(130), 30.0 / 130.0, 0);
  REQUIRE(d.tokens(Split::Validation).size() == 30);
  const int64_t L = 4;
  const std::vector<Batch> all = d.validation_batches(3, L, TextData::kAllBatches);
  REQUIRE(all.size() == 3);
  CHECK(all[0].inputs.shape() == Shape{3, L});
  CHECK(all[2].inputs.shape() == Shape{1, L});  // the 7th window alone
  int64_t window = 0;
  for (const Batch& batch : all) {
    const std::vector<int64_t> in = batch.inputs.to_ints(), tg = batch.targets.to_ints();
    for (int64_t b = 0; b < batch.inputs.size(0); ++b, ++window) {
      for (int64_t t = 0; t < L; ++t) {
        // Window k starts right where window k-1 ended: consecutive, no overlap, no gap.
        CHECK(in[b * L + t] == 100 + window * L + t);
        CHECK(tg[b * L + t] == 100 + window * L + t + 1);
      }
    }
  }
  CHECK(window == 7);

  const std::vector<Batch> again = d.validation_batches(3, L, TextData::kAllBatches);
  REQUIRE(again.size() == all.size());
  for (size_t i = 0; i < all.size(); ++i) CHECK(same_batch(all[i], again[i]));

  // Drawing training batches does not disturb validation.
  d.next_train_batch(2, L);
  const std::vector<Batch> again_after = d.validation_batches(3, L, TextData::kAllBatches);
  for (size_t i = 0; i < all.size(); ++i) CHECK(same_batch(again_after[i], all[i]));

  // Fewer batches than fit: the w windows taken of the 7 are windows floor(q·7/w), spread over
  // the split instead of its first ones: w = 3 (one batch of 3) takes windows 0, 2 and 4; w = 2
  // (two batches of 1) takes windows 0 and 3.
  const std::vector<Batch> one_batch = d.validation_batches(3, L, 1);
  REQUIRE(one_batch.size() == 1);
  const std::vector<int64_t> in3 = one_batch[0].inputs.to_ints();
  CHECK(in3 == std::vector<int64_t>{100, 101, 102, 103, 108, 109, 110, 111, 116, 117, 118, 119});
  const std::vector<Batch> two = d.validation_batches(1, L, 2);
  REQUIRE(two.size() == 2);
  CHECK(two[0].inputs.to_ints() == std::vector<int64_t>{100, 101, 102, 103});
  CHECK(two[1].inputs.to_ints() == std::vector<int64_t>{112, 113, 114, 115});
  CHECK(two[1].targets.to_ints() == std::vector<int64_t>{113, 114, 115, 116});

  // 8 validation tokens (10..17) hold one window of 4, not two: a second would need target 18.
  TextData exact(iota_tokens(18), 8.0 / 18.0, 0);
  const std::vector<Batch> one = exact.validation_batches(4, 4, TextData::kAllBatches);
  REQUIRE(one.size() == 1);
  CHECK(one[0].inputs.to_ints() == std::vector<int64_t>{10, 11, 12, 13});
  CHECK(one[0].targets.to_ints() == std::vector<int64_t>{11, 12, 13, 14});
  CHECK(exact.validation_batches(1, 7, 1)[0].targets.to_ints().back() == 17);  // the largest L uses every token

  CHECK(error_of([&] { d.validation_batches(3, L, 0); }).find("max_batches must be >= 1") != std::string::npos);
  CHECK(error_of([&] { d.validation_batches(0, L, 1); }).find("got B 0, L 4") != std::string::npos);
}

TEST_CASE("text data errors name the file and what was expected") {
  const std::string missing = scratch_dir() + "/no_such_file.txt";
  const std::string m = error_of([&] { TextData::from_file(missing, ByteTokenizer()); });
  CHECK(m.find("cannot open '" + missing + "'") != std::string::npos);

  const std::string empty = write_text("empty.txt", "");
  const std::string e = error_of([&] { TextData::from_file(empty, ByteTokenizer()); });
  CHECK(e.find("'" + empty + "' is empty") != std::string::npos);

  // 10 bytes with val_fraction 0.1: train 9 tokens, validation 1.
  const std::string tiny = write_text("tiny.txt", "0123456789");
  TextData d = TextData::from_file(tiny, ByteTokenizer(), 0.1);
  const std::string train_short = error_of([&] { d.next_train_batch(2, 9); });
  CHECK(train_short.find("'" + tiny + "'") != std::string::npos);
  CHECK(train_short.find("the train split has 9 tokens") != std::string::npos);
  CHECK(train_short.find("L+1 = 10") != std::string::npos);
  CHECK(d.batches_drawn() == 0);

  const std::string val_short = error_of([&] { d.validation_batches(1, 1, TextData::kAllBatches); });
  CHECK(val_short.find("'" + tiny + "'") != std::string::npos);
  CHECK(val_short.find("the validation split has 1 tokens") != std::string::npos);
  CHECK(val_short.find("L+1 = 2") != std::string::npos);

  // The largest window that fits has exactly one start.
  Batch fits = d.next_train_batch(2, 8);
  CHECK(fits.inputs.to_ints() == std::vector<int64_t>{48, 49, 50, 51, 52, 53, 54, 55,  //
                                                       48, 49, 50, 51, 52, 53, 54, 55});
  CHECK(error_of([&] { d.check_window(Split::Train, 8); }).empty());
}

TEST_CASE("MetricsLog writes one flushed JSON object per line") {
  const std::string dir = scratch_dir() + "/metrics_run/nested";
  std::filesystem::remove_all(scratch_dir() + "/metrics_run");
  const std::string path = dir + "/metrics.jsonl";
  {
    MetricsLog log(path, 0);  // creates the missing parent directories
    CHECK(log.path() == path);
    log.write({{"step", 1}, {"loss", 2.5}, {"split", "train"}});
    log.write({{"step", 2}, {"loss", 2.25}, {"sample", std::string("ok \xFF bytes")}});
    // Read while the log is still open: each line must already be on disk.
    const std::vector<std::string> lines = lines_of(read_file(path));
    REQUIRE(lines.size() == 2);
    const nlohmann::json first = nlohmann::json::parse(lines[0]);
    CHECK(first.at("step") == 1);
    CHECK(first.at("loss") == 2.5);
    CHECK(first.at("split") == "train");
    const nlohmann::json second = nlohmann::json::parse(lines[1]);
    CHECK(second.at("loss") == 2.25);
    CHECK(second.at("sample") == "ok \xEF\xBF\xBD bytes");  // invalid UTF-8 became U+FFFD

    const std::string not_object = error_of([&] { log.write(nlohmann::json::array({1, 2})); });
    CHECK(not_object.find("a record must be a JSON object, got array") != std::string::npos);
  }
  {
    MetricsLog resumed(path, 2);  // a resumed run keeps the records up to its step
    resumed.write({{"step", 3}});
  }
  const std::vector<std::string> lines = lines_of(read_file(path));
  REQUIRE(lines.size() == 3);
  CHECK(nlohmann::json::parse(lines[2]).at("step") == 3);

  const std::string is_dir = error_of([&] { MetricsLog bad(dir, 0); });
  CHECK(is_dir.find("cannot open metrics log '" + dir + "'") != std::string::npos);
}

TEST_CASE("MetricsLog at the start of a run: a resume drops what a killed run logged after its checkpoint") {
  const std::string path = scratch_dir() + "/metrics_resume.jsonl";
  // A run killed after step 3, with its checkpoint at step 2; the last line is torn.
  const std::string logged =
      "{\"event\":\"start\",\"step\":0}\n{\"step\":0,\"val_loss\":5.5}\n{\"step\":1,\"loss\":5.4}\n"
      "{\"step\":2,\"loss\":5.3}\n{\"step\":2,\"val_loss\":5.2}\n{\"step\":3,\"loss\":5.1}\n{\"step\":4,\"lo";
  write_file_atomic(path, logged);
  std::filesystem::create_directories(path + ".tmp.123");  // a killed rewrite's leftover
  write_file_atomic(path + ".tmp.456", "x");
  {
    MetricsLog resumed(path, 2);
    resumed.write({{"step", 2}, {"val_loss", 5.2}});
  }
  // Steps before 2, the training record of step 2 (its validation is logged again by the resumed run).
  CHECK(read_file(path) ==
        "{\"event\":\"start\",\"step\":0}\n{\"step\":0,\"val_loss\":5.5}\n{\"step\":1,\"loss\":5.4}\n"
        "{\"step\":2,\"loss\":5.3}\n{\"step\":2,\"val_loss\":5.2}\n");
  CHECK(!std::filesystem::exists(path + ".tmp.123"));
  CHECK(!std::filesystem::exists(path + ".tmp.456"));

  { MetricsLog fresh(path, 0); }  // a new run starts an empty log
  CHECK(read_file(path).empty());

  write_file_atomic(path, "{\"step\":1,\"loss\":5.4}\n[1,2]\n");
  const std::string bad = error_of([&] { MetricsLog resumed(path, 1); });
  CHECK(bad.find("metrics log '" + path + "' line 2 is not a JSON object with an integer \"step\": '[1,2]'") !=
        std::string::npos);
  CHECK(bad.find("fix or delete that line") != std::string::npos);
}

TEST_CASE("progress_line formats step, loss, lr, throughput, elapsed time and ETA") {
  // ETA = 41.5 s / 120 steps * 880 steps left = 304.3 s.
  CHECK(progress_line(120, 1000, 2.34123, 5210.4, 41.5, 1.2e-3) ==
        "step  120/1000 | loss 2.3412 | lr 1.20e-03 | 5,210 tok/s | elapsed 0:41 | ETA 5:04");
  CHECK(progress_line(0, 50, 5.5452, 0.0, 0.0, 6e-4) ==
        "step  0/50 | loss 5.5452 | lr 6.00e-04 | 0 tok/s | elapsed 0:00 | ETA --:--");
  // From one hour on: h:mm:ss. ETA = 3700.4 / 1 * 2 = 7400.8 s.
  CHECK(progress_line(1, 3, 1.0, 1234567.6, 3700.4, 1.0) ==
        "step 1/3 | loss 1.0000 | lr 1.00e+00 | 1,234,568 tok/s | elapsed 1:01:40 | ETA 2:03:20");
  CHECK(progress_line(10, 10, 0.5, 999.4, 59.99, 0.0).find("| 999 tok/s | elapsed 0:59 | ETA 0:00") !=
        std::string::npos);
  CHECK(progress_line(5, 10, 0.5, 1000.0, 1.0, 0.0).find("| 1,000 tok/s |") != std::string::npos);
  CHECK(progress_line(5, 10, 0.5, INFINITY, 0.0, 0.0).find("| - tok/s |") != std::string::npos);

  CHECK(error_of([] { progress_line(11, 10, 0, 0, 0, 0); }).find("got step 11 of 10") != std::string::npos);
  CHECK(error_of([] { progress_line(1, 10, 0, 0, -1.0, 0); }).find("elapsed time must be finite") !=
        std::string::npos);
}

TEST_CASE("bits_per_byte converts nats per token") {
  CHECK(bits_per_byte(std::log(2.0)) == doctest::Approx(1.0).epsilon(1e-12));
  CHECK(bits_per_byte(std::log(256.0)) == doctest::Approx(8.0).epsilon(1e-12));  // uniform over bytes
  CHECK(bits_per_byte(std::log(256.0), 4.0) == doctest::Approx(2.0).epsilon(1e-12));
  CHECK(error_of([] { bits_per_byte(1.0, 0.0); }).find("bytes_per_token must be > 0") != std::string::npos);
}

TEST_CASE("Stopwatch measures monotonic wall time and restarts on reset") {
  Stopwatch watch;
  std::this_thread::sleep_for(std::chrono::milliseconds(20));
  const double t = watch.seconds();
  CHECK(t >= 0.02);
  CHECK(watch.seconds() >= t);
  watch.reset();
  CHECK(watch.seconds() < t);
}
