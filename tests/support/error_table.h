// The rows of the bad-call tables (tests/api/test_bad_inputs.cpp, test_bad_options.cpp):
// what a row expects (a typed error, or a valid call) and how a caught exception is named.
#pragma once

#include <exception>
#include <functional>
#include <string>
#include <typeinfo>
#include <vector>

#include "ember/core/base/error.h"

namespace ember::testing {

// A typed error, any ember::Error, or (None) a valid call that checks its own answer.
enum class Expect { Shape, DType, Device, Value, IO, Error, None };

inline const char* expect_name(Expect e) {
  switch (e) {
    case Expect::Shape: return "ShapeError";
    case Expect::DType: return "DTypeError";
    case Expect::Device: return "DeviceError";
    case Expect::Value: return "ValueError";
    case Expect::IO: return "IOError";
    case Expect::Error: return "ember::Error";
    case Expect::None: return "no error";
  }
  return "?";
}

inline bool is_expected(Expect e, const std::exception& ex) {
  switch (e) {
    case Expect::Shape: return dynamic_cast<const ShapeError*>(&ex) != nullptr;
    case Expect::DType: return dynamic_cast<const DTypeError*>(&ex) != nullptr;
    case Expect::Device: return dynamic_cast<const DeviceError*>(&ex) != nullptr;
    case Expect::Value: return dynamic_cast<const ValueError*>(&ex) != nullptr;
    case Expect::IO: return dynamic_cast<const IOError*>(&ex) != nullptr;
    case Expect::Error: return dynamic_cast<const ember::Error*>(&ex) != nullptr;
    case Expect::None: return false;
  }
  return false;
}

// The most precise name of what was thrown.
inline std::string type_of(const std::exception& ex) {
  if (dynamic_cast<const ShapeError*>(&ex)) return "ShapeError";
  if (dynamic_cast<const DTypeError*>(&ex)) return "DTypeError";
  if (dynamic_cast<const DeviceError*>(&ex)) return "DeviceError";
  if (dynamic_cast<const ValueError*>(&ex)) return "ValueError";
  if (dynamic_cast<const IOError*>(&ex)) return "IOError";
  if (dynamic_cast<const ember::Error*>(&ex)) return "ember::Error (untyped)";
  return std::string("not an ember error: ") + typeid(ex).name();
}

struct Row {
  std::string name;
  Expect expect;
  std::vector<std::string> parts;  // the message must contain each
  std::function<void()> call;
};

}  // namespace ember::testing
