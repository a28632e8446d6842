// What every file parser of ember must do with any input, as checks shared by the libFuzzer
// targets (fuzz_<target>.cpp) and the CPU suite's replay of the committed corpora
// (test_fuzz_corpus.cpp): one function per target, taking the input's bytes.
//
// Each check fails by throwing FuzzFailure (never an ember::Error), which a fuzzer lets
// escape (libFuzzer reports it as a crash and saves the input) and the replay test reports.
#pragma once

#include <cstddef>
#include <cstdint>
#include <stdexcept>
#include <string>
#include <vector>

namespace ember::fuzz {

// A broken promise: a parser threw something else than its typed error, its message did
// not name the file, it allocated beyond the bound, or a rejected load changed its target.
class FuzzFailure : public std::logic_error {
 public:
  using std::logic_error::logic_error;
};

// The targets, by name (the folder names under tests/fuzz/corpus and regressions).
using Check = void (*)(const uint8_t* data, size_t size);
struct Target {
  const char* name;
  Check check;
};
const std::vector<Target>& targets();

// io::load_safetensors on the bytes as a file.
void check_safetensors(const uint8_t* data, size_t size);
// io::load_checkpoint into a small model and its Adam optimizer, then io::load into the
// model alone and into the optimizer alone: a rejected file leaves each bit-identical.
void check_checkpoint(const uint8_t* data, size_t size);
// data::read_idx on the bytes as a file, raw or gzip (the fuzzer's mutations reach both:
// the seeds hold both).
void check_idx(const uint8_t* data, size_t size);
// data::detail::decode_image_bytes (by content), the asked channels taken from the last
// byte.
void check_image_decode(const uint8_t* data, size_t size);
// data::ImageFolder over a folder holding the bytes as one file, its extension (by which
// ImageFolder picks its files) chosen by the last byte: what a folder from a stranger does.
void check_image_folder(const uint8_t* data, size_t size);

// Note [Allocation bound]
// Peak heap growth during a parse, counted by the sanitizer allocator's malloc and free
// hooks (__sanitizer_install_malloc_and_free_hooks: every malloc, new, aligned_alloc and
// free of the process, all threads), as the largest (live bytes - live bytes at the start).
// Each target's bound is 16 x the input's size + what the input can validly describe (the
// target says what) + a constant of 4 MiB for the parsers' fixed buffers (zlib, libpng's
// and libjpeg's state, the thread pool of ImageFolder). Without ASan (the replay test built
// by GCC) there are no hooks and the bound is not checked. ember's CPU pool would hide
// both the allocations and ASan's view of their bounds: the fuzzers set
// EMBER_CPU_ALLOC=system before anything allocates.
class AllocationMeter {
 public:
  AllocationMeter();   // starts counting
  ~AllocationMeter();  // stops
  int64_t peak_growth() const;
  static bool available();
};

// Throws FuzzFailure when meter's peak growth exceeds the bound (see Note [Allocation bound]).
void expect_bounded(const AllocationMeter& meter, const std::string& target, size_t input_size,
                    uint64_t described);

// A per-process scratch folder (under $TMPDIR or /tmp), removed at exit.
const std::string& scratch_dir();
// Writes the bytes to scratch_dir()/name and returns the path.
std::string write_scratch(const std::string& name, const uint8_t* data, size_t size);

}  // namespace ember::fuzz
