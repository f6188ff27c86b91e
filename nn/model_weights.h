// nn/model_weights.h: the weights of a model directory, in either of the two
// layouts Hugging Face uses (transformers' save_pretrained, from_pretrained):
//
//   single   DIR/model.safetensors holds every tensor
//   sharded  DIR/model-00001-of-0000n.safetensors ... DIR/model-0000n-of-0000n.safetensors
//            and DIR/model.safetensors.index.json:
//              {"metadata": {"total_size": <bytes of tensor data>},
//               "weight_map": {"<tensor name>": "<shard file name>", ...}}
//
// Reading checks the index before it trusts it, since a half-copied or
// hand-edited directory would otherwise load a model with tensors missing or
// taken from the wrong file: the weight map names every tensor once (a
// duplicate key is a JSON error, tensor/json.h), each value is a plain file
// name in DIR that exists, each shard holds exactly the tensors the map
// assigns to it, and every shard carries the same __metadata__ (a training
// run stamps its step there, so shards of two saves do not mix). A directory
// holding both layouts is refused: which copy is meant is ambiguous.
//
// Writing puts tensors, in name order, into shards of at most `shard_bytes`
// bytes of tensor data (a larger tensor gets a shard of its own), as
// transformers' max_shard_size does; a model that fits in one shard is
// written single. Each file is written atomically (tensor/file_io.h), the
// index last, and then the weight files of an earlier save that the new one
// does not use are removed, so the directory holds one copy of the model.
// The default limit, 2 GB, keeps the reader's peak memory (the model plus
// the one shard file it is reading) at most 2 GB above the model's size while
// every published Mamba model up to mamba-370m stays a single file.
#pragma once

#include <cstdint>
#include <string>

#include "nn/safetensors.h"

namespace simba {

constexpr uint64_t kDefaultShardBytes = 2000000000;  // "2GB", 2·10^9 bytes of tensor data per shard
extern const char* const kWeightsFile;               // "model.safetensors"
extern const char* const kWeightsIndexFile;          // "model.safetensors.index.json"

// The file that says where `dir`'s weights are: DIR/model.safetensors or
// DIR/model.safetensors.index.json; "" when there is neither. Both is an error.
std::string find_weights_file(const std::string& dir);

// Every tensor of `dir`'s weights, single or sharded, checked as above. An
// error when there are none names both layouts. `metadata` receives the
// __metadata__ map (the one every shard carries).
TensorMap load_model_weights(const std::string& dir, SafetensorsMetadata* metadata = nullptr);

// Writes `tensors` with `metadata` in every file into `dir` (which must
// exist), single when their data fits in `shard_bytes` (> 0), else sharded.
void save_model_weights(const std::string& dir, const TensorMap& tensors, const SafetensorsMetadata& metadata,
                        uint64_t shard_bytes = kDefaultShardBytes);

// "model-<k>-of-<n>.safetensors" with k, n zero-padded to five digits; k is 1-based.
std::string shard_file_name(int64_t k, int64_t n);

}  // namespace simba
