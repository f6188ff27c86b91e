// tests/fuzz/fuzz_config.cpp: the config.json reader (ssm/mamba_config.h).
//
// Any input either parses into a validated MambaConfig or throws simba::Error.
// A config that parses must survive the writer: its to_json() reads back into
// a config with the same to_json(), which is what save() + from_json_file do
// for a checkpoint.
#include <nlohmann/json.hpp>

#include "ssm/mamba_config.h"
#include "tensor/error.h"
#include "tests/fuzz/fuzz_util.h"

using namespace simba;

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  const std::string path = fuzz_input_file(data, size, "config.json");
  MambaConfig config;
  try {
    config = MambaConfig::from_json_file(path);
  } catch (const Error&) {
    return 0;  // rejected with a message
  }
  const nlohmann::json written = config.to_json();
  const MambaConfig again = MambaConfig::from_json(written, "the written config");
  fuzz_require(again.to_json() == written, "a parsed config survives to_json + from_json");
  return 0;
}
