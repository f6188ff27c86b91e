// nn/module.h: the base of every layer and model: named parameters.
//
// A Module owns Variables (its parameters, requires_grad = true) and child
// Modules, both registered under a name in a fixed order. named_parameters()
// walks them depth-first in registration order and joins names with dots, so
// a Mamba model reports "backbone.layers.3.mixer.in_proj.weight" exactly as
// Hugging Face names it; checkpoints are keyed by these names.
#pragma once

#include <memory>
#include <string>
#include <utility>
#include <vector>

#include "autograd/variable.h"

namespace simba {

class Module {
 public:
  virtual ~Module() = default;
  Module() = default;
  Module(const Module&) = delete;
  Module& operator=(const Module&) = delete;

  std::vector<std::pair<std::string, Variable>> named_parameters() const;
  std::vector<Variable> parameters() const;
  // The parameter registered under a full dotted name; error naming it if absent.
  Variable parameter(const std::string& name) const;
  void zero_grad();
  int64_t num_parameters() const;
  // Moves every parameter to `device` in place (the Variables keep their identity, so handles
  // held by layers and optimisers stay valid); gradients are dropped. Parameters are the only
  // device-resident state of a Module.
  void to(Device device);
  // Converts every parameter to `dtype` in place, the same way (copy_'s rounding: exact when
  // widening, round-to-nearest-even once when narrowing); gradients are dropped.
  void to(DType dtype);
  Device device() const;  // where the parameters live (an error if they are split)

 protected:
  // Registers `init` as a trainable parameter; the returned handle shares it.
  Variable register_parameter(const std::string& name, Tensor init);
  template <class M>
  std::shared_ptr<M> register_module(const std::string& name, std::shared_ptr<M> module) {
    add_child(name, module);
    return module;
  }

 private:
  void add_child(const std::string& name, std::shared_ptr<Module> module);
  void collect(const std::string& prefix, std::vector<std::pair<std::string, Variable>>& out) const;

  // Parameters and children interleaved in registration order, so the
  // walk reproduces the order in which a model declares its parts.
  struct Entry {
    std::string name;
    Variable param;                 // defined for a parameter
    std::shared_ptr<Module> child;  // non-null for a child module
  };
  std::vector<Entry> entries_;
  void check_new_name(const std::string& name) const;
};

}  // namespace simba
