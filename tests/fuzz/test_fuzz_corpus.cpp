// Every committed fuzz input (tests/fuzz/corpus/<target>/ and regressions/<target>/) through
// the fuzz targets' own checks (fuzz_checks.h), so the CPU suite covers them without clang
// or libFuzzer, and a fixed finding stays fixed.
#include <gtest/gtest.h>

#include <algorithm>
#include <filesystem>
#include <fstream>
#include <iterator>
#include <string>
#include <vector>

#include "ember/python_free_api/data/image_decode.h"
#include "fuzz/fuzz_checks.h"

namespace fs = std::filesystem;
using ember::fuzz::FuzzFailure;

namespace {

std::vector<fs::path> files_in(const fs::path& dir) {
  std::vector<fs::path> files;
  if (!fs::is_directory(dir)) return files;
  for (const auto& e : fs::directory_iterator(dir)) {
    if (e.is_regular_file() && e.path().filename().string()[0] != '.') files.push_back(e.path());
  }
  std::sort(files.begin(), files.end());
  return files;
}

std::vector<uint8_t> read_bytes(const fs::path& p) {
  std::ifstream in(p, std::ios::binary);
  return {std::istreambuf_iterator<char>(in), std::istreambuf_iterator<char>()};
}

void replay(const std::string& target, bool regressions) {
  const auto& all = ember::fuzz::targets();
  const auto it = std::find_if(all.begin(), all.end(),
                               [&](const auto& t) { return target == t.name; });
  ASSERT_NE(it, all.end()) << target;
  const fs::path dir = fs::path(EMBER_FUZZ_DIR) / (regressions ? "regressions" : "corpus") / target;
  const std::vector<fs::path> files = files_in(dir);
  if (!regressions) {
    ASSERT_FALSE(files.empty()) << "no seed corpus in " << dir;
  }
  for (const fs::path& f : files) {
    SCOPED_TRACE(f.string());
    const std::vector<uint8_t> bytes = read_bytes(f);
    try {
      it->check(bytes.data(), bytes.size());
    } catch (const FuzzFailure& e) {
      ADD_FAILURE() << e.what();
    } catch (const std::exception& e) {
      ADD_FAILURE() << "escaped the check: " << e.what();
    }
  }
}

}  // namespace

TEST(FuzzCorpus, SafetensorsSeedsAndRegressionsKeepTheirPromises) {
  replay("safetensors", false);
  replay("safetensors", true);
}
TEST(FuzzCorpus, CheckpointSeedsAndRegressionsKeepTheirPromises) {
  replay("checkpoint", false);
  replay("checkpoint", true);
}
TEST(FuzzCorpus, IdxSeedsAndRegressionsKeepTheirPromises) {
  replay("idx", false);
  replay("idx", true);
}
TEST(FuzzCorpus, ImageDecodeSeedsAndRegressionsKeepTheirPromises) {
  replay("image_decode", false);
  replay("image_decode", true);
}
TEST(FuzzCorpus, ImageFolderSeedsAndRegressionsKeepTheirPromises) {
  replay("image_folder", false);
  replay("image_folder", true);
}

// The image seeds are valid files written by stb's and ember's writers: the checks that
// refuse forged headers (Note [Untrusted images]) must let every one of them through.
TEST(FuzzCorpus, EveryImageSeedDecodes) {
  const auto files = files_in(fs::path(EMBER_FUZZ_DIR) / "corpus" / "image_decode");
  ASSERT_FALSE(files.empty());
  for (const fs::path& f : files) {
    const std::vector<uint8_t> bytes = read_bytes(f);
    ember::data::detail::DecodedImage img;
    EXPECT_EQ(ember::data::detail::decode_image_bytes(bytes.data(), bytes.size(), 3,
                                                      int64_t{1} << 20, img),
              "")
        << f;
  }
}
