// The samples' shared command-line options (samples/sample_utils.h): every bad value is
// refused with a message that says in words what the option accepts.
#include <gtest/gtest.h>

#include <string>
#include <vector>

#include "../../samples/sample_utils.h"

namespace {

// The error CLI11 reports for `args`, or "" when they parse.
std::string parse_error(const std::string& args) {
  CLI::App app{"test"};
  samples::CommonOptions o;
  samples::add_common_options(app, o, "smoke test");
  try {
    app.parse(args, /*program_name_included=*/false);
  } catch (const CLI::ParseError& e) {
    return e.what();
  }
  return "";
}

}  // namespace

TEST(SampleOptions, EpochsMustBeAWholeNumberOfAtLeastOne) {
  EXPECT_EQ(parse_error("--epochs -3"), "--epochs: must be a whole number >= 1, got -3");
  EXPECT_EQ(parse_error("--epochs 0"), "--epochs: must be a whole number >= 1, got 0");
  EXPECT_EQ(parse_error("--epochs 2.5"), "--epochs: must be a whole number >= 1, got 2.5");
  EXPECT_EQ(parse_error("--epochs many"), "--epochs: must be a whole number >= 1, got many");
  EXPECT_EQ(parse_error("--epochs 99999999999999999999"),
            "--epochs: must be a whole number >= 1, got 99999999999999999999 (out of range)");
  EXPECT_EQ(parse_error("--epochs 3"), "");
}

TEST(SampleOptions, EveryCommonOptionSaysWhatItAccepts) {
  EXPECT_EQ(parse_error("--batch-size -1"), "--batch-size: must be a whole number >= 1, got -1");
  EXPECT_EQ(parse_error("--lr -1"), "--lr: must be a number > 0, got -1");
  EXPECT_EQ(parse_error("--lr nan"), "--lr: must be a number > 0, got nan");
  EXPECT_EQ(parse_error("--lr 1e-3"), "");
  EXPECT_EQ(parse_error("--seed -1"), "--seed: must be a whole number from 0 to 18446744073709551615, got -1");
  EXPECT_EQ(parse_error("--seed 18446744073709551615"), "");
  EXPECT_EQ(parse_error("--verbose 7"), "--verbose: must be one of 0, 1, 2; got 7");
  EXPECT_EQ(parse_error("--device gpu"), "--device: must be cpu, cuda, cuda:N (N a GPU number such as 0) or best, got gpu");
  EXPECT_EQ(parse_error("--device cuda:x"), "--device: must be cpu, cuda, cuda:N (N a GPU number such as 0) or best, got cuda:x");
  for (const char* ok : {"cpu", "cuda", "cuda:1", "best"}) EXPECT_EQ(parse_error(std::string("--device ") + ok), "") << ok;
}

TEST(SampleOptions, NoMessageIsANumberHundredsOfDigitsLong) {
  for (const char* bad : {"--epochs -3", "--batch-size 0", "--lr -2", "--seed -5", "--verbose 9"}) {
    EXPECT_LT(parse_error(bad).size(), 100u) << bad;
  }
}

TEST(SampleOptions, ChoicesAndBoundedNumbersNameTheirRange) {
  CLI::App app{"test"};
  std::string schedule = "cosine";
  int64_t steps = 0;
  app.add_option("--lr-schedule", schedule)->check(samples::one_of({"cosine", "none"}));
  app.add_option("--steps", steps)->check(samples::whole_number(0, 10));
  try {
    app.parse("--lr-schedule linear", false);
    FAIL() << "expected an error";
  } catch (const CLI::ParseError& e) {
    EXPECT_EQ(std::string(e.what()), "--lr-schedule: must be one of cosine, none; got linear");
  }
  try {
    app.parse("--steps 11", false);
    FAIL() << "expected an error";
  } catch (const CLI::ParseError& e) {
    EXPECT_EQ(std::string(e.what()), "--steps: must be a whole number from 0 to 10, got 11");
  }
}
