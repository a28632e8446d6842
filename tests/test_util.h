// Helpers shared by the test files.
#pragma once

#include <gtest/gtest.h>

#include <exception>
#include <string>

#include "ember/core/base/error.h"

namespace ember::testing {

// The message of the exception of type E that `f` throws; a test failure (and "") when
// it throws nothing or an exception of another type.
template <typename E = Error, typename F>
std::string error_of(F&& f) {
  try {
    f();
  } catch (const E& e) {
    return e.what();
  } catch (const std::exception& e) {
    ADD_FAILURE() << "wrong exception type: " << e.what();
    return "";
  }
  ADD_FAILURE() << "no exception thrown";
  return "";
}

}  // namespace ember::testing
