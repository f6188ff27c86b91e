// train/cli_options.h: the value checks of simba's flags, shared by every
// subcommand (train/cli_*.cpp), so that each kind of value is parsed by one
// rule everywhere.
//
// CLI11 converts integers with strtoll/strtoull in base 0: it clamps
// "99999999999999999999" to 2^63 - 1, wraps "-1" to 2^64 - 1 for an unsigned
// target, and reads "010" as octal 8. Its PositiveNumber/NonNegativeNumber
// checks parse the text as a double, so they accept all of those. The
// validators below parse the text themselves (decimal only, std::from_chars,
// which reports overflow), refuse anything out of range with a message that
// CLI11 prefixes with the flag's name, and hand CLI11 the canonical decimal
// text, so the value the command sees is exactly the value typed.
//
// Seeds are uint64 everywhere: any integer in [0, 2^64 - 1]; "-1" is an error.
//
// --device (train, eval, generate, forward, inspect, highway) is one of
//   cpu      the host (the default)
//   cuda     the first CUDA device, cuda:0
//   cuda:N   CUDA device N (decimal)
//   auto     cuda:0 when a CUDA device is usable here, else cpu (what `make demo` passes)
// Parsing checks the form only, so a command line parses the same on every machine; the command
// then checks that the device is usable here (check_device) before it does any work, and the
// error names the flag: "--device cuda:0: CUDA not compiled in".
#pragma once

#include <cstdint>
#include <limits>
#include <string>

#include <CLI/CLI.hpp>

#include "tensor/storage.h"

namespace simba {

// An integer in [lo, hi]. For a list flag (delimiter ',') every element.
CLI::Validator integer_in(int64_t lo, int64_t hi = std::numeric_limits<int64_t>::max());

// A seed: an integer in [0, 2^64 - 1].
CLI::Validator seed_value();

// A size in bytes, > 0: decimal digits and an optional unit, B, KB, MB, GB, TB
// (powers of 1000, as transformers' max_shard_size reads them) or KiB, MiB,
// GiB, TiB (powers of 1024), any case: "2GB", "16MiB", "1048576". It
// rewrites the text to the number of bytes, decimal, so register it with
// ->transform() (CLI11 runs ->check() validators on a copy).
CLI::Validator byte_size();

// A finite number in the interval lo..hi, each end open or closed as asked;
// `what` is the expected value in words ("a number in [0, 1)"), `name` the
// short form --help shows next to the type.
CLI::Validator number_in(double lo, bool lo_closed, double hi, bool hi_closed, const std::string& what,
                         const std::string& name);

// The memory budget of a batch of `batch` windows of `length` tokens, checked
// before anything is allocated: the float32 logits of one batch, batch x length
// x `vocab` x 4 bytes (the largest single activation; vocab is at least the
// byte tokenizer's 256), must fit in physical memory, and the products must
// not overflow. Errors name both flags ("--batch-size", "--seq-len").
void check_batch_budget(int64_t batch, const char* batch_flag, int64_t length, const char* length_flag,
                        int64_t vocab);

// The device `text` names (the forms above), "auto" resolved on this machine; an error naming
// `flag` and the text for any other form ("--device: expected cpu, cuda, cuda:N or auto, got 'tpu'").
Device parse_device(const std::string& text, const std::string& flag = "--device");

// Registers --device on `cmd`: help text, default cpu, the form checked while parsing, and the
// parsed device stored in `device`. The command checks it with check_device before any work.
CLI::Option* add_device_option(CLI::App* cmd, Device& device);

// Throws unless `device` can run work here: the CPU always can; a CUDA device needs the CUDA
// backend compiled in and a usable device of that index. The error names `flag` and the device
// and gives the reason (the CUDA runtime's, or the indices that exist).
void check_device(Device device, const std::string& flag = "--device");

}  // namespace simba
