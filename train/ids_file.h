// train/ids_file.h: the token-id files that `simba forward` and `simba inspect`
// read with --ids: a safetensors file holding `input_ids`, int64 (B, L), as
// `safetensors.torch.save_file({"input_ids": ids}, path)` writes it.
#pragma once

#include <cstdint>
#include <string>

#include "tensor/tensor.h"

namespace simba {

// The checked `input_ids` of `path`: int64, 2-D, B >= 1, L >= min_length
// (`why` says what needs that length), every id in [0, V). Errors name --ids,
// the file and what was expected.
Tensor read_input_ids(const std::string& path, int64_t V, int64_t min_length, const std::string& why);

}  // namespace simba
