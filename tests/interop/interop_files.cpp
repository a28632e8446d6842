// The C++ half of the interop tests (tests/interop/README.md): `interop_files write DIR`
// writes what the Python checks read (ONNX models with ember's inputs and outputs,
// safetensors files of every dtype, TensorBoard event files) and the models' weights for
// the `ember export-onnx` tests; `interop_files verify DIR`
// reads back the safetensors file the Python side wrote and compares it bit for bit.
#include <cstdio>
#include <cstring>
#include <filesystem>
#include <string>
#include <utility>
#include <vector>

#include <ember/ember.h>

#include "export_models.h"

namespace fs = std::filesystem;
using namespace ember;

namespace {

// The dtypes checked against the `safetensors` package, by their safetensors names. A
// dtype ember gains is checked by adding its line here (Python reads whatever is there).
const std::vector<std::pair<const char*, DType>> kSafetensorsDtypes = {
    {"F32", kFloat32}, {"F64", kFloat64}, {"F16", kFloat16}, {"I32", kInt32},
    {"I64", kInt64},   {"U8", kUInt8},    {"BOOL", kBool},
    // BF16 is not here: the safetensors package's numpy API has no bfloat16 (numpy has
    // none); ember's BF16 files are checked bit for bit by tests/io/test_safetensors.cpp.
};

// Byte i of the tensor of dtype number k: every bit pattern turns up (NaNs, infinities,
// negative zeros and subnormals among the floats); bool bytes are 0 or 1.
unsigned char pattern_byte(size_t i, size_t k, bool is_bool) {
  const auto b = static_cast<unsigned char>((i * 167 + 13 + k * 31) & 0xFF);
  return is_bool ? static_cast<unsigned char>(b & 1) : b;
}

Tensor pattern_tensor(size_t k, DType dtype) {
  Tensor t = empty({3, 5, 7}, {.dtype = dtype});
  auto* p = static_cast<unsigned char*>(t.data_ptr());
  for (size_t i = 0; i < t.nbytes(); ++i) p[i] = pattern_byte(i, k, dtype == kBool);
  return t;
}

void write_safetensors(const fs::path& dir) {
  nn::StateDict tensors;
  for (size_t k = 0; k < kSafetensorsDtypes.size(); ++k) {
    tensors.insert("t" + std::to_string(k) + "_" + kSafetensorsDtypes[k].first,
                   pattern_tensor(k, kSafetensorsDtypes[k].second));
  }
  io::save_safetensors((dir / "ember.safetensors").string(), tensors, {{"writer", "ember"}});
}

int verify_safetensors(const fs::path& dir) {
  const io::SafetensorsFile f = io::load_safetensors((dir / "python.safetensors").string());
  int failures = 0;
  for (size_t k = 0; k < kSafetensorsDtypes.size(); ++k) {
    const std::string name = "t" + std::to_string(k) + "_" + kSafetensorsDtypes[k].first;
    const Tensor* t = f.tensors.find(name);
    const Tensor want = pattern_tensor(k, kSafetensorsDtypes[k].second);
    const bool same = t != nullptr && t->dtype() == want.dtype() && t->shape() == want.shape() &&
                      std::memcmp(t->contiguous().data_ptr(), want.data_ptr(), want.nbytes()) == 0;
    std::printf("%-8s %s\n", name.c_str(), same ? "bit for bit" : "DIFFERS");
    failures += same ? 0 : 1;
  }
  const auto meta = f.metadata.find("writer");
  if (meta == f.metadata.end() || meta->second != "python") {
    std::printf("metadata: expected writer=python\n");
    ++failures;
  }
  return failures == 0 ? 0 : 1;
}

// Also the samples' weights as io::save writes them, for `ember export-onnx`'s tests.
void write_onnx(const fs::path& dir, const fs::path& weights_dir) {
  for (const interop::ExportCase& c : interop::export_cases()) {
    io::save(*c.model, (weights_dir / (c.name + ".safetensors")).string());
    c.model->eval();
    // Traced at batch 2; checked at batches 1 and 7, so a batch baked into the file fails.
    io::export_onnx(*c.model, interop::random_input(c, 2, 7), (dir / (c.name + ".onnx")).string());
    nn::StateDict io_tensors;
    NoGradGuard no_grad;
    for (int64_t batch : {1, 7}) {
      const Tensor x = interop::random_input(c, batch, static_cast<uint64_t>(100 + batch));
      io_tensors.insert("input_b" + std::to_string(batch), x);
      io_tensors.insert("output_b" + std::to_string(batch), (*c.model)(x));
    }
    io::save_safetensors((dir / (c.name + ".io.safetensors")).string(), io_tensors);
    std::printf("wrote %s.onnx\n", c.name.c_str());
  }
}

void write_tensorboard(const fs::path& dir) {
  // What check_tensorboard.py expects: tags loss and accuracy, steps 0..9.
  EventWriter w(dir.string());
  for (int64_t step = 0; step < 10; ++step) {
    w.add_scalar("loss", 2.5f / static_cast<float>(step + 1), step);
    w.add_scalar("accuracy", 0.1f * static_cast<float>(step), step);
  }
  w.add_scalar("lr/group0", 1e-3f, 9);
  w.flush();
}

}  // namespace

int main(int argc, char** argv) {
  if (argc != 3 || (std::strcmp(argv[1], "write") != 0 && std::strcmp(argv[1], "verify") != 0)) {
    std::fprintf(stderr, "usage: interop_files write|verify DIR\n");
    return 2;
  }
  const fs::path dir = argv[2];
  try {
    if (std::strcmp(argv[1], "verify") == 0) return verify_safetensors(dir / "safetensors");
    fs::remove_all(dir);
    for (const char* sub : {"onnx", "safetensors", "tensorboard", "weights"}) {
      fs::create_directories(dir / sub);
    }
    write_safetensors(dir / "safetensors");
    write_tensorboard(dir / "tensorboard");
    write_onnx(dir / "onnx", dir / "weights");
  } catch (const std::exception& e) {
    std::fprintf(stderr, "interop_files: %s\n", e.what());
    return 1;
  }
  return 0;
}
