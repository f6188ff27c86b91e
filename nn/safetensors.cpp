// nn/safetensors.cpp: safetensors reader (validate everything, then copy) and
// writer (packed, aligned, atomic). The rules checked here are those of the
// reference Rust reader (huggingface/safetensors src/tensor.rs).
#include "nn/safetensors.h"

#include <algorithm>
#include <cstring>
#include <limits>
#include <vector>

#include <nlohmann/json.hpp>

#include "tensor/checked_math.h"
#include "tensor/file_io.h"
#include "tensor/json.h"

// The file format is little-endian; on a little-endian host the tensor bytes
// can be copied as they are.
static_assert(__BYTE_ORDER__ == __ORDER_LITTLE_ENDIAN__, "safetensors I/O assumes a little-endian host");

namespace simba {

namespace {

using json = nlohmann::json;

// The reference reader's MAX_HEADER_SIZE: a larger N is a damaged or hostile
// file, and refusing it keeps us from allocating gigabytes for a "header".
constexpr uint64_t kMaxHeaderBytes = 100000000;
constexpr const char* kMetadataKey = "__metadata__";

// The file's dtype strings and the dtypes they load as, one to one: a tensor
// keeps the type it is stored in.
struct FileDType {
  const char* name;
  DType dtype;
};

constexpr FileDType kFileDTypes[] = {
    {"F32", DType::F32}, {"F64", DType::F64}, {"I64", DType::I64}, {"F16", DType::F16}, {"BF16", DType::BF16},
};

const FileDType* find_file_dtype(const std::string& name) {
  for (const FileDType& d : kFileDTypes)
    if (name == d.name) return &d;
  return nullptr;
}

// One validated header entry.
struct Entry {
  std::string name;
  const FileDType* dtype;
  Shape shape;
  uint64_t begin, end;  // byte range within the data buffer, end one past
};

std::string json_type(const json& v) {
  if (v.is_number_unsigned() || v.is_number_integer()) return "integer " + v.dump();
  if (v.is_number_float()) return "number " + v.dump();
  return v.type_name();
}

// The header: bounded, strict JSON (tensor/json.h: no trailing bytes, no
// duplicate keys, since a tensor name appearing twice is ambiguous about which
// data is meant), and an object.
json parse_header(const std::string& where, const char* first, const char* last) {
  const json header = parse_json_bounded(std::string(first, last), where + ": the JSON header");
  SIMBA_CHECK(header.is_object(), where << ": the JSON header must be an object, got " << json_type(header));
  return header;
}

SafetensorsMetadata parse_metadata(const std::string& where, const json& m) {
  SIMBA_CHECK(m.is_object(), where << ": '" << kMetadataKey << "' must be an object of strings, got "
                                   << json_type(m));
  SafetensorsMetadata out;
  for (const auto& [key, value] : m.items()) {
    SIMBA_CHECK(value.is_string(), where << ": '" << kMetadataKey << "' value of key '" << key
                                         << "' must be a string, got " << json_type(value));
    out[key] = value.get<std::string>();
  }
  return out;
}

// A JSON integer in [0, max], or an error naming `what`.
uint64_t non_negative_integer(const std::string& where, const std::string& what, const json& v, uint64_t max) {
  SIMBA_CHECK(v.is_number_unsigned() || (v.is_number_integer() && v.get<int64_t>() >= 0),
              where << ": " << what << " must be a non-negative integer, got " << json_type(v));
  uint64_t u = v.get<uint64_t>();
  SIMBA_CHECK(u <= max, where << ": " << what << " = " << u << " is too large (max " << max << ")");
  return u;
}

Entry parse_entry(const std::string& where, const std::string& name, const json& e) {
  const std::string at = where + ": tensor '" + name + "'";
  SIMBA_CHECK(e.is_object(), at << ": the header entry must be an object, got " << json_type(e));
  for (const char* key : {"dtype", "shape", "data_offsets"})
    SIMBA_CHECK(e.contains(key), at << ": the header entry has no '" << key << "'");
  const json& dtype = e["dtype"];
  const json& shape = e["shape"];
  const json& offsets = e["data_offsets"];
  SIMBA_CHECK(dtype.is_string(), at << ": 'dtype' must be a string, got " << json_type(dtype));
  SIMBA_CHECK(shape.is_array(), at << ": 'shape' must be an array, got " << json_type(shape));
  SIMBA_CHECK(offsets.is_array(), at << ": 'data_offsets' must be an array, got " << json_type(offsets));

  Entry out;
  out.name = name;
  const std::string dtype_str = dtype.get<std::string>();
  out.dtype = find_file_dtype(dtype_str);
  SIMBA_CHECK_HINT(out.dtype, at << ": dtype '" << dtype_str << "' cannot be loaded; expected one of F32, F64, I64, F16, BF16",
                   "convert the checkpoint to float32 (e.g. with PyTorch) before loading it");

  // numel · itemsize must equal the byte range; computed with overflow checks
  // because a crafted shape could wrap around to a small, plausible size.
  int64_t nbytes = static_cast<int64_t>(dtype_size(out.dtype->dtype));
  for (size_t d = 0; d < shape.size(); ++d) {
    uint64_t size = non_negative_integer(at, "shape[" + std::to_string(d) + "]", shape[d],
                                         static_cast<uint64_t>(std::numeric_limits<int64_t>::max()));
    out.shape.push_back(static_cast<int64_t>(size));
    nbytes = checked_mul(nbytes, static_cast<int64_t>(size), [&] {
      return at + ": the byte count of shape " + shape.dump() + " of dtype " + dtype_str;
    });
  }

  SIMBA_CHECK(offsets.size() == 2, at << ": 'data_offsets' must be [begin, end], got " << offsets.dump());
  out.begin = non_negative_integer(at, "data_offsets[0]", offsets[0], std::numeric_limits<uint64_t>::max());
  out.end = non_negative_integer(at, "data_offsets[1]", offsets[1], std::numeric_limits<uint64_t>::max());
  SIMBA_CHECK(out.begin <= out.end, at << ": data_offsets [" << out.begin << ", " << out.end
                                       << "] must have begin <= end");
  SIMBA_CHECK(static_cast<uint64_t>(nbytes) == out.end - out.begin,
              at << ": shape " << shape_str(out.shape) << " of dtype " << dtype_str << " needs " << nbytes
                 << " bytes, but data_offsets [" << out.begin << ", " << out.end << "] hold "
                 << out.end - out.begin);
  return out;
}

// One entry's bytes, as they are, read into a fresh tensor of the stored dtype; `data` is the
// file offset of the data buffer.
Tensor entry_tensor(const Entry& e, const FileReader& file, uint64_t data) {
  Tensor t = Tensor::empty(e.shape, e.dtype->dtype);
  if (t.numel() > 0) file.read_at(data + e.begin, t.raw_data(), e.end - e.begin);
  return t;
}

}  // namespace

const char* safetensors_dtype_name(DType t) {
  for (const FileDType& d : kFileDTypes)
    if (d.dtype == t) return d.name;
  SIMBA_FAIL("safetensors: dtype " << dtype_name(t) << " has no safetensors name");
}

TensorMap load_safetensors(const std::string& path, SafetensorsMetadata* metadata) {
  const std::string where = "safetensors file '" + path + "'";
  // The header, then each tensor read straight into its storage: the tensors are the only copy.
  const FileReader file(path);
  const uint64_t file_size = file.size();

  SIMBA_CHECK(file_size >= 8, where << ": the file has " << file_size
                                    << " bytes, fewer than the 8-byte header length; expected a safetensors file");
  uint64_t header_len;
  file.read_at(0, &header_len, 8);
  SIMBA_CHECK(header_len <= kMaxHeaderBytes, where << ": header length " << header_len << " exceeds the limit of "
                                                   << kMaxHeaderBytes << " bytes; the file is damaged or not safetensors");
  SIMBA_CHECK(8 + header_len <= file_size, where << ": truncated: the header claims " << header_len
                                                 << " bytes but the file has only " << file_size - 8
                                                 << " bytes after the 8-byte length");

  std::string header_text(header_len, '\0');
  file.read_at(8, header_text.data(), header_len);
  const json header = parse_header(where, header_text.data(), header_text.data() + header_len);
  SafetensorsMetadata meta;
  std::vector<Entry> entries;
  for (const auto& [name, value] : header.items()) {
    if (name == kMetadataKey)
      meta = parse_metadata(where, value);
    else
      entries.push_back(parse_entry(where, name, value));
  }

  // The buffer must be tiled exactly: sorted by offsets, each tensor begins
  // where the previous one ends, the first at 0 and the last at the end of the
  // file. Overlaps would alias two tensors; gaps and trailing bytes mean the
  // header does not describe the file.
  std::vector<const Entry*> by_offset;
  for (const Entry& e : entries) by_offset.push_back(&e);
  std::sort(by_offset.begin(), by_offset.end(), [](const Entry* a, const Entry* b) {
    return a->begin != b->begin ? a->begin < b->begin : a->end < b->end;
  });
  uint64_t covered = 0;
  const Entry* previous = nullptr;
  for (const Entry* e : by_offset) {
    SIMBA_CHECK(e->begin >= covered,
                where << ": tensor '" << e->name << "' data_offsets [" << e->begin << ", " << e->end
                      << "] overlap tensor '" << previous->name << "' [" << previous->begin << ", "
                      << previous->end << "]; expected it to begin at " << covered);
    SIMBA_CHECK(e->begin == covered,
                where << ": tensor '" << e->name << "' data_offsets [" << e->begin << ", " << e->end
                      << "] are not contiguous: bytes [" << covered << ", " << e->begin
                      << ") of the data buffer belong to no tensor; expected it to begin at " << covered);
    covered = e->end;
    previous = e;
  }
  const uint64_t data_size = file_size - 8 - header_len;
  SIMBA_CHECK(covered <= data_size, where << ": truncated: the tensors need " << covered
                                          << " bytes of data but the file has only " << data_size
                                          << " after the header");
  SIMBA_CHECK(covered == data_size, where << ": " << data_size - covered
                                          << " trailing bytes: data_offsets cover " << covered << " of the "
                                          << data_size << " bytes after the header");

  TensorMap tensors;
  for (const Entry* e : by_offset) tensors.emplace(e->name, entry_tensor(*e, file, 8 + header_len));
  if (metadata) *metadata = std::move(meta);
  return tensors;
}

void save_safetensors(const std::string& path, const TensorMap& tensors, const SafetensorsMetadata& metadata) {
  const std::string where = "safetensors file '" + path + "'";
  std::vector<std::pair<const std::string*, Tensor>> items;
  for (const auto& [name, t] : tensors) {
    SIMBA_CHECK(name != kMetadataKey, where << ": a tensor cannot be named '" << kMetadataKey
                                            << "' (reserved for the metadata map)");
    SIMBA_CHECK(t.defined(), where << ": tensor '" << name << "' is undefined");
    items.emplace_back(&name, t.to(cpu()).contiguous());
  }
  std::sort(items.begin(), items.end(), [](const auto& a, const auto& b) {
    const size_t sa = dtype_size(a.second.dtype()), sb = dtype_size(b.second.dtype());
    return sa != sb ? sa > sb : *a.first < *b.first;
  });

  json header = json::object();
  if (!metadata.empty()) header[kMetadataKey] = metadata;
  uint64_t offset = 0;
  for (const auto& [name, t] : items) {
    const uint64_t nbytes = static_cast<uint64_t>(t.numel()) * dtype_size(t.dtype());
    header[*name] = {{"dtype", safetensors_dtype_name(t.dtype())},
                     {"shape", t.shape()},
                     {"data_offsets", {offset, offset + nbytes}}};
    offset += nbytes;
  }
  std::string header_text;
  try {
    header_text = header.dump();
  } catch (const json::exception& e) {
    SIMBA_FAIL(where << ": cannot encode the header: " << e.what()
                     << " (tensor names and metadata must be valid UTF-8)");
  }
  // Pad with spaces so the data buffer starts 8-byte aligned (8 + N ≡ 0 mod 8).
  header_text.append((8 - header_text.size() % 8) % 8, ' ');

  std::string bytes;
  bytes.reserve(8 + header_text.size() + offset);
  const uint64_t header_len = header_text.size();
  bytes.append(reinterpret_cast<const char*>(&header_len), 8);
  bytes += header_text;
  for (const auto& item : items) {
    const Tensor& t = item.second;
    if (t.numel() > 0)
      bytes.append(static_cast<const char*>(t.raw_data()), static_cast<size_t>(t.numel()) * dtype_size(t.dtype()));
  }
  write_file_atomic(path, bytes);
}

}  // namespace simba
