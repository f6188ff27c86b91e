// train/bpe_tokenizer.cpp: tokenizer.json loading, the added-token matcher,
// the BPE merge loop with its word cache, and decoding.
#include "train/bpe_tokenizer.h"

#include <algorithm>
#include <array>
#include <cstring>
#include <limits>
#include <unordered_map>
#include <utility>

#include <nlohmann/json.hpp>

#include "tensor/error.h"
#include "tensor/file_io.h"
#include "tensor/json.h"
#include "train/byte_level_split.h"
#include "train/utf8_text.h"

namespace simba {

namespace {

using json = nlohmann::json;

// Added tokens as a byte trie, searched leftmost-longest (the match that starts
// first, the longest of those), as Hugging Face's Aho-Corasick matcher does.
class TokenTrie {
 public:
  void add(const std::string& content, int32_t id) {
    int32_t node = 0;
    for (unsigned char c : content) {
      int32_t child = find_child(node, c);
      if (child < 0) {
        child = static_cast<int32_t>(nodes_.size());
        nodes_[node].children.emplace_back(c, child);
        nodes_.emplace_back();
      }
      node = child;
    }
    nodes_[node].id = id;
    first_byte_[static_cast<unsigned char>(content[0])] = true;
  }

  struct Match {
    size_t begin, length;
    int32_t id;
  };

  // The first match in s[from..n), or begin == n when there is none.
  Match find(const char* s, size_t n, size_t from) const {
    for (size_t i = from; i < n; ++i) {
      if (!first_byte_[static_cast<unsigned char>(s[i])]) continue;
      Match best{i, 0, -1};
      int32_t node = 0;
      for (size_t j = i; j < n; ++j) {
        node = find_child(node, static_cast<unsigned char>(s[j]));
        if (node < 0) break;
        if (nodes_[node].id >= 0) best = {i, j + 1 - i, nodes_[node].id};
      }
      if (best.id >= 0) return best;
    }
    return {n, 0, -1};
  }

 private:
  struct Node {
    std::vector<std::pair<unsigned char, int32_t>> children;
    int32_t id = -1;  // the token ending here, if any
  };
  int32_t find_child(int32_t node, unsigned char c) const {
    for (const auto& [byte, child] : nodes_[node].children)
      if (byte == c) return child;
    return -1;
  }
  std::vector<Node> nodes_{1};
  std::array<bool, 256> first_byte_{};
};

// (left id, right id) -> (rank, merged id), open addressing: the lookup of the
// merge loop, so a flat table rather than std::unordered_map's nodes.
class MergeTable {
 public:
  struct Entry {
    uint64_t key = kEmpty;
    int32_t rank = 0, result = 0;
  };

  void reserve(size_t n) {
    size_t cap = 16;
    while (cap < 2 * n) cap *= 2;
    slots_.assign(cap, Entry{});
    mask_ = cap - 1;
  }
  // A pair listed twice keeps its later rank, as Hugging Face's HashMap insert does.
  void insert(int32_t a, int32_t b, int32_t rank, int32_t result) {
    const uint64_t key = key_of(a, b);
    slots_[slot_of(key)] = {key, rank, result};
  }
  const Entry* find(int32_t a, int32_t b) const {
    const Entry& e = slots_[slot_of(key_of(a, b))];
    return e.key == kEmpty ? nullptr : &e;
  }

 private:
  static constexpr uint64_t kEmpty = ~uint64_t{0};
  static uint64_t key_of(int32_t a, int32_t b) { return (uint64_t(uint32_t(a)) << 32) | uint32_t(b); }
  // The slot holding `key`, or the empty slot where it would go.
  size_t slot_of(uint64_t key) const {
    size_t i = static_cast<size_t>((key * 0x9E3779B97F4A7C15ull) >> 20) & mask_;
    while (slots_[i].key != kEmpty && slots_[i].key != key) i = (i + 1) & mask_;
    return i;
  }
  std::vector<Entry> slots_;
  size_t mask_ = 0;
};

// The words a thread has merged already -> their ids. Text repeats its words,
// so most words are found here and never reach the merge loop. Open
// addressing over one byte arena and one id arena: a lookup is a hash and,
// usually, one memcmp, with no allocation per word.
class WordCache {
 public:
  static constexpr size_t kMaxWords = 1 << 18;   // then it starts over: bounded memory, no recency to track
  static constexpr size_t kMaxWordBytes = 256;   // longer words are rare and not worth keeping

