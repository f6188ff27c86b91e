// train/corpus_tokens.cpp: chunked parallel encoding of a corpus, its token
// cache (train/corpus_tokens.h).
#include "train/corpus_tokens.h"

#include <algorithm>
#include <chrono>
#include <cstdio>
#include <filesystem>

#include "nn/safetensors.h"
#include "tensor/error.h"
#include "tensor/file_io.h"

namespace simba {

namespace {

constexpr size_t kChunkBytes = size_t(1) << 16;
constexpr size_t kChunksPerGroup = 64;  // chunks encoded between two progress updates
const char* const kCacheFormat = "simba-token-cache";
const char* const kCacheVersion = "1";

bool is_ascii_alnum(char c) {
  return (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9');
}

// Chunk boundaries: 0 = b_0 < b_1 < ... < b_k = text.size(), each inner b_i
// just after a '\n' that a visible ASCII character precedes and an ASCII
// letter or digit follows.
std::vector<size_t> chunk_bounds(const std::string& text) {
  std::vector<size_t> bounds{0};
  size_t pos = 0;
  while (text.size() - pos > kChunkBytes) {
    size_t cut = pos + kChunkBytes;
    while (cut < text.size() && !(text[cut - 2] > ' ' && text[cut - 2] < 0x7f && text[cut - 1] == '\n' &&
                                  is_ascii_alnum(text[cut])))
      ++cut;
    if (cut >= text.size()) break;
    bounds.push_back(cut);
    pos = cut;
  }
  bounds.push_back(text.size());
  return bounds;
}

// FNV-1a, 64 bit: a cheap fingerprint of the tokenizer file (a cache key, not a defence).
std::string fnv1a64_hex(const std::string& bytes) {
  uint64_t h = 0xcbf29ce484222325ULL;
  for (unsigned char c : bytes) h = (h ^ c) * 0x100000001b3ULL;
  char buf[17];
  std::snprintf(buf, sizeof buf, "%016llx", static_cast<unsigned long long>(h));
  return buf;
}

SafetensorsMetadata cache_key(const std::string& data_path, const std::string& tokenizer_path) {
  namespace fs = std::filesystem;
  const auto mtime = fs::last_write_time(data_path).time_since_epoch();
  const std::string tokenizer_bytes = read_file(tokenizer_path);
  return {{"format", kCacheFormat},
          {"version", kCacheVersion},
          {"data_bytes", std::to_string(fs::file_size(data_path))},
          {"data_mtime_ns", std::to_string(std::chrono::duration_cast<std::chrono::nanoseconds>(mtime).count())},
          {"tokenizer_fnv1a64", fnv1a64_hex(tokenizer_bytes)},
          {"tokenizer_bytes", std::to_string(tokenizer_bytes.size())}};
}

}  // namespace

int64_t padded_vocab_size(int64_t vocab) { return (vocab + 7) / 8 * 8; }

std::vector<int64_t> encode_corpus(const BpeTokenizer& tokenizer, const std::string& text, const std::string& what,
                                   std::ostream* progress) {
  const auto start = std::chrono::steady_clock::now();
  const std::vector<size_t> bounds = chunk_bounds(text);
  const size_t chunks = bounds.size() - 1;
  std::vector<int64_t> ids;
  for (size_t first = 0; first < chunks; first += kChunksPerGroup) {
    const size_t last = std::min(chunks, first + kChunksPerGroup);
    std::vector<std::string> group;
    for (size_t i = first; i < last; ++i) group.push_back(text.substr(bounds[i], bounds[i + 1] - bounds[i]));
    for (const std::vector<int64_t>& chunk_ids : tokenizer.encode_batch(group))
      ids.insert(ids.end(), chunk_ids.begin(), chunk_ids.end());
    if (progress) {
      char line[200];
      std::snprintf(line, sizeof line, "\rtokenizing %s: %3d%% (%.1f of %.1f MB)", what.c_str(),
                    static_cast<int>(100.0 * bounds[last] / std::max<size_t>(text.size(), 1)), bounds[last] / 1e6,
                    text.size() / 1e6);
      *progress << line << std::flush;
    }
  }
  if (progress) {
    const double seconds = std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count();
    char line[200];
    std::snprintf(line, sizeof line, "\ntokenized %s: %zu tokens, %.2f bytes/token, in %.1f s\n", what.c_str(),
                  ids.size(), static_cast<double>(text.size()) / std::max<size_t>(ids.size(), 1), seconds);
    *progress << line << std::flush;
  }
  return ids;
}

std::vector<int64_t> cached_corpus_tokens(const std::string& data_path, const std::string& tokenizer_path,
                                          const BpeTokenizer& tokenizer, const std::string& cache_path,
                                          std::ostream& out) {
  const SafetensorsMetadata key = cache_key(data_path, tokenizer_path);
  if (file_exists(cache_path)) {
    SafetensorsMetadata meta;
    const TensorMap cached = load_safetensors(cache_path, &meta);
    auto it = cached.find("ids");
    if (meta == key && it != cached.end() && it->second.dtype() == DType::I64 && it->second.dim() == 1) {
      out << "tokens of " << data_path << ": " << it->second.numel() << ", from the cache " << cache_path << "\n";
      return it->second.to_ints();
    }
  }
  const std::string text = read_file(data_path);
  SIMBA_CHECK_HINT(!text.empty(), "text data file '" << data_path << "' is empty: there is nothing to train on",
                   "pass a UTF-8 text file with at least a few kilobytes of text");
  std::vector<int64_t> ids = encode_corpus(tokenizer, text, data_path, &out);
  save_safetensors(cache_path, {{"ids", Tensor::from_ints({static_cast<int64_t>(ids.size())}, ids)}}, key);
  return ids;
}

}  // namespace simba
