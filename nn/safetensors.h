// nn/safetensors.h: reading and writing the Hugging Face safetensors format.
//
// Layout (the safetensors format): 8-byte little-endian u64 N, then N bytes of
// UTF-8 JSON header, then the byte buffer. Each header entry is
//   "name": {"dtype": "F32", "shape": [..], "data_offsets": [begin, end]}
// with offsets relative to the buffer and `end` one past the last byte; an
// optional "__metadata__" entry is a string -> string map. Data is
// little-endian, row-major and packed (no strides).
//
// The loader checks every rule of the reference reader before it copies a
// byte of tensor data, so a damaged or hostile file fails with a message
// naming the file, the tensor and the broken rule, instead of producing a
// model with silently shifted weights. Every tensor keeps the dtype it is
// stored in (F32, F64, I64, BF16, F16: the fp16 and bf16 mamba-*-hf
// checkpoints load as float16 and bfloat16 tensors, byte for byte); a model
// converts them to its parameters' dtype when it takes them
// (MambaLM::load_tensors). Any other dtype is refused by name.
//
// The writer produces files that `safetensors.torch.load_file` / `safe_open`
// read back: tensors of those five dtypes as they are, header padded with
// spaces to a multiple of 8 bytes, tensors ordered by descending alignment
// then name (the reference writer's order, which keeps every tensor aligned to
// its item size), written through write_file_atomic so a crash never leaves a
// torn checkpoint.
#pragma once

#include <cstdint>
#include <map>
#include <string>

#include "tensor/tensor.h"

namespace simba {

using TensorMap = std::map<std::string, Tensor>;                // sorted by name
using SafetensorsMetadata = std::map<std::string, std::string>;  // the "__metadata__" entry

// Loads every tensor of the file at `path` (fresh contiguous CPU tensors).
// If `metadata` is given, it receives the "__metadata__" map (empty if absent).
TensorMap load_safetensors(const std::string& path, SafetensorsMetadata* metadata = nullptr);

// Writes `tensors` (any strides, any device; copied to packed CPU bytes) and
// `metadata` to `path` atomically. A tensor may not be named "__metadata__".
void save_safetensors(const std::string& path, const TensorMap& tensors,
                      const SafetensorsMetadata& metadata = {});

// The safetensors name of a dtype ("F32", "BF16", ...), as the header spells it.
const char* safetensors_dtype_name(DType t);

}  // namespace simba
