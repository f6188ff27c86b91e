// tests/test_safetensors.cpp: the safetensors reader/writer (nn/safetensors.h)
// and the helpers under it (tensor/file_io.h, tensor/json.h): round trips,
// hand-built files with F16/BF16 data (kept as stored, byte for byte), one
// test per malformed-file rule (each asserting the message), the bounded JSON
// reader, and atomic-write behaviour when a write fails.
#include <doctest/doctest.h>

#include <signal.h>
#include <sys/resource.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cmath>
#include <cstring>
#include <filesystem>
#include <functional>
#include <limits>

#include <nlohmann/json.hpp>

#include "nn/safetensors.h"
#include "tensor/file_io.h"
#include "tensor/json.h"

#include "tests/test_util.h"

using namespace simba;
namespace fs = std::filesystem;

namespace {

const TempDir g_tmp("test_safetensors");


// A safetensors file from its parts: u64 header length, header, data.
std::string st_bytes(const std::string& header, const std::string& data, uint64_t header_len) {
  std::string out(reinterpret_cast<const char*>(&header_len), 8);
  return out + header + data;
}
std::string st_bytes(const std::string& header, const std::string& data) {
  return st_bytes(header, data, header.size());
}

std::string f32_bytes(const std::vector<float>& v) {
  return std::string(reinterpret_cast<const char*>(v.data()), v.size() * 4);
}
std::string u16_bytes(const std::vector<uint16_t>& v) {
  return std::string(reinterpret_cast<const char*>(v.data()), v.size() * 2);
}

// Writes `bytes` to a fresh file and returns the error message of loading it.
std::string load_error(const std::string& name, const std::string& bytes) {
  const std::string path = g_tmp.file(name);
  write_file_atomic(path, bytes);
  return error_of([&] { load_safetensors(path); });
}

// Every load error must name the file plus each of `parts`.
void check_load_error(const std::string& name, const std::string& bytes, std::vector<std::string> parts) {
  const std::string msg = load_error(name, bytes);
  INFO("message: " << msg);
  CHECK(msg.find(g_tmp.file(name)) != std::string::npos);
  for (const std::string& p : parts) CHECK(msg.find(p) != std::string::npos);
}

// A valid one-tensor file: "a" is F32 [1, 2].
const char* kGoodHeader = R"({"a":{"dtype":"F32","shape":[2],"data_offsets":[0,8]}})";
const std::string kGoodData = f32_bytes({1.0f, 2.0f});

uint32_t f32_bits(float f) {
  uint32_t u;
  std::memcpy(&u, &f, 4);
  return u;
}

}  // namespace

// ------------------------------------------------------------------ round trips

TEST_CASE("safetensors round trip keeps dtype, shape and exact values") {
  const Tensor base = Tensor::from_vector({2, 3}, {0.1, -2.5, 3e-30, 1e30, -0.0, 7.0}, DType::F32);
  TensorMap in;
  in["f32"] = base;
  in["f32_transposed"] = base.transpose(0, 1);  // non-contiguous input
  REQUIRE_FALSE(in["f32_transposed"].is_contiguous());
  in["f64_scalar"] = Tensor::scalar(1.0 / 3.0, DType::F64);  // 0-rank
  in["i64"] = Tensor::from_ints({4}, {1, -2, int64_t(1) << 40, std::numeric_limits<int64_t>::min()});
  in["empty"] = Tensor::zeros({0, 3}, DType::F32);
  in["f64_empty"] = Tensor::zeros({2, 0}, DType::F64);
  const SafetensorsMetadata meta_in{{"format", "pt"}, {"step", "42"}};

  const std::string path = g_tmp.file("roundtrip.safetensors");
  save_safetensors(path, in, meta_in);
  SafetensorsMetadata meta_out;
  const TensorMap out = load_safetensors(path, &meta_out);

  CHECK(meta_out == meta_in);
  REQUIRE(out.size() == in.size());
  for (const auto& [name, t] : in) {
    INFO("tensor " << name);
    REQUIRE(out.count(name) == 1);
    const Tensor& u = out.at(name);
    CHECK(u.dtype() == t.dtype());
    CHECK(u.shape() == t.shape());
    CHECK(u.is_contiguous());
    if (t.dtype() == DType::I64)
      CHECK(u.to_ints() == t.to_ints());
    else
      CHECK(u.to_vector() == t.to_vector());  // bit-exact: F32 and F64 are stored as is
  }
  // -0.0 must survive as -0.0 (to_vector's == would accept +0.0).
  CHECK(std::signbit(out.at("f32").at({1, 1})));
  CHECK(out.at("f32_transposed").at({2, 0}) == static_cast<double>(3e-30f));
}

