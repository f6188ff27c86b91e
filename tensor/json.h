// tensor/json.h: the one entry point for JSON that comes from outside simba
// (safetensors headers, config.json, tokenizer.json, training-state options,
// JSON lines). It lives at the lowest layer that links nlohmann_json so every
// reader above can share it.
//
// nlohmann's parser is iterative, but dump(), comparisons and the error
// paths of its callers recurse once per nesting level, so a file nested
// 100,000 deep overflows the stack later. And its lexer treats a NUL byte as
// the end of the input, so "{...}\0garbage" parses as if the garbage were not
// there. parse_json_bounded closes both holes before nlohmann sees the text,
// with an iterative pre-scan, and rejects what JSON leaves ambiguous:
//   - nesting deeper than kMaxJsonDepth arrays/objects,
//   - any NUL byte (raw control characters are invalid JSON anyway), and any
//     non-whitespace after the value ("trailing bytes"),
//   - duplicate keys in an object at any level (RFC 8259 §4: names SHOULD be
//     unique; nlohmann silently keeps the last one, which hides which value
//     the writer meant).
// Every error starts with `source` ("config 'x/config.json'") and says what
// was expected.
#pragma once

#include <string>

#include <nlohmann/json.hpp>

namespace simba {

// Far deeper than any real file simba reads (a safetensors header is 3 levels,
// config.json 2, tokenizer.json about 6) and far shallower than what the
// recursive code paths can take on a default 8 MiB stack.
constexpr int kMaxJsonDepth = 64;

// Json is nlohmann::json, or nlohmann::ordered_json where a reader must keep
// the keys in the file's order (simba tokenize writes its records back).
template <class Json = nlohmann::json>
Json parse_json_bounded(const std::string& text, const std::string& source);
extern template nlohmann::json parse_json_bounded<nlohmann::json>(const std::string&, const std::string&);
extern template nlohmann::ordered_json parse_json_bounded<nlohmann::ordered_json>(const std::string&,
                                                                                 const std::string&);

}  // namespace simba
