// The library's version, the cuDNN it was built against and loads, and cuDNN's
// compatibility rule.
#include <gtest/gtest.h>

#include <regex>

#include "ember/core/version.h"

namespace ember {
namespace {

TEST(Version, IsTheProjectsSemanticVersion) {
  EXPECT_TRUE(std::regex_match(version(), std::regex(R"(\d+\.\d+\.\d+)"))) << version();
}

#if EMBER_WITH_CUDA

TEST(Version, NamesTheCudnnItWasBuiltAgainst) {
  EXPECT_TRUE(std::regex_match(cudnn_version_built(), std::regex(R"(9\.\d+\.\d+)")))
      << cudnn_version_built();
}

TEST(Version, NamesACompatibleCudnnLoadedAtRunTimeWithoutNeedingAGpu) {
  // The loader may find another cuDNN than the one built against (a GPU machine's often
  // comes from a Python wheel); what must hold is cuDNN's own rule, not equality.
  EXPECT_TRUE(std::regex_match(cudnn_version_runtime(), std::regex(R"(9\.\d+\.\d+)")))
      << cudnn_version_runtime();
  EXPECT_TRUE(cudnn_runtime_compatible())
      << "built against " << cudnn_version_built() << ", loaded " << cudnn_version_runtime();
}

#else

TEST(Version, NamesNoCudnnInABuildWithoutCuda) {
  EXPECT_EQ(cudnn_version_built(), "");
  EXPECT_EQ(cudnn_version_runtime(), "");
  EXPECT_TRUE(cudnn_runtime_compatible());
}

#endif

TEST(Version, CudnnRuntimeOfTheSameMajorAndANewerOrEqualMinorIsCompatible) {
  EXPECT_TRUE(cudnn_compatible(9, 19, 9, 19));
  EXPECT_TRUE(cudnn_compatible(9, 1, 9, 19));
  EXPECT_TRUE(cudnn_compatible(9, 19, 9, 21));
}

TEST(Version, CudnnRuntimeOfAnotherMajorOrAnOlderMinorIsNot) {
  EXPECT_FALSE(cudnn_compatible(9, 19, 9, 10));
  EXPECT_FALSE(cudnn_compatible(9, 19, 8, 9));
  EXPECT_FALSE(cudnn_compatible(9, 0, 10, 0));
}

}  // namespace
}  // namespace ember