  static uint64_t hash(const char* p, size_t n) {
    uint64_t h = n * 0x9E3779B97F4A7C15ull;
    uint64_t w;
    for (; n >= 8; p += 8, n -= 8) {
      std::memcpy(&w, p, 8);
      h = (h ^ w) * 0xBF58476D1CE4E5B9ull;
      h ^= h >> 31;
    }
    w = 0;
    std::memcpy(&w, p, n);
    h = (h ^ w) * 0x94D049BB133111EBull;
    return (h ^ (h >> 29)) | 1;  // 0 marks an empty slot
  }

  // The cached ids of word p[0..n) with hash h, appended to out; false if absent.
  bool find(const char* p, size_t n, uint64_t h, std::vector<int64_t>& out) const {
    if (slots_.empty()) return false;
    for (size_t i = h & (slots_.size() - 1);; i = (i + 1) & (slots_.size() - 1)) {
      const Slot& s = slots_[i];
      if (s.hash == 0) return false;
      if (s.hash == h && s.word_len == n && std::memcmp(words_.data() + s.word_offset, p, n) == 0) {
        out.insert(out.end(), ids_.begin() + s.ids_offset, ids_.begin() + s.ids_offset + s.ids_count);
        return true;
      }
    }
  }

  void insert(const char* p, size_t n, uint64_t h, const int64_t* ids, size_t count) {
    if (n > kMaxWordBytes) return;
    if (used_ >= kMaxWords) clear();
    if (2 * (used_ + 1) > slots_.size()) grow();
    Slot& s = probe(h);
    s = {h, static_cast<uint32_t>(words_.size()), static_cast<uint32_t>(n), static_cast<uint32_t>(ids_.size()),
         static_cast<uint32_t>(count)};
    words_.append(p, n);
    ids_.insert(ids_.end(), ids, ids + count);
    ++used_;
  }

 private:
  struct Slot {
    uint64_t hash;
    uint32_t word_offset, word_len, ids_offset, ids_count;
  };
  Slot& probe(uint64_t h) {
    size_t i = h & (slots_.size() - 1);
    while (slots_[i].hash != 0) i = (i + 1) & (slots_.size() - 1);
    return slots_[i];
  }
  void grow() {
    std::vector<Slot> old(std::max<size_t>(1024, 2 * slots_.size()), Slot{});
    old.swap(slots_);
    for (const Slot& s : old)
      if (s.hash != 0) probe(s.hash) = s;
  }
  void clear() {
    slots_.assign(slots_.size(), Slot{});
    words_.clear();
    ids_.clear();
    used_ = 0;
  }
  std::vector<Slot> slots_;
  std::string words_;
  std::vector<int32_t> ids_;
  size_t used_ = 0;
};

}  // namespace

struct BpeTokenizer::Impl {
  std::string source;  // "tokenizer '<path>'", the prefix of every error
  bool nfc = false;
  bool ignore_merges = false;
  std::unordered_map<std::string, int32_t> vocab;  // ignore_merges: a word's bytes -> its whole-word token
  std::array<int32_t, 256> byte_id{};              // the single-byte tokens (-1: a byte UTF-8 never holds)
  MergeTable merges;
  TokenTrie raw_added, normalized_added;           // steps 1 and 3 of the header
  std::vector<std::string> id_bytes;               // what each id decodes to
  std::vector<bool> id_defined;
  ByteLevelSplit split;