TEST_CASE("safetensors writer: padded header, descending alignment then name, tiled buffer") {
  TensorMap in;
  in["b_f32"] = Tensor::ones({3}, DType::F32);     // 12 bytes: would misalign 8-byte data after it
  in["a_f32"] = Tensor::ones({1}, DType::F32);
  in["z_f64"] = Tensor::ones({2}, DType::F64);
  in["c_i64"] = Tensor::arange(2, DType::I64);
  const std::string path = g_tmp.file("layout.safetensors");
  save_safetensors(path, in);

  const std::string bytes = read_file(path);
  uint64_t n;
  std::memcpy(&n, bytes.data(), 8);
  CHECK(n % 8 == 0);
  const std::string header_text = bytes.substr(8, n);
  const auto header = nlohmann::json::parse(header_text);
  CHECK_FALSE(header.contains("__metadata__"));  // written only when non-empty
  // 8-byte dtypes first (by name), then 4-byte ones (by name).
  auto offsets = [&](const char* name) { return header[name]["data_offsets"].get<std::vector<uint64_t>>(); };
  CHECK(offsets("c_i64") == std::vector<uint64_t>{0, 16});
  CHECK(offsets("z_f64") == std::vector<uint64_t>{16, 32});
  CHECK(offsets("a_f32") == std::vector<uint64_t>{32, 36});
  CHECK(offsets("b_f32") == std::vector<uint64_t>{36, 48});
  CHECK(header["c_i64"]["dtype"] == "I64");
  CHECK(header["z_f64"]["dtype"] == "F64");
  CHECK(header["b_f32"]["shape"] == nlohmann::json::array({3}));
  CHECK(bytes.size() == 8 + n + 48);
  // Padding is spaces only, after the JSON.
  CHECK(header_text.find_last_not_of(' ') + 1 == nlohmann::json::parse(header_text).dump().size());
}

TEST_CASE("safetensors writer refuses reserved or undefined tensors, without writing") {
  const std::string path = g_tmp.file("refused.safetensors");
  std::string msg = error_of([&] { save_safetensors(path, {{"__metadata__", Tensor::ones({1})}}); });
  CHECK(msg.find("__metadata__") != std::string::npos);
  CHECK(msg.find(path) != std::string::npos);
  msg = error_of([&] { save_safetensors(path, {{"w", Tensor()}}); });
  CHECK(msg.find("'w' is undefined") != std::string::npos);
  CHECK_FALSE(file_exists(path));
}

