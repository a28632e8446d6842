// nn::class_name: the demangled, namespace-free type name behind Module::name().
#include "ember/layers/module_holder.h"

#include <cxxabi.h>

#include <cstdlib>
#include <memory>

namespace ember::nn {

namespace {

bool is_identifier_char(char c) {
  return (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') || c == '_';
}

// "ember::nn::Wrapper<ember::nn::Linear>" -> "Wrapper<Linear>"; a local class
// "Suite_Test::TestBody()::Net" -> "Net".
std::string strip_namespaces(std::string name) {
  const std::string anonymous = "(anonymous namespace)::";
  for (size_t at; (at = name.find(anonymous)) != std::string::npos;) name.erase(at, anonymous.size());
  // The class's own name follows the last "::" outside template arguments and parentheses.
  int depth = 0;
  size_t start = 0;
  for (size_t i = 0; i + 1 < name.size(); ++i) {
    const char c = name[i];
    if (c == '<' || c == '(') ++depth;
    if (c == '>' || c == ')') --depth;
    if (depth == 0 && c == ':' && name[i + 1] == ':') start = i + 2;
  }
  name = name.substr(start);
  // Qualifiers inside template arguments: drop each identifier that a "::" follows.
  std::string out;
  for (size_t i = 0; i < name.size(); ++i) {
    if (name[i] == ':' && i + 1 < name.size() && name[i + 1] == ':') {
      while (!out.empty() && is_identifier_char(out.back())) out.pop_back();
      ++i;
      continue;
    }
    out += name[i];
  }
  return out;
}

}  // namespace

std::string class_name(const std::type_info& type) {
  int status = 0;
  const std::unique_ptr<char, void (*)(void*)> demangled(
      abi::__cxa_demangle(type.name(), nullptr, nullptr, &status), std::free);
  return strip_namespaces(status == 0 && demangled ? demangled.get() : type.name());
}

}  // namespace ember::nn