  // Per-thread state of encode: PCRE2 scratch, buffers, the word cache.
  struct Workspace {
    explicit Workspace(const Impl& impl) : scratch(impl.split) {}
    ByteLevelSplit::Scratch scratch;
    std::vector<std::pair<size_t, size_t>> words;
    WordCache cache;
    struct Symbol {
      int32_t id, prev, next;  // id -1: merged into the symbol on its left
    };
    std::vector<Symbol> symbols;
    std::vector<std::pair<int32_t, int32_t>> heap;  // (rank, position of the left symbol)
  };

  void encode(const std::string& text, Workspace& ws, std::vector<int64_t>& out) const;
  void encode_normalized(const std::string& text, Workspace& ws, std::vector<int64_t>& out) const;
  void encode_word(const char* p, size_t n, Workspace& ws, std::vector<int64_t>& out) const;
  void merge_word(const char* p, size_t n, Workspace& ws, std::vector<int64_t>& out) const;
};

// ---------------------------------------------------------------- encoding

void BpeTokenizer::Impl::encode(const std::string& text, Workspace& ws, std::vector<int64_t>& out) const {
  const size_t bad = first_invalid_utf8(text);
  SIMBA_CHECK_HINT(bad == std::string::npos,
                   source << ": cannot encode text that is not valid UTF-8 (ill-formed sequence at byte " << bad
                          << " of " << text.size() << ")",
                   "tokenizer.json tokenizers work on Unicode text; convert the input to UTF-8 first");
  size_t pos = 0;
  while (pos < text.size()) {
    const TokenTrie::Match m = raw_added.find(text.data(), text.size(), pos);
    if (m.begin > pos) {
      const std::string gap = text.substr(pos, m.begin - pos);
      encode_normalized(nfc ? simba::nfc(gap) : gap, ws, out);
    }
    if (m.id >= 0) out.push_back(m.id);
    pos = m.begin + m.length;
  }
}

void BpeTokenizer::Impl::encode_normalized(const std::string& text, Workspace& ws, std::vector<int64_t>& out) const {
  size_t pos = 0;
  while (pos < text.size()) {
    const TokenTrie::Match m = normalized_added.find(text.data(), text.size(), pos);
    if (m.begin > pos) {
      split.split(text.data() + pos, m.begin - pos, ws.scratch, ws.words);
      for (const auto& [offset, length] : ws.words) encode_word(text.data() + pos + offset, length, ws, out);
    }
    if (m.id >= 0) out.push_back(m.id);
    pos = m.begin + m.length;
  }
}

void BpeTokenizer::Impl::encode_word(const char* p, size_t n, Workspace& ws, std::vector<int64_t>& out) const {
  if (n == 1) {
    out.push_back(byte_id[static_cast<unsigned char>(*p)]);
    return;
  }
  const uint64_t h = WordCache::hash(p, n);
  if (ws.cache.find(p, n, h, out)) return;
  const size_t first = out.size();
  const auto whole = ignore_merges ? vocab.find(std::string(p, n)) : vocab.end();
  if (whole != vocab.end()) {
    out.push_back(whole->second);
  } else {
    merge_word(p, n, ws, out);
  }
  ws.cache.insert(p, n, h, out.data() + first, out.size() - first);
}

void BpeTokenizer::Impl::merge_word(const char* p, size_t n, Workspace& ws, std::vector<int64_t>& out) const {
  auto& sym = ws.symbols;
  auto& heap = ws.heap;
  sym.resize(n);
  heap.clear();
  const int32_t last = static_cast<int32_t>(n) - 1;
  for (int32_t i = 0; i <= last; ++i) sym[i] = {byte_id[static_cast<unsigned char>(p[i])], i - 1, i < last ? i + 1 : -1};
  // A min-heap on (rank, position): the lowest rank first, the leftmost among equal ranks.
  const auto later = [](const std::pair<int32_t, int32_t>& a, const std::pair<int32_t, int32_t>& b) { return a > b; };
  const auto push = [&](int32_t left) {
    if (const MergeTable::Entry* m = merges.find(sym[left].id, sym[sym[left].next].id)) {
      heap.emplace_back(m->rank, left);
      std::push_heap(heap.begin(), heap.end(), later);
    }
  };
  for (int32_t i = 0; i < last; ++i) push(i);
  while (!heap.empty()) {
    std::pop_heap(heap.begin(), heap.end(), later);
    const auto [rank, left] = heap.back();
    heap.pop_back();
    // Entries go stale when a neighbour merges first; the pair now at `left` must still be this merge.
    const int32_t right = sym[left].next;
    if (sym[left].id < 0 || right < 0) continue;
    const MergeTable::Entry* m = merges.find(sym[left].id, sym[right].id);
    if (!m || m->rank != rank) continue;
    sym[left].id = m->result;
    sym[right].id = -1;
    sym[left].next = sym[right].next;
    if (sym[left].next >= 0) sym[sym[left].next].prev = left;
    if (sym[left].prev >= 0) push(sym[left].prev);
    if (sym[left].next >= 0) push(left);
  }
  for (int32_t i = 0; i >= 0; i = sym[i].next) out.push_back(sym[i].id);
}

int64_t BpeTokenizer::vocab_size() const { return static_cast<int64_t>(impl_->id_bytes.size()); }

std::vector<int64_t> BpeTokenizer::encode(const std::string& text) const {
  Impl::Workspace ws(*impl_);
  std::vector<int64_t> ids;
  ids.reserve(text.size() / 3 + 8);
  impl_->encode(text, ws, ids);
  return ids;
}

std::vector<std::vector<int64_t>> BpeTokenizer::encode_batch(const std::vector<std::string>& texts) const {
  std::vector<std::vector<int64_t>> out(texts.size());
  const int64_t n = static_cast<int64_t>(texts.size());
  int64_t failed = n;  // the lowest index that failed, and its message
  std::string failure;
#pragma omp parallel
  {
    Impl::Workspace ws(*impl_);
#pragma omp for schedule(dynamic, 16)
    for (int64_t i = 0; i < n; ++i) {
      try {
        impl_->encode(texts[i], ws, out[i]);
      } catch (const Error& e) {  // exceptions must not leave an OpenMP region
#pragma omp critical(simba_encode_batch)
        if (i < failed) {
          failed = i;
          failure = e.message();
        }
      }
    }
  }
  SIMBA_CHECK(failed == n, "text " << failed << " (0-based) of the batch: " << failure);
  return out;
}

std::string BpeTokenizer::decode(const std::vector<int64_t>& ids) const {
  const Impl& t = *impl_;
  std::string bytes;
  for (size_t i = 0; i < ids.size(); ++i) {
    const int64_t id = ids[i];
    SIMBA_CHECK(id >= 0 && id < vocab_size() && t.id_defined[id],
                t.source << ": cannot decode token id " << id << " at position " << i << ": "
                         << (id >= 0 && id < vocab_size() ? "no token has this id"
                                                          : "outside the vocabulary [0, " + std::to_string(vocab_size()) + ")"));
    bytes += t.id_bytes[id];
  }
  return utf8_lossy(bytes);
}

std::vector<int64_t> BpeTokenizer::token_byte_counts() const {
  std::vector<int64_t> counts(static_cast<size_t>(vocab_size()), 0);
  for (size_t id = 0; id < counts.size(); ++id)
    if (impl_->id_defined[id]) counts[id] = static_cast<int64_t>(impl_->id_bytes[id].size());
  return counts;
}

// ---------------------------------------------------------------- loading

namespace {

std::string describe(const json& v) {
  std::string text = v.dump();
  if (text.size() > 80) text = text.substr(0, 77) + "...";
  return text;
}

// `j[key]` as a component object with a string "type", or nullptr when the
// key is absent or null.
const json* component(const json& j, const char* key, const std::string& source) {
  const auto it = j.find(key);
  if (it == j.end() || it->is_null()) return nullptr;
  SIMBA_CHECK(it->is_object() && it->contains("type") && (*it)["type"].is_string(),
              source << ": \"" << key << "\" must be an object with a string \"type\", got " << describe(*it));
  return &*it;
}

// A boolean option of a component, `fallback` when absent.
bool flag(const json& obj, const char* key, bool fallback, const std::string& where) {
  const auto it = obj.find(key);
  if (it == obj.end() || it->is_null()) return fallback;
  SIMBA_CHECK(it->is_boolean(), where << "." << key << ": expected true or false, got " << describe(*it));
  return it->get<bool>();
}

void check_byte_level(const json& c, const std::string& where) {
  SIMBA_CHECK_HINT(!flag(c, "add_prefix_space", false, where),
                   where << ": add_prefix_space true is not supported",
                   "simba supports the GPT-NeoX / GPT-2 layout, add_prefix_space false");
  SIMBA_CHECK_HINT(flag(c, "use_regex", true, where), where << ": use_regex false is not supported",
                   "simba supports the ByteLevel split with the GPT-2 pattern, use_regex true");
}

}  // namespace

BpeTokenizer BpeTokenizer::from_file(const std::string& path) {
  return from_json_text(read_file(path), "tokenizer '" + path + "'");
}

BpeTokenizer BpeTokenizer::from_json_text(const std::string& json_text, const std::string& source) {
  auto impl = std::make_shared<Impl>();
  impl->source = source;
  const json j = parse_json_bounded(json_text, source);
  SIMBA_CHECK(j.is_object(), source << ": expected a JSON object at the top level, got " << describe(j));

  // The pipeline around the model: only the GPT-NeoX components.
  if (const json* n = component(j, "normalizer", source)) {
    const std::string type = (*n)["type"];
    SIMBA_CHECK_HINT(type == "NFC", source << ": normalizer '" << type << "' is not supported",
                     "supported normalizers: NFC, or none (null)");
    impl->nfc = true;
  }
  const json* pre = component(j, "pre_tokenizer", source);
  SIMBA_CHECK_HINT(pre && (*pre)["type"] == "ByteLevel",
                   source << ": pre_tokenizer '" << (pre ? (*pre)["type"].get<std::string>() : "none")
                          << "' is not supported",
                   "supported pre_tokenizer: ByteLevel (the GPT-2 / GPT-NeoX split)");
  check_byte_level(*pre, source + ": pre_tokenizer");
  const json* dec = component(j, "decoder", source);
  SIMBA_CHECK_HINT(dec && (*dec)["type"] == "ByteLevel",
                   source << ": decoder '" << (dec ? (*dec)["type"].get<std::string>() : "none")
                          << "' is not supported",
                   "supported decoder: ByteLevel");
  if (const json* post = component(j, "post_processor", source)) {
    const std::string type = (*post)["type"];
    SIMBA_CHECK_HINT(type == "ByteLevel", source << ": post_processor '" << type << "' is not supported",
                     "supported post_processors: ByteLevel (offsets only) or none; simba adds no tokens around "
                     "the text");
  }
  for (const char* key : {"truncation", "padding"}) {
    SIMBA_CHECK_HINT(!j.contains(key) || j[key].is_null(),
                     source << ": \"" << key << "\" is set; simba does not " << key << " encodings",
                     "set it to null; simba encodes each text whole");
  }

  // The model: BPE over the byte-level alphabet.
  const json* model = component(j, "model", source);
  SIMBA_CHECK_HINT(model, source << ": no \"model\"", "a tokenizer.json needs a model, e.g. {\"type\": \"BPE\", ...}");
  const std::string mwhere = source + ": model";
  const std::string mtype = (*model)["type"];
  SIMBA_CHECK_HINT(mtype == "BPE", mwhere << " type '" << mtype << "' is not supported",
                   "supported model: BPE (WordPiece, Unigram and WordLevel are not)");
  for (const char* key : {"continuing_subword_prefix", "end_of_word_suffix"}) {
    const auto it = model->find(key);
    SIMBA_CHECK(it == model->end() || it->is_null() || *it == "",
                mwhere << "." << key << " " << describe(*it) << " is not supported (byte-level BPE has none)");
  }
  if (const auto it = model->find("dropout"); it != model->end() && !it->is_null()) {
    SIMBA_CHECK(it->is_number() && it->get<double>() == 0.0,
                mwhere << ".dropout " << describe(*it) << " is not supported (encoding must be deterministic)");
  }
  impl->ignore_merges = flag(*model, "ignore_merges", false, mwhere);

  // Vocabulary: token string -> id, ids unique.
  const auto vit = model->find("vocab");
  SIMBA_CHECK(vit != model->end() && vit->is_object(),
              mwhere << ".vocab: expected an object mapping token strings to ids");
  // The id tables below are indexed by id, so their size is the largest id.
  // Ids may leave gaps (reserved ids), but must stay below twice the number of
  // tokens plus 1024: the tables are then sized by the file's own content,
  // never by one large id (a 4 KB file could otherwise ask for gigabytes).
  const auto ait = j.find("added_tokens");
  const size_t tokens = vit->size() + (ait != j.end() && ait->is_array() ? ait->size() : 0);
  const size_t id_limit = 2 * tokens + 1024;
  auto check_id = [&](const json& idv, const std::string& where) {
    SIMBA_CHECK(idv.is_number_integer() && idv.get<int64_t>() >= 0 && idv.get<uint64_t>() < id_limit,
                where << ": expected an id in [0, " << id_limit << ") (twice the " << tokens
                      << " vocabulary entries and added tokens, plus 1024), got " << describe(idv));
  };
  std::unordered_map<std::string, int32_t> by_string;
  std::vector<std::string> token_of;  // id -> token string, "" where unused
  std::vector<bool> defined;
  for (const auto& [token, idv] : vit->items()) {
    check_id(idv, mwhere + ".vocab[" + describe(token) + "]");
    SIMBA_CHECK(!token.empty(), mwhere << ".vocab: the empty string is not a token");
    const size_t id = idv.get<size_t>();
    if (id >= token_of.size()) {
      token_of.resize(id + 1);
      defined.resize(id + 1, false);
    }
    SIMBA_CHECK(!defined[id], mwhere << ".vocab: id " << id << " is given to both " << describe(token_of[id])
                                     << " and " << describe(token));
    token_of[id] = token;
    defined[id] = true;
    by_string.emplace(token, static_cast<int32_t>(id));
  }
  // Every byte that valid UTF-8 can hold needs a token, or text would be lost;
  // C0, C1 and F5..FF never occur in it (GPT-NeoX's vocabulary leaves them out).
  for (int b = 0; b < 256; ++b) {
    impl->byte_id[b] = -1;
    if (b == 0xC0 || b == 0xC1 || b >= 0xF5) continue;
    std::string c;
    append_utf8(c, byte_level_char(static_cast<unsigned char>(b)));
    const auto it = by_string.find(c);
    SIMBA_CHECK_HINT(it != by_string.end(),
                     mwhere << ".vocab: no token for byte " << b << " (byte-level character " << describe(c) << ")",
                     "a byte-level BPE vocabulary must hold a single-byte token for every byte of UTF-8 text");
    impl->byte_id[b] = it->second;
  }

  // Merges: "a b" or ["a", "b"]; the parts and their concatenation must be tokens.
  const auto mit = model->find("merges");
  SIMBA_CHECK(mit != model->end() && mit->is_array(), mwhere << ".merges: expected an array of merges");
  impl->merges.reserve(mit->size());
  for (size_t r = 0; r < mit->size(); ++r) {
    const json& m = (*mit)[r];
    std::string a, b;
    if (m.is_string()) {
      const std::string s = m;
      const size_t space = s.find(' ');
      SIMBA_CHECK(space != std::string::npos && s.find(' ', space + 1) == std::string::npos,
                  mwhere << ".merges[" << r << "]: expected \"left right\" (two tokens, one space), got "
                         << describe(m));
      a = s.substr(0, space);
      b = s.substr(space + 1);
    } else {
      SIMBA_CHECK(m.is_array() && m.size() == 2 && m[0].is_string() && m[1].is_string(),
                  mwhere << ".merges[" << r << "]: expected \"left right\" or [\"left\", \"right\"], got "
                         << describe(m));
      a = m[0];
      b = m[1];
    }
    const auto id_of = [&](const std::string& token, const char* role) {
      const auto it = by_string.find(token);
      SIMBA_CHECK(it != by_string.end(), mwhere << ".merges[" << r << "] " << describe(m) << ": " << role << " "
                                                << describe(token) << " is not in the vocabulary");
      return it->second;
    };
    const int32_t ia = id_of(a, "part"), ib = id_of(b, "part");
    impl->merges.insert(ia, ib, static_cast<int32_t>(r), id_of(a + b, "result"));
  }

  // Added tokens: they take their ids over in decoding, and are matched before BPE.
  impl->id_bytes.resize(token_of.size());
  for (size_t id = 0; id < token_of.size(); ++id) {
    if (!defined[id]) continue;
    bool in_alphabet = true;
    impl->id_bytes[id] = byte_level_decode(token_of[id], &in_alphabet);
    if (impl->ignore_merges && in_alphabet) impl->vocab.emplace(impl->id_bytes[id], static_cast<int32_t>(id));
  }
  std::vector<bool> added_id;
  if (ait != j.end() && !ait->is_null()) {
    SIMBA_CHECK(ait->is_array(), source << ": added_tokens: expected an array, got " << describe(*ait));
    for (size_t k = 0; k < ait->size(); ++k) {
      const json& t = (*ait)[k];
      const std::string where = source + ": added_tokens[" + std::to_string(k) + "]";
      SIMBA_CHECK(t.is_object() && t.contains("id") && t.contains("content") && t["content"].is_string() &&
                      !t["content"].get<std::string>().empty(),
                  where << ": expected an object with an \"id\" and a non-empty \"content\", got " << describe(t));
      check_id(t["id"], where);
      const size_t id = t["id"].get<size_t>();
      const std::string content = t["content"];
      for (const char* key : {"lstrip", "rstrip", "single_word"}) {
        SIMBA_CHECK_HINT(!flag(t, key, false, where), where << " " << describe(content) << ": " << key
                                                            << " true is not supported",
                         "simba matches added tokens exactly, as lstrip/rstrip/single_word false");
      }
      const bool special = flag(t, "special", false, where);
      const bool normalized = flag(t, "normalized", !special, where);
      if (id >= impl->id_bytes.size()) {
        impl->id_bytes.resize(id + 1);
        token_of.resize(id + 1);
        defined.resize(id + 1, false);
      }
      added_id.resize(impl->id_bytes.size(), false);
      SIMBA_CHECK(!added_id[id], where << ": id " << id << " is given to two added tokens");
      SIMBA_CHECK(!defined[id] || token_of[id] == content,
                  where << ": id " << id << " is " << describe(content) << " here but " << describe(token_of[id])
                        << " in model.vocab");
      added_id[id] = true;
      defined[id] = true;
      token_of[id] = content;
      impl->id_bytes[id] = byte_level_decode(content);
      if (normalized) {
        // Matched in normalized text, so in its normalized form.
        impl->normalized_added.add(impl->nfc ? nfc(content) : content, static_cast<int32_t>(id));
      } else {
        impl->raw_added.add(content, static_cast<int32_t>(id));
      }
    }
  }
  impl->id_defined = defined;
  return BpeTokenizer(std::move(impl));
}

}  // namespace simba