TEST_CASE("safetensors: hand-built file with F16, BF16 (kept as stored) and __metadata__") {
  // Buffer order differs from name order on purpose: "half" lies after "bf".
  const std::vector<uint16_t> half = {0x3C00, 0xC000, 0x7BFF, 0x0001, 0x8000, 0x7C00, 0xFC00, 0x7E00, 0x3555};
  const std::vector<uint16_t> bf = {0x3F80, 0x8000, 0x7F7F, 0x0001, 0xFF80, 0x7FC0};
  const uint64_t hb = half.size() * 2, bb = bf.size() * 2;
  const std::string header =
      R"({"__metadata__":{"format":"pt","note":"hand-built"},)"
      R"("half":{"dtype":"F16","shape":[3,3],"data_offsets":[)" + std::to_string(bb) + "," +
      std::to_string(bb + hb) + R"(]},"bf":{"dtype":"BF16","shape":[6],"data_offsets":[0,)" +
      std::to_string(bb) + "]}}";
  const std::string path = g_tmp.file("half.safetensors");
  write_file_atomic(path, st_bytes(header, u16_bytes(bf) + u16_bytes(half)));

  SafetensorsMetadata meta;
  const TensorMap t = load_safetensors(path, &meta);
  CHECK(meta == SafetensorsMetadata{{"format", "pt"}, {"note", "hand-built"}});
  REQUIRE(t.size() == 2);
  const Tensor& h = t.at("half");
  CHECK(h.dtype() == DType::F16);
  CHECK(h.shape() == Shape{3, 3});
  CHECK(std::memcmp(h.raw_data(), half.data(), hb) == 0);
  // The values, widened: every float16 is a float32.
  const Tensor hw = h.to(DType::F32);
  const float* hp = hw.data<float>();
  CHECK(hp[0] == 1.0f);
  CHECK(hp[1] == -2.0f);
  CHECK(hp[2] == 65504.0f);                  // largest finite half
  CHECK(hp[3] == std::ldexp(1.0f, -24));     // smallest subnormal half
  CHECK(f32_bits(hp[4]) == 0x80000000u);     // -0
  CHECK(hp[5] == std::numeric_limits<float>::infinity());
  CHECK(hp[6] == -std::numeric_limits<float>::infinity());
  CHECK(std::isnan(hp[7]));
  CHECK(hp[8] == 0.333251953125f);           // 0x3555 = 2^-2 · (1 + 0x155/1024)
  const Tensor& b = t.at("bf");
  CHECK(b.dtype() == DType::BF16);
  CHECK(b.shape() == Shape{6});
  CHECK(std::memcmp(b.raw_data(), bf.data(), bb) == 0);
  const Tensor bw = b.to(DType::F32);
  const float* bp = bw.data<float>();
  CHECK(bp[0] == 1.0f);
  CHECK(f32_bits(bp[1]) == 0x80000000u);
  CHECK(bp[2] == 0x1.fep127f);               // largest finite bfloat16
  CHECK(bp[3] == std::ldexp(1.0f, -133));    // smallest subnormal bfloat16
  CHECK(bp[4] == -std::numeric_limits<float>::infinity());
  CHECK(std::isnan(bp[5]));
}

TEST_CASE("safetensors round trip keeps BF16 and F16 bytes exactly, NaN payloads included") {
  // Every 16-bit pattern once, in a scrambled order, as both types; a strided view too.
  std::vector<uint16_t> patterns(65536);
  for (uint32_t i = 0; i < 65536; ++i) patterns[i] = static_cast<uint16_t>(i * 40503u);  // odd: a bijection
  TensorMap in;
  for (const DType dt : {DType::BF16, DType::F16}) {
    Tensor t = Tensor::empty({256, 256}, dt);
    std::memcpy(t.raw_data(), patterns.data(), patterns.size() * 2);
    in[std::string(dtype_name(dt))] = t;
    in[std::string(dtype_name(dt)) + "_transposed"] = t.transpose(0, 1);
  }
  in["f32"] = Tensor::ones({3}, DType::F32);  // 12 bytes before the 2-byte tensors
  const std::string path = g_tmp.file("half_roundtrip.safetensors");
  save_safetensors(path, in);

  const std::string bytes = read_file(path);
  uint64_t n;
  std::memcpy(&n, bytes.data(), 8);
  const auto header = nlohmann::json::parse(bytes.substr(8, n));
  CHECK(header["bfloat16"]["dtype"] == "BF16");
  CHECK(header["float16"]["dtype"] == "F16");
  CHECK(header["f32"]["data_offsets"] == nlohmann::json::array({0, 12}));  // 4-byte items before 2-byte ones

  const TensorMap out = load_safetensors(path);
  REQUIRE(out.size() == in.size());
  for (const auto& [name, t] : in) {
    INFO("tensor " << name);
    const Tensor& u = out.at(name);
    CHECK(u.dtype() == t.dtype());
    CHECK(u.shape() == t.shape());
    const Tensor c = t.contiguous();
    CHECK(std::memcmp(u.raw_data(), c.raw_data(), static_cast<size_t>(c.numel()) * dtype_size(c.dtype())) == 0);
  }
}

