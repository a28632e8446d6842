#include <gtest/gtest.h>

#include <regex>

#include "ember/core/version.h"

namespace ember {
namespace {

TEST(Version, IsTheProjectsSemanticVersion) {
  EXPECT_TRUE(std::regex_match(version(), std::regex(R"(\d+\.\d+\.\d+)"))) << version();
}

TEST(Version, NamesTheCudnnItWasBuiltAgainst) {
  EXPECT_TRUE(std::regex_match(cudnn_version_built(), std::regex(R"(9\.\d+\.\d+)")))
      << cudnn_version_built();
}

TEST(Version, NamesTheCudnnLoadedAtRunTimeWithoutNeedingAGpu) {
  // The build links the cuDNN it was compiled against, so the two agree here.
  EXPECT_EQ(cudnn_version_runtime(), cudnn_version_built());
}

}  // namespace
}  // namespace ember
