// The checks behind the fuzz targets and the corpus replay test (fuzz_checks.h): each feeds
// one input to one of ember's file parsers and checks what the parser promises for files
// from strangers (docs/reliability.md).
#include "fuzz_checks.h"

#include <unistd.h>

#include <algorithm>
#include <atomic>
#include <cstdlib>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <iterator>
#include <system_error>

#include "ember/core/base/error.h"
#include "ember/core/random.h"
#include "ember/core/tensor.h"
#include "ember/layers/layers.h"
#include "ember/optim/adam.h"
#include "ember/python_free_api/data/idx.h"
#include "ember/python_free_api/data/image_decode.h"
#include "ember/python_free_api/data/image_folder.h"
#include "ember/python_free_api/io/safetensors.h"

#if defined(__has_feature)
#if __has_feature(address_sanitizer)
#define EMBER_FUZZ_HOOKS 1
#endif
#endif
#if !defined(EMBER_FUZZ_HOOKS) && defined(__SANITIZE_ADDRESS__)
#define EMBER_FUZZ_HOOKS 1
#endif
#ifdef EMBER_FUZZ_HOOKS
#include <sanitizer/allocator_interface.h>
#endif

namespace ember::fuzz {
namespace fs = std::filesystem;

// --- allocation meter (Note [Allocation bound]) --------------------------------------------

namespace {

std::atomic<int64_t> g_live{0};
std::atomic<int64_t> g_base{0};
std::atomic<int64_t> g_peak{0};
std::atomic<bool> g_armed{false};

#ifdef EMBER_FUZZ_HOOKS
void on_malloc(const volatile void* /*ptr*/, size_t size) {
  const int64_t live = g_live.fetch_add(static_cast<int64_t>(size)) + static_cast<int64_t>(size);
  if (!g_armed.load(std::memory_order_relaxed)) return;
  int64_t peak = g_peak.load(std::memory_order_relaxed);
  while (live > peak && !g_peak.compare_exchange_weak(peak, live)) {
  }
}
void on_free(const volatile void* ptr) {
  // Called before the chunk is released, so its size is still known.
  g_live.fetch_sub(static_cast<int64_t>(__sanitizer_get_allocated_size(const_cast<void*>(ptr))));
}
bool install_hooks() {
  return __sanitizer_install_malloc_and_free_hooks(on_malloc, on_free) != 0;
}
#else
bool install_hooks() { return false; }
#endif

bool hooks_installed() {
  static const bool installed = install_hooks();
  return installed;
}

}  // namespace

AllocationMeter::AllocationMeter() {
  hooks_installed();
  const int64_t live = g_live.load();
  g_base.store(live);
  g_peak.store(live);
  g_armed.store(true);
}
AllocationMeter::~AllocationMeter() { g_armed.store(false); }
int64_t AllocationMeter::peak_growth() const { return g_peak.load() - g_base.load(); }
bool AllocationMeter::available() { return hooks_installed(); }

void expect_bounded(const AllocationMeter& meter, const std::string& target, size_t input_size,
                    uint64_t described) {
  if (!AllocationMeter::available()) return;
  constexpr uint64_t kConstant = uint64_t{4} << 20;
  const uint64_t bound = 16 * static_cast<uint64_t>(input_size) + described + kConstant;
  const int64_t peak = meter.peak_growth();
  if (peak > 0 && static_cast<uint64_t>(peak) > bound) {
    throw FuzzFailure(target + ": the parser's heap grew by " + std::to_string(peak) +
                      " bytes for an input of " + std::to_string(input_size) +
                      " bytes; the bound is 16 x input + " + std::to_string(described) +
                      " described + 4 MiB = " + std::to_string(bound));
  }
}

// --- scratch files -------------------------------------------------------------------------

namespace {

struct Scratch {
  std::string dir;
  Scratch() {
    const char* tmp = std::getenv("TMPDIR");
    std::string tmpl = std::string(tmp != nullptr && tmp[0] != '\0' ? tmp : "/tmp") +
                       "/ember_fuzz_XXXXXX";
    if (::mkdtemp(tmpl.data()) == nullptr) throw FuzzFailure("mkdtemp failed for " + tmpl);
    dir = tmpl;
  }
  ~Scratch() {
    std::error_code ec;
    fs::remove_all(dir, ec);
  }
};

}  // namespace

const std::string& scratch_dir() {
  static const Scratch scratch;
  return scratch.dir;
}

std::string write_scratch(const std::string& name, const uint8_t* data, size_t size) {
  const fs::path p = fs::path(scratch_dir()) / name;
  fs::create_directories(p.parent_path());
  std::ofstream out(p, std::ios::binary | std::ios::trunc);
  out.write(reinterpret_cast<const char*>(data), static_cast<std::streamsize>(size));
  out.close();
  if (!out) throw FuzzFailure("could not write the scratch file " + p.string());
  return p.string();
}

// --- what may escape a parser ---------------------------------------------------------------

namespace {

// Runs `parse`; an ember::IOError (the loaders' typed error for a bad file) is the only
// exception allowed, and its message must name `path`. `state_errors` also allows the
// typed errors of a well-formed file whose tensors do not fit the model or optimizer
// (ShapeError, DTypeError, ValueError: io::load documents them), again naming the file.
// Returns whether the parse was rejected.
template <typename F>
bool expect_typed(const std::string& target, const std::string& path, F&& parse,
                  bool state_errors = false) {
  const auto names_file = [&](const Error& e, const char* type) {
    if (std::string(e.what()).find(path) == std::string::npos) {
      throw FuzzFailure(target + ": " + type + " does not name the file " + path + ": " +
                        e.what());
    }
  };
  try {
    parse();
    return false;
  } catch (const IOError& e) {
    names_file(e, "IOError");
  } catch (const ShapeError& e) {
    if (!state_errors) throw FuzzFailure(target + ": ShapeError instead of IOError: " + e.what());
    names_file(e, "ShapeError");
  } catch (const DTypeError& e) {
    if (!state_errors) throw FuzzFailure(target + ": DTypeError instead of IOError: " + e.what());
    names_file(e, "DTypeError");
  } catch (const ValueError& e) {
    if (!state_errors) throw FuzzFailure(target + ": ValueError instead of IOError: " + e.what());
    names_file(e, "ValueError");
  } catch (const FuzzFailure&) {
    throw;
  } catch (const Error& e) {
    throw FuzzFailure(target + ": untyped ember::Error instead of IOError: " + e.what());
  } catch (const std::exception& e) {
    throw FuzzFailure(target + ": a non-ember exception escaped: " + e.what());
  }
  return true;
}

}  // namespace

// --- the targets ----------------------------------------------------------------------------

void check_safetensors(const uint8_t* data, size_t size) {
  const std::string path = write_scratch("input.safetensors", data, size);
  AllocationMeter meter;
  expect_typed("safetensors", path, [&] {
    const io::SafetensorsFile f = io::load_safetensors(path);
    // Every byte of tensor data lies inside the file: what was loaded cannot exceed it.
    uint64_t total = 0;
    for (const auto& [name, t] : f.tensors) total += static_cast<uint64_t>(t.nbytes());
    if (total > size) {
      throw FuzzFailure("safetensors: loaded " + std::to_string(total) +
                        " bytes of tensors from a file of " + std::to_string(size));
    }
  });
  // The tensor data lies inside the file: nothing beyond 16 x its size is described.
  expect_bounded(meter, "safetensors", size, 0);
}

namespace {

// The model and optimizer a checkpoint is loaded into; the seeds' checkpoints were saved
// from the same architecture (corpus_gen.cpp), so the fuzzer starts from files that load.
struct Restored {
  Restored() : seeded((manual_seed(7), true)) {}
  bool seeded;
  nn::Sequential model{nn::Linear(4, 3), nn::ReLU(), nn::Linear(3, 2)};
  optim::Adam opt{model.parameters(), {.lr = 0.01}};
};

std::vector<uint8_t> bytes_of(const StateDict& sd) {
  std::vector<uint8_t> out;
  for (const auto& [name, t] : sd) {
    const Tensor c = t.detach().cpu().contiguous();
    out.insert(out.end(), name.begin(), name.end());
    const std::string shape = shape_str(c.shape()) + dtype_name(c.dtype());
    out.insert(out.end(), shape.begin(), shape.end());
    const auto* p = static_cast<const uint8_t*>(c.data_ptr());
    out.insert(out.end(), p, p + c.nbytes());
  }
  return out;
}

struct Snapshot {
  std::vector<uint8_t> model, optimizer;
  RngState rng;
  static Snapshot of(const Restored& t) {
    return {bytes_of(t.model.state_dict()), bytes_of(t.opt.state_dict()), get_rng_state()};
  }
  void expect_same(const Snapshot& before, const std::string& what) const {
    if (model != before.model) throw FuzzFailure(what + " rejected the file but changed the model");
    if (optimizer != before.optimizer) {
      throw FuzzFailure(what + " rejected the file but changed the optimizer");
    }
    if (rng.seed != before.rng.seed || rng.cpu_engine != before.rng.cpu_engine ||
        rng.philox_offset_cpu != before.rng.philox_offset_cpu) {
      throw FuzzFailure(what + " rejected the file but changed the random generators");
    }
  }
};

}  // namespace

void check_checkpoint(const uint8_t* data, size_t size) {
  const std::string path = write_scratch("checkpoint.safetensors", data, size);
  const RngState rng_before = get_rng_state();
  {
    Restored t;
    const Snapshot before = Snapshot::of(t);
    AllocationMeter meter;
    if (expect_typed("checkpoint", path, [&] { io::load_checkpoint(path, t.model, &t.opt); },
                     true)) {
      Snapshot::of(t).expect_same(before, "load_checkpoint");
    }
    // The tensors lie inside the file; the model and optimizer are a few hundred bytes.
    expect_bounded(meter, "checkpoint", size, 0);
  }
  {
    Restored t;
    const Snapshot before = Snapshot::of(t);
    if (expect_typed("checkpoint", path, [&] { io::load(t.model, path); }, true)) {
      Snapshot::of(t).expect_same(before, "io::load(module)");
    }
  }
  {
    Restored t;
    const Snapshot before = Snapshot::of(t);
    if (expect_typed("checkpoint", path, [&] { io::load(t.opt, path); }, true)) {
      Snapshot::of(t).expect_same(before, "io::load(optimizer)");
    }
  }
  set_rng_state(rng_before);  // a loaded checkpoint sets the generators: the next run starts alike
}

void check_idx(const uint8_t* data, size_t size) {
  const std::string path = write_scratch("input.idx", data, size);
  const bool gzip = size >= 2 && data[0] == 0x1F && data[1] == 0x8B;
  AllocationMeter meter;
  expect_typed("idx", path, [&] {
    const data::IdxArray a = data::read_idx(path);
    // The element count, without overflow: a zero extent makes it 0 whatever the others
    // (huge extents beside a zero are a valid, empty array).
    int64_t count = std::find(a.dims.begin(), a.dims.end(), 0) != a.dims.end() ? 0 : 1;
    for (const int64_t d : a.dims) {
      if (count != 0 && __builtin_mul_overflow(count, d, &count)) {
        throw FuzzFailure("idx: accepted dimensions whose product overflows int64");
      }
    }
    if (static_cast<int64_t>(a.data.size()) != count * data::idx_element_size(a.type)) {
      throw FuzzFailure("idx: " + std::to_string(a.data.size()) + " data bytes for " +
                        std::to_string(count) + " elements");
    }
  });
  // Raw, the data lies in the file. Gzip, deflate expands at most 1032:1, so a reader that
  // allocated more than that had trusted the header's dimensions before the data came.
  expect_bounded(meter, "idx", size, gzip ? 1032 * static_cast<uint64_t>(size) : 0);
}

namespace {
// The most values (w * h * channels) a fuzzed image may have.
constexpr int64_t kMaxPixels = int64_t{1} << 20;
}

void check_image_decode(const uint8_t* data, size_t size) {
  const int channels = size == 0 ? 3 : 1 + data[size - 1] % 4;
  data::detail::DecodedImage img;
  std::string why;
  AllocationMeter meter;
  try {
    why = data::detail::decode_image_bytes(data, size, channels, kMaxPixels, img);
  } catch (const std::exception& e) {
    throw FuzzFailure(std::string("image_decode: decode_image_bytes threw (it returns why): ") +
                      e.what());
  }
  if (why.empty()) {
    if (img.width <= 0 || img.height <= 0 || img.channels != channels ||
        img.width * img.height * channels > kMaxPixels ||
        static_cast<int64_t>(img.pixels.size()) != img.width * img.height * channels) {
      throw FuzzFailure("image_decode: a decoded image of " + std::to_string(img.width) + "x" +
                        std::to_string(img.height) + "x" + std::to_string(img.channels) +
                        " holds " + std::to_string(img.pixels.size()) + " bytes");
    }
  }
  // What a header may validly describe is capped by max_pixels; decoders keep a few
  // values a pixel besides (libjpeg's coefficients of a progressive file: 2 bytes a value).
  expect_bounded(meter, "image_decode", size, 8 * static_cast<uint64_t>(kMaxPixels));
}

void check_image_folder(const uint8_t* data, size_t size) {
  static const char* const kExtensions[] = {".png", ".jpg", ".JPEG", ".bmp", ".gif", ".tga",
                                            ".pnm", ".ppm", ".pgm", ".psd", ".hdr", ".pic"};
  const uint8_t last = size == 0 ? 0 : data[size - 1];
  const char* ext = kExtensions[last % std::size(kExtensions)];
  const char* other = kExtensions[(last / 16) % std::size(kExtensions)];
  const std::string root = scratch_dir() + "/folder";
  std::error_code ec;
  fs::remove_all(root, ec);
  // Two files of one class (so two decoding threads), the same bytes under two extensions.
  const std::string first = write_scratch(std::string("folder/a/0") + ext, data, size);
  write_scratch(std::string("folder/a/1") + other, data, size);
  data::ImageFolderOptions options;
  options.height = 8;
  options.width = 8;
  options.channels = 1 + last % 4;
  options.max_pixels = kMaxPixels;
  AllocationMeter meter;
  // Errors are reported in file order, so a bad file's error names 0<ext>.
  expect_typed("image_folder", first, [&] {
    const data::ImageFolder folder(root, options);
    if (folder.size() != 2) {
      throw FuzzFailure("image_folder: " + std::to_string(folder.size()) +
                        " images from a folder of 2 that did not fail");
    }
  });
  expect_bounded(meter, "image_folder", 2 * size, 2 * 8 * static_cast<uint64_t>(kMaxPixels));
}

const std::vector<Target>& targets() {
  static const std::vector<Target> all = {
      {"safetensors", check_safetensors}, {"checkpoint", check_checkpoint},
      {"idx", check_idx},                 {"image_decode", check_image_decode},
      {"image_folder", check_image_folder}};
  return all;
}

}  // namespace ember::fuzz