// ------------------------------------------------------------ malformed files

TEST_CASE("safetensors: the valid base file used by the malformed cases loads") {
  const std::string path = g_tmp.file("good.safetensors");
  write_file_atomic(path, st_bytes(kGoodHeader, kGoodData));
  const TensorMap t = load_safetensors(path);
  REQUIRE(t.count("a") == 1);
  CHECK(t.at("a").to_vector() == std::vector<double>{1.0, 2.0});
}

TEST_CASE("safetensors: missing file names the path and the OS reason") {
  const std::string path = g_tmp.file("does_not_exist.safetensors");
  const std::string msg = error_of([&] { load_safetensors(path); });
  CHECK(msg.find(path) != std::string::npos);
  CHECK(msg.find("No such file or directory") != std::string::npos);
}

TEST_CASE("safetensors: a directory or a FIFO is refused by kind, and a FIFO without a writer does not hang") {
  const std::string dir = g_tmp.file("a_directory.safetensors");
  fs::create_directories(dir);
  const std::string d = error_of([&] { load_safetensors(dir); });
  CHECK(contains(d, "cannot read '" + dir + "': expected a regular file (its data is read at given offsets), got a "
                    "directory"));
  const std::string fifo = g_tmp.file("a_fifo.safetensors");
  fs::remove(fifo);
  REQUIRE(::mkfifo(fifo.c_str(), 0600) == 0);
  const std::string f = error_of([&] { load_safetensors(fifo); });  // no writer: would block in a plain open
  CHECK(contains(f, "cannot read '" + fifo + "': expected a regular file"));
  CHECK(contains(f, "got a FIFO (named pipe)"));
}

TEST_CASE("safetensors: file shorter than 8 bytes") {
  check_load_error("short.safetensors", "1234567", {"7 bytes", "fewer than the 8-byte"});
  check_load_error("empty.safetensors", "", {"0 bytes"});
}

TEST_CASE("safetensors: header length above the 100,000,000 byte limit") {
  check_load_error("huge_header.safetensors", st_bytes(kGoodHeader, kGoodData, 100000001),
                   {"header length 100000001 exceeds the limit of 100000000"});
}

TEST_CASE("safetensors: header length past the end of the file") {
  const std::string header = kGoodHeader;
  check_load_error("truncated_header.safetensors", st_bytes(header, "", header.size() + 100),
                   {"truncated", "claims " + std::to_string(header.size() + 100)});
}

TEST_CASE("safetensors: header that is not JSON or not an object") {
  check_load_error("bad_json.safetensors", st_bytes(R"({"a": {"dtype": )", ""), {"not valid JSON"});
  check_load_error("array_header.safetensors", st_bytes("[1, 2]", ""), {"must be an object, got array"});
  check_load_error("bad_utf8.safetensors", st_bytes("{\"\xff\": 1}", ""), {"not valid JSON"});
}

TEST_CASE("safetensors: duplicate keys are rejected, at the top level and inside entries") {
  check_load_error("dup_tensor.safetensors",
                   st_bytes(R"({"a":{"dtype":"F32","shape":[1],"data_offsets":[0,4]},)"
                            R"("a":{"dtype":"F32","shape":[1],"data_offsets":[4,8]}})",
                            kGoodData),
                   {"duplicate key 'a' in the top level"});
  check_load_error("dup_field.safetensors",
                   st_bytes(R"({"a":{"dtype":"F32","dtype":"F64","shape":[2],"data_offsets":[0,8]}})", kGoodData),
                   {"duplicate key 'dtype' in entry 'a'"});
}

