#include "tensor/json.h"

#include <set>
#include <utility>
#include <vector>

#include "tensor/error.h"

namespace simba {

namespace {

using json = nlohmann::json;

// One pass over the bytes, outside and inside strings, without recursion.
void check_depth_and_nul(const std::string& text, const std::string& source) {
  int depth = 0;
  bool in_string = false, escaped = false;
  for (size_t i = 0; i < text.size(); ++i) {
    const char c = text[i];
    SIMBA_CHECK(c != '\0', source << ": NUL byte at offset " << i << " of " << text.size()
                                  << "; expected JSON text only, with nothing after the value");
    if (in_string) {
      if (escaped)
        escaped = false;
      else if (c == '\\')
        escaped = true;
      else if (c == '"')
        in_string = false;
    } else if (c == '"') {
      in_string = true;
    } else if (c == '[' || c == '{') {
      SIMBA_CHECK(++depth <= kMaxJsonDepth, source << ": JSON nested deeper than " << kMaxJsonDepth
                                                   << " levels at offset " << i);
    } else if (c == ']' || c == '}') {
      --depth;  // unbalanced brackets are left to the parser to report
    }
  }
}

}  // namespace

template <class Json>
Json parse_json_bounded(const std::string& text, const std::string& source) {
  check_depth_and_nul(text, source);
  // Duplicate keys: the set of keys of each enclosing object, innermost last.
  std::vector<std::pair<std::string, std::set<std::string>>> open;
  std::string last_key, duplicate;
  auto on_event = [&](int, typename Json::parse_event_t event, Json& parsed) {
    switch (event) {
      case Json::parse_event_t::object_start:
        open.emplace_back(open.empty() ? std::string("the top level") : "entry '" + last_key + "'",
                          std::set<std::string>{});
        break;
      case Json::parse_event_t::object_end:
        open.pop_back();
        break;
      case Json::parse_event_t::key:
        last_key = parsed.template get<std::string>();
        if (!open.back().second.insert(last_key).second && duplicate.empty())
          duplicate = "'" + last_key + "' in " + open.back().first;
        break;
      default:
        break;
    }
    return true;
  };
  Json j;
  try {
    j = Json::parse(text, on_event);
  } catch (const nlohmann::json::exception& e) {
    SIMBA_FAIL(source << ": not valid JSON: " << e.what());
  }
  SIMBA_CHECK(duplicate.empty(), source << ": duplicate key " << duplicate);
  return j;
}

template json parse_json_bounded<json>(const std::string&, const std::string&);
template nlohmann::ordered_json parse_json_bounded<nlohmann::ordered_json>(const std::string&, const std::string&);

}  // namespace simba
