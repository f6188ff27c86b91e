// tests/fuzz/fuzz_eval_json.cpp: the readers of simba eval --json files (train/eval_compare.h):
// simba contexts, simba frontier and simba compare.
//
// Any input either is read or throws simba::Error. A file simba contexts accepts has a dense row
// and another row at some context: simba frontier at that context returns rows (or refuses two
// differing dense rows), and simba compare of its dense row against itself gives a difference
// of exactly 0 (or refuses an ambiguous FILE:dense).
#include <sstream>

#include "tensor/error.h"
#include "tests/fuzz/fuzz_util.h"
#include "train/eval_compare.h"

using namespace simba;

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  const std::string path = fuzz_input_file(data, size, "eval.json");
  std::ostringstream sink;
  std::vector<ContextRow> rows;
  try {
    ContextsArgs c;
    c.json = {path};
    c.out_prefix = fuzz_scratch_path("contexts");
    c.bootstrap = 50;
    rows = run_contexts(c, sink);
  } catch (const Error&) {
    return 0;  // rejected with a message
  }
  fuzz_require(!rows.empty(), "an accepted file has a dense row and another row at some context");
  FrontierArgs f;
  f.json = {path};
  f.context = rows.front().context;
  f.out_prefix = fuzz_scratch_path("frontier");
  f.bootstrap = 50;
  try {
    fuzz_require(!run_frontier(f, sink).empty(), "simba frontier reads the rows simba contexts read");
  } catch (const Error&) {
    // Two dense rows of the one model at that context that differ: refused, with a message.
  }
  CompareArgs cmp;
  cmp.a = cmp.b = {path + ":dense"};
  cmp.context = rows.front().context;
  cmp.bootstrap = 50;
  try {
    const std::vector<Comparison> same = run_compare(cmp, sink);
    fuzz_require(same.size() == 1 && same[0].diff.mean == 0 && same[0].diff.low == 0 && same[0].diff.high == 0,
                 "a row against itself differs by exactly 0");
  } catch (const Error&) {
    // Two dense rows at that context: compare refuses the ambiguous FILE:METHOD, with a message.
  }
  return 0;
}