TEST_CASE("safetensors: entries missing a field or with a wrong JSON type") {
  check_load_error("not_object.safetensors", st_bytes(R"({"a":[0,8]})", kGoodData),
                   {"tensor 'a'", "must be an object, got array"});
  check_load_error("no_dtype.safetensors", st_bytes(R"({"a":{"shape":[2],"data_offsets":[0,8]}})", kGoodData),
                   {"tensor 'a'", "has no 'dtype'"});
  check_load_error("no_shape.safetensors", st_bytes(R"({"a":{"dtype":"F32","data_offsets":[0,8]}})", kGoodData),
                   {"tensor 'a'", "has no 'shape'"});
  check_load_error("no_offsets.safetensors", st_bytes(R"({"a":{"dtype":"F32","shape":[2]}})", kGoodData),
                   {"tensor 'a'", "has no 'data_offsets'"});
  check_load_error("dtype_type.safetensors",
                   st_bytes(R"({"a":{"dtype":4,"shape":[2],"data_offsets":[0,8]}})", kGoodData),
                   {"'dtype' must be a string, got integer 4"});
  check_load_error("shape_type.safetensors",
                   st_bytes(R"({"a":{"dtype":"F32","shape":"2","data_offsets":[0,8]}})", kGoodData),
                   {"'shape' must be an array, got string"});
  check_load_error("offsets_type.safetensors",
                   st_bytes(R"({"a":{"dtype":"F32","shape":[2],"data_offsets":{"b":0}}})", kGoodData),
                   {"'data_offsets' must be an array, got object"});
}

TEST_CASE("safetensors: negative or non-integer shape") {
  check_load_error("neg_shape.safetensors",
                   st_bytes(R"({"a":{"dtype":"F32","shape":[-2],"data_offsets":[0,8]}})", kGoodData),
                   {"tensor 'a'", "shape[0] must be a non-negative integer, got integer -2"});
  check_load_error("float_shape.safetensors",
                   st_bytes(R"({"a":{"dtype":"F32","shape":[1,2.0],"data_offsets":[0,8]}})", kGoodData),
                   {"shape[1] must be a non-negative integer, got number 2.0"});
  check_load_error("string_shape.safetensors",
                   st_bytes(R"({"a":{"dtype":"F32","shape":["2"],"data_offsets":[0,8]}})", kGoodData),
                   {"shape[0] must be a non-negative integer, got string"});
  check_load_error("big_shape.safetensors",
                   st_bytes(R"({"a":{"dtype":"F32","shape":[9223372036854775808],"data_offsets":[0,8]}})", kGoodData),
                   {"shape[0] = 9223372036854775808 is too large"});
}

TEST_CASE("safetensors: data_offsets that are not [begin, end] with begin <= end") {
  check_load_error("three_offsets.safetensors",
                   st_bytes(R"({"a":{"dtype":"F32","shape":[2],"data_offsets":[0,4,8]}})", kGoodData),
                   {"'data_offsets' must be [begin, end], got [0,4,8]"});
  check_load_error("neg_offset.safetensors",
                   st_bytes(R"({"a":{"dtype":"F32","shape":[2],"data_offsets":[-8,0]}})", kGoodData),
                   {"data_offsets[0] must be a non-negative integer"});
  check_load_error("reversed_offsets.safetensors",
                   st_bytes(R"({"a":{"dtype":"F32","shape":[0],"data_offsets":[8,0]}})", kGoodData),
                   {"data_offsets [8, 0] must have begin <= end"});
}

