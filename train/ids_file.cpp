#include "train/ids_file.h"

#include "nn/safetensors.h"

namespace simba {

Tensor read_input_ids(const std::string& path, int64_t V, int64_t min_length, const std::string& why) {
  const TensorMap tensors = load_safetensors(path);
  auto it = tensors.find("input_ids");
  if (it == tensors.end()) {
    std::string names;
    for (const auto& [name, t] : tensors) names += (names.empty() ? "'" : ", '") + name + "'";
    SIMBA_FAIL_HINT("--ids: '" << path << "' has no tensor 'input_ids' (it holds "
                               << (names.empty() ? std::string("no tensors") : names) << ")",
                    "write the ids as safetensors.torch.save_file({'input_ids': ids}, path), ids int64 (B, L)");
  }
  const Tensor& ids = it->second;
  SIMBA_CHECK_HINT(ids.dtype() == DType::I64,
                   "--ids: 'input_ids' in '" << path << "' is " << dtype_name(ids.dtype()) << ", expected int64",
                   "convert with ids.to(torch.int64) before saving");
  SIMBA_CHECK(ids.dim() == 2, "--ids: 'input_ids' in '" << path << "' has shape " << shape_str(ids.shape())
                                                         << ", expected a 2-D (B, L) tensor");
  SIMBA_CHECK(ids.size(0) >= 1 && ids.size(1) >= min_length,
              "--ids: 'input_ids' in '" << path << "' has shape " << shape_str(ids.shape()) << ", expected B >= 1 and L >= "
                                        << min_length << " (" << why << ")");
  const int64_t* p = ids.data<int64_t>();
  for (int64_t i = 0; i < ids.numel(); ++i)
    SIMBA_CHECK_HINT(p[i] >= 0 && p[i] < V,
                     "--ids: 'input_ids' in '" << path << "' holds id " << p[i] << " at [" << i / ids.size(1) << ", "
                                               << i % ids.size(1) << "], outside the model's vocabulary [0, " << V << ")",
                     "tokenize with the tokenizer the model was trained with");
  return ids;
}

}  // namespace simba
