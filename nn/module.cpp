#include "nn/module.h"

namespace simba {

void Module::check_new_name(const std::string& name) const {
  for (const auto& e : entries_) SIMBA_CHECK(e.name != name, "'" << name << "' registered twice in one module");
}

Variable Module::register_parameter(const std::string& name, Tensor init) {
  check_new_name(name);
  Variable v(std::move(init), /*requires_grad=*/true);
  entries_.push_back({name, v, nullptr});
  return v;
}

void Module::add_child(const std::string& name, std::shared_ptr<Module> module) {
  SIMBA_CHECK(module != nullptr, "module '" << name << "' is null");
  check_new_name(name);
  entries_.push_back({name, Variable(), std::move(module)});
}

void Module::collect(const std::string& prefix, std::vector<std::pair<std::string, Variable>>& out) const {
  for (const auto& e : entries_) {
    if (e.child)
      e.child->collect(prefix + e.name + ".", out);
    else
      out.emplace_back(prefix + e.name, e.param);
  }
}

std::vector<std::pair<std::string, Variable>> Module::named_parameters() const {
  std::vector<std::pair<std::string, Variable>> out;
  collect("", out);
  return out;
}

std::vector<Variable> Module::parameters() const {
  std::vector<Variable> out;
  for (auto& p : named_parameters()) out.push_back(p.second);
  return out;
}

Variable Module::parameter(const std::string& name) const {
  for (auto& p : named_parameters())
    if (p.first == name) return p.second;
  SIMBA_FAIL("no parameter named '" << name << "'");
}

void Module::zero_grad() {
  for (auto& p : named_parameters()) p.second.zero_grad();
}

void Module::to(Device device) {
  for (auto& p : named_parameters()) {
    p.second.zero_grad();
    p.second.data() = p.second.data().to(device);
  }
}

void Module::to(DType dtype) {
  for (auto& p : named_parameters()) {
    p.second.zero_grad();
    p.second.data() = p.second.data().to(dtype);
  }
}

Device Module::device() const {
  auto params = named_parameters();
  SIMBA_CHECK(!params.empty(), "Module::device(): the module has no parameters");
  const Device d = params.front().second.data().device();
  for (auto& p : params)
    SIMBA_CHECK(p.second.data().device() == d, "Module::device(): parameter '" << p.first << "' is on "
                                                   << p.second.data().device().str() << ", '"
                                                   << params.front().first << "' on " << d.str());
  return d;
}

int64_t Module::num_parameters() const {
  int64_t n = 0;
  for (auto& p : named_parameters()) n += p.second.numel();
  return n;
}

}  // namespace simba