TEST_CASE("safetensors: shape x itemsize must equal the byte range, overflow included") {
  check_load_error("size_mismatch.safetensors",
                   st_bytes(R"({"a":{"dtype":"F32","shape":[3],"data_offsets":[0,8]}})", kGoodData),
                   {"shape (3,) of dtype F32 needs 12 bytes, but data_offsets [0, 8] hold 8"});
  // 2^62 · 2^62 · 4 wraps to 0 in 64 bits; a naive check would accept [0, 0].
  check_load_error("overflow.safetensors",
                   st_bytes(R"({"a":{"dtype":"F32","shape":[4611686018427387904,4611686018427387904],)"
                            R"("data_offsets":[0,0]}})",
                            ""),
                   {"the byte count of shape [4611686018427387904,4611686018427387904] of dtype F32",
                    "is larger than the largest size simba supports", "9223372036854775807"});
  check_load_error("f16_mismatch.safetensors",
                   st_bytes(R"({"a":{"dtype":"F16","shape":[2],"data_offsets":[0,8]}})", kGoodData),
                   {"of dtype F16 needs 4 bytes"});
}

TEST_CASE("safetensors: tensors must tile the buffer (no gaps, no overlaps, start at 0)") {
  const std::string data16 = f32_bytes({1, 2, 3, 4});
  check_load_error("gap.safetensors",
                   st_bytes(R"({"a":{"dtype":"F32","shape":[1],"data_offsets":[0,4]},)"
                            R"("b":{"dtype":"F32","shape":[2],"data_offsets":[8,16]}})",
                            data16),
                   {"tensor 'b'", "not contiguous", "bytes [4, 8)", "expected it to begin at 4"});
  check_load_error("late_start.safetensors",
                   st_bytes(R"({"a":{"dtype":"F32","shape":[3],"data_offsets":[4,16]}})", data16),
                   {"tensor 'a'", "not contiguous", "bytes [0, 4)", "expected it to begin at 0"});
  check_load_error("overlap.safetensors",
                   st_bytes(R"({"a":{"dtype":"F32","shape":[3],"data_offsets":[0,12]},)"
                            R"("b":{"dtype":"F32","shape":[2],"data_offsets":[8,16]}})",
                            data16),
                   {"tensor 'b' data_offsets [8, 16] overlap tensor 'a' [0, 12]", "expected it to begin at 12"});
  // Empty tensors sit anywhere on the boundary between others.
  const std::string path = g_tmp.file("empties.safetensors");
  write_file_atomic(path, st_bytes(R"({"a":{"dtype":"F32","shape":[1],"data_offsets":[0,4]},)"
                                   R"("e":{"dtype":"F64","shape":[0,5],"data_offsets":[4,4]},)"
                                   R"("s":{"dtype":"I64","shape":[],"data_offsets":[4,12]}})",
                                   f32_bytes({1}) + std::string("\x07\0\0\0\0\0\0\0", 8)));
  const TensorMap t = load_safetensors(path);
  CHECK(t.at("e").shape() == Shape{0, 5});
  CHECK(t.at("e").dtype() == DType::F64);
  CHECK(t.at("s").dim() == 0);
  CHECK(t.at("s").to_ints() == std::vector<int64_t>{7});
}

TEST_CASE("safetensors: the last tensor must end exactly at the end of the file") {
  check_load_error("trailing.safetensors", st_bytes(kGoodHeader, kGoodData + "xyz"),
                   {"3 trailing bytes", "cover 8 of the 11 bytes"});
  check_load_error("truncated_data.safetensors", st_bytes(kGoodHeader, kGoodData.substr(0, 5)),
                   {"truncated", "need 8 bytes of data but the file has only 5"});
  check_load_error("no_tensors_trailing.safetensors", st_bytes("{}", "x"), {"1 trailing bytes", "cover 0 of the 1"});
}

TEST_CASE("safetensors: dtypes simba cannot load are refused by name") {
  for (const char* dtype : {"I32", "U8", "BOOL", "F8_E4M3", "F7"}) {
    check_load_error(std::string("dtype_") + dtype + ".safetensors",
                     st_bytes(std::string(R"({"w":{"dtype":")") + dtype + R"(","shape":[2],"data_offsets":[0,8]}})",
                              kGoodData),
                     {"tensor 'w'", std::string("dtype '") + dtype + "' cannot be loaded", "F32, F64, I64, F16, BF16"});
  }
}

TEST_CASE("safetensors: __metadata__ must map strings to strings") {
  check_load_error("meta_array.safetensors", st_bytes(R"({"__metadata__":["pt"]})", ""),
                   {"'__metadata__' must be an object of strings, got array"});
  check_load_error("meta_value.safetensors", st_bytes(R"({"__metadata__":{"step":42}})", ""),
                   {"value of key 'step' must be a string, got integer 42"});
  const std::string path = g_tmp.file("meta_only.safetensors");
  write_file_atomic(path, st_bytes(R"({"__metadata__":{"k":"v"}})", ""));
  SafetensorsMetadata meta;
  CHECK(load_safetensors(path, &meta).empty());
  CHECK(meta == SafetensorsMetadata{{"k", "v"}});
}

// ------------------------------------------------------------ file_io

TEST_CASE("write_file_atomic replaces contents; read_file reads them back") {
  const std::string path = g_tmp.file("atomic.txt");
  write_file_atomic(path, "first");
  CHECK(read_file(path) == "first");
  std::string binary("a\0b\xff", 4);
  write_file_atomic(path, binary);
  CHECK(read_file(path) == binary);
  write_file_atomic(path, "");
  CHECK(read_file(path).empty());
  CHECK_FALSE(file_exists(path + ".tmp." + std::to_string(::getpid())));
}

TEST_CASE("write_file_atomic onto a directory fails, names the path, leaves it and no temp file") {
  const std::string dir = g_tmp.file("a_directory");
  make_dirs(dir);
  write_file_atomic(dir + "/inside.txt", "keep");
  const std::string msg = error_of([&] { write_file_atomic(dir, "data"); });
  INFO(msg);
  CHECK(msg.find("cannot write '" + dir + "'") != std::string::npos);
  CHECK(msg.find("Is a directory") != std::string::npos);
  CHECK(fs::is_directory(dir));
  CHECK(read_file(dir + "/inside.txt") == "keep");
  CHECK_FALSE(file_exists(dir + ".tmp." + std::to_string(::getpid())));
}

TEST_CASE("write_file_atomic into a missing or unwritable directory fails naming the path") {
  const std::string missing = g_tmp.file("no_such_dir/file.txt");
  std::string msg = error_of([&] { write_file_atomic(missing, "x"); });
  CHECK(msg.find(missing) != std::string::npos);
  CHECK(msg.find("No such file or directory") != std::string::npos);

  if (::geteuid() == 0) {
    MESSAGE("running as root: directory permissions do not stop writes, unwritable-directory case skipped");
    return;
  }
  const std::string dir = g_tmp.file("read_only_dir");
  make_dirs(dir);
  const std::string path = dir + "/ckpt.safetensors";
  save_safetensors(path, {{"w", Tensor::ones({2})}});
  fs::permissions(dir, fs::perms::owner_read | fs::perms::owner_exec);
  msg = error_of([&] { save_safetensors(path, {{"w", Tensor::zeros({5})}}); });
  fs::permissions(dir, fs::perms::owner_all);
  CHECK(msg.find(path) != std::string::npos);
  CHECK(msg.find("Permission denied") != std::string::npos);
  CHECK(load_safetensors(path).at("w").to_vector() == std::vector<double>{1, 1});
}

TEST_CASE("a save that fails mid-write (file size limit) keeps the old checkpoint") {
  const std::string path = g_tmp.file("big.safetensors");
  save_safetensors(path, {{"w", Tensor::full({4}, 3.0)}});

  // RLIMIT_FSIZE makes write() fail with EFBIG past the limit, a real
  // mid-file failure like a full disk. SIGXFSZ would otherwise kill us.
  struct rlimit old_limit {};
  REQUIRE(::getrlimit(RLIMIT_FSIZE, &old_limit) == 0);
  auto old_handler = ::signal(SIGXFSZ, SIG_IGN);
  struct rlimit small = old_limit;
  small.rlim_cur = 1 << 16;
  REQUIRE(::setrlimit(RLIMIT_FSIZE, &small) == 0);
  const std::string msg = error_of([&] { save_safetensors(path, {{"w", Tensor::zeros({1 << 16})}}); });
  ::setrlimit(RLIMIT_FSIZE, &old_limit);
  ::signal(SIGXFSZ, old_handler);

  INFO(msg);
  CHECK(msg.find("cannot write '" + path + "'") != std::string::npos);
  CHECK(msg.find("File too large") != std::string::npos);
  CHECK(load_safetensors(path).at("w").to_vector() == std::vector<double>{3, 3, 3, 3});
  CHECK_FALSE(file_exists(path + ".tmp." + std::to_string(::getpid())));
}

TEST_CASE("make_dirs creates nested directories, is idempotent, and reports a file in the way") {
  const std::string nested = g_tmp.file("x/y/z");
  CHECK_FALSE(file_exists(nested));
  make_dirs(nested);
  CHECK(fs::is_directory(nested));
  make_dirs(nested);  // already there: fine
  make_dirs("");      // the current directory: fine
  const std::string file = g_tmp.file("plain_file");
  write_file_atomic(file, "x");
  CHECK(file_exists(file));
  const std::string msg = error_of([&] { make_dirs(file + "/sub"); });
  CHECK(msg.find("cannot create directory '" + file + "/sub'") != std::string::npos);
  CHECK(msg.find("Not a directory") != std::string::npos);
}

TEST_CASE("read_file of a directory is an error naming it") {
  const std::string msg = error_of([&] { read_file(g_tmp.path.string()); });
  CHECK(msg.find(g_tmp.path.string()) != std::string::npos);
  CHECK(msg.find("is a directory") != std::string::npos);
}

TEST_CASE("safetensors: a header followed by a NUL and garbage, or nested 100,000 deep, is refused") {
  // The header length covers the NUL and the garbage: nlohmann alone stops at the NUL.
  check_load_error("nul_header.safetensors", st_bytes(std::string(kGoodHeader) + std::string(1, '\0') + "garbage", kGoodData),
                   {"the JSON header: NUL byte at offset"});
  check_load_error("trailing_header.safetensors", st_bytes(std::string(kGoodHeader) + "xx", kGoodData),
                   {"the JSON header: not valid JSON"});
  const std::string deep = "{\"a\":" + std::string(100000, '[') + std::string(100000, ']') + "}";
  check_load_error("deep_header.safetensors", st_bytes(deep, ""), {"the JSON header: JSON nested deeper than 64 levels"});
  check_load_error("deep_open.safetensors", st_bytes(std::string(100000, '{'), ""), {"JSON nested deeper than 64 levels"});
}

TEST_CASE("parse_json_bounded: depth limit, strings, NUL bytes, trailing text and duplicates") {
  auto nested = [](int depth) { return std::string(depth, '[') + std::string(depth, ']'); };
  CHECK(parse_json_bounded(nested(kMaxJsonDepth), "src").is_array());
  CHECK(contains(error_of([&] { parse_json_bounded(nested(kMaxJsonDepth + 1), "src"); }),
                 "src: JSON nested deeper than 64 levels at offset 64"));
  // Brackets and escaped quotes inside strings are not nesting.
  const nlohmann::json s = parse_json_bounded(R"({"k": "[[[[\"{{{{", "n": [[1]]})", "src");
  CHECK(s["k"] == "[[[[\"{{{{");
  CHECK(parse_json_bounded("  {\"a\": 1}\n\t ", "src")["a"] == 1);  // whitespace after the value is fine
  CHECK(contains(error_of([] { parse_json_bounded(std::string("{}\0x", 4), "src"); }), "src: NUL byte at offset 2 of 4"));
  CHECK(contains(error_of([] { parse_json_bounded("{} {}", "src"); }), "src: not valid JSON"));
  CHECK(contains(error_of([] { parse_json_bounded("", "src"); }), "src: not valid JSON"));
  CHECK(contains(error_of([] { parse_json_bounded(R"({"a": {"b": 1, "b": 2}})", "src"); }),
                 "src: duplicate key 'b' in entry 'a'"));
}
