// Writes the fuzz targets' seed corpora (tests/fuzz/corpus/<target>/) with ember's own
// writers: small valid files of every kind each parser reads, which the fuzzers mutate.
// Run once, by hand, when a format changes: ember_fuzz_corpus_gen <tests/fuzz/corpus>.
// Deterministic: the same build writes the same bytes.
#include <zlib.h>

#include <cstdint>
#include <cstdio>
#include <filesystem>
#include <fstream>
#include <initializer_list>
#include <string>
#include <utility>
#include <vector>

#include <ember/ember.h>

#define STB_IMAGE_WRITE_STATIC
#define STB_IMAGE_WRITE_IMPLEMENTATION
#include <stb/stb_image_write.h>

using namespace ember;
namespace fs = std::filesystem;

namespace {

fs::path g_root;

std::string out(const std::string& target, const std::string& name) {
  fs::create_directories(g_root / target);
  return (g_root / target / name).string();
}

StateDict dict(std::initializer_list<std::pair<std::string, Tensor>> entries) {
  StateDict d;
  for (const auto& [name, t] : entries) d.insert(name, t);
  return d;
}

void put(const std::string& target, const std::string& name, const std::vector<uint8_t>& b) {
  std::ofstream f(out(target, name), std::ios::binary | std::ios::trunc);
  f.write(reinterpret_cast<const char*>(b.data()), static_cast<std::streamsize>(b.size()));
}

// A raw safetensors file: 8-byte little-endian header length, the header, the data.
std::vector<uint8_t> safetensors_raw(const std::string& header, const std::vector<uint8_t>& data) {
  std::vector<uint8_t> b;
  b.reserve(8 + header.size() + data.size());
  const uint64_t n = header.size();
  for (int i = 0; i < 8; ++i) b.push_back(static_cast<uint8_t>(n >> (8 * i)));
  for (const char c : header) b.push_back(static_cast<uint8_t>(c));
  b.insert(b.end(), data.begin(), data.end());
  return b;
}

void safetensors() {
  const std::string t = "safetensors";
  manual_seed(1);
  io::save_safetensors(out(t, "f32_2x3"), dict({{"w", rand({2, 3})}}));
  io::save_safetensors(out(t, "every_dtype"),
                       dict({{"a", rand({3})},
                             {"b", rand({2, 2}).to(kFloat64)},
                             {"c", arange(4).to(DType::Int32)},
                             {"d", arange(5)},
                             {"e", arange(6).to(DType::UInt8)},
                             {"f", ones({2}).to(DType::Bool)}}),
                       {{"format", "pt"}, {"note", "seed"}});
  io::save_safetensors(out(t, "scalar_and_empty"),
                       dict({{"s", full({}, 2.5)}, {"z", zeros({0, 3})}}));
  io::save_safetensors(out(t, "nested_names"),
                       dict({{"layer.0.weight", rand({1, 4})}, {"layer.0.bias", rand({1})}}),
                       {{"k", "v\"quoted\" \\ \u00e9"}});
  io::save_safetensors(out(t, "empty"), StateDict{});
  // Hand-written headers: what other writers produce (no padding, fields in another
  // order, escapes) and what the loader must refuse (offsets, dtypes, nesting).
  const std::vector<uint8_t> four(16, 0x3F);
  put(t, "raw_minimal",
      safetensors_raw(
          R"({"x":{"dtype":"F32","shape":[4],"data_offsets":[0,16]}})",
          four));
  put(t, "raw_order",
      safetensors_raw(
          R"({"x":{"data_offsets":[0,16],"shape":[2,2],"dtype":"I32"},"__metadata__":{"a":"b"}})",
          four));
  put(t, "raw_escape",
      safetensors_raw(
          R"({"\u0078\n":{"dtype":"U8","shape":[16],"data_offsets":[0,16]}})",
          four));
  put(t, "raw_f16",
      safetensors_raw(
          R"({"h":{"dtype":"F16","shape":[8],"data_offsets":[0,16]}})",
          four));
  put(t, "raw_overlap",
      safetensors_raw(
          R"({"a":{"dtype":"U8","shape":[8],"data_offsets":[0,8]},)"
          R"("b":{"dtype":"U8","shape":[8],"data_offsets":[4,12]}})",
          four));
  put(t, "raw_deep", safetensors_raw(R"({"__metadata__":{"a":[[[[[[[[1]]]]]]]]}})", {}));
  put(t, "raw_big_shape",
      safetensors_raw(
          R"({"x":{"dtype":"F64","shape":[4294967296,4294967296],"data_offsets":[0,16]}})",
          four));
}

// The architecture check_checkpoint loads into (fuzz_checks.cpp).
struct Model {
  nn::Sequential model{nn::Linear(4, 3), nn::ReLU(), nn::Linear(3, 2)};
  optim::Adam opt{model.parameters(), {.lr = 0.01}};
  void train(int steps) {
    for (int i = 0; i < steps; ++i) {
      const Tensor loss = model(rand({8, 4})).pow(2.0).mean();
      opt.zero_grad();
      loss.backward();
      opt.step();
    }
  }
};

void checkpoints() {
  const std::string t = "checkpoint";
  manual_seed(2);
  Model m;
  io::save_checkpoint(out(t, "untrained"), m.model, &m.opt, {.epoch = 0, .step = 0, .extra = {}});
  m.train(2);
  io::save_checkpoint(out(t, "trained"), m.model, &m.opt,
                      {.epoch = 1, .step = 2, .extra = {{"best", "0.5"}}});
  io::save_checkpoint(out(t, "model_only"), m.model, nullptr, {.epoch = 3, .step = 9, .extra = {}});
  io::save(m.model, out(t, "module"));
  io::save(m.opt, out(t, "optimizer"));
  // Another architecture's file: refused, nothing changes.
  nn::Sequential wide{nn::Linear(4, 5), nn::ReLU(), nn::Linear(5, 2)};
  io::save(wide, out(t, "module_wide"));
}

void put_idx(const std::string& name, uint8_t type, const std::vector<uint32_t>& dims, int elem) {
  std::vector<uint8_t> b = {0, 0, type, static_cast<uint8_t>(dims.size())};
  uint64_t count = 1;
  for (const uint32_t d : dims) {
    for (int s = 24; s >= 0; s -= 8) b.push_back(static_cast<uint8_t>(d >> s));
    count *= d;
  }
  for (uint64_t i = 0; i < count * static_cast<uint64_t>(elem); ++i) {
    b.push_back(static_cast<uint8_t>(i * 37));
  }
  put("idx", name, b);
  const std::string gz = out("idx", name + "_gz");
  gzFile f = gzopen(gz.c_str(), "wb9");
  gzwrite(f, b.data(), static_cast<unsigned>(b.size()));
  gzclose(f);
}

void idx() {
  put_idx("u8_images", 0x08, {3, 4, 4}, 1);
  put_idx("u8_labels", 0x08, {5}, 1);
  put_idx("i8", 0x09, {2, 3}, 1);
  put_idx("i16", 0x0B, {4}, 2);
  put_idx("i32", 0x0C, {2, 2}, 4);
  put_idx("f32", 0x0D, {3}, 4);
  put_idx("f64", 0x0E, {1, 1, 2}, 8);
  put_idx("scalar", 0x08, {}, 1);
  put_idx("zero_dim", 0x08, {0, 7}, 1);
}

void write_func(void* ctx, void* data, int size) {
  auto* v = static_cast<std::vector<uint8_t>*>(ctx);
  const auto* p = static_cast<const uint8_t*>(data);
  v->insert(v->end(), p, p + size);
}

void images() {
  for (const char* t : {"image_decode", "image_folder"}) {
    for (const int c : {1, 2, 3, 4}) {
      for (const int side : {1, 5, 9}) {
        std::vector<uint8_t> px(static_cast<size_t>(side * side * c));
        for (size_t i = 0; i < px.size(); ++i) px[i] = static_cast<uint8_t>(i * 29 + c);
        const std::string base =
            std::to_string(side) + "x" + std::to_string(side) + "x" + std::to_string(c);
        std::vector<uint8_t> b;
        stbi_write_png_to_func(write_func, &b, side, side, c, px.data(), side * c);
        put(t, base + "_png", b);
        if (side == 9) {
          b.clear();
          stbi_write_jpg_to_func(write_func, &b, side, side, c, px.data(), 80);
          put(t, base + "_jpg", b);
          b.clear();
          stbi_write_bmp_to_func(write_func, &b, side, side, c, px.data());
          put(t, base + "_bmp", b);
          b.clear();
          stbi_write_tga_to_func(write_func, &b, side, side, c, px.data());
          put(t, base + "_tga", b);
          std::vector<float> f(px.begin(), px.end());
          b.clear();
          stbi_write_hdr_to_func(write_func, &b, side, side, c, f.data());
          put(t, base + "_hdr", b);
        }
      }
    }
    const std::string pgm = "P5\n3 2\n255\n\x01\x02\x03\x04\x05\x06";
    put(t, "pgm", std::vector<uint8_t>(pgm.begin(), pgm.end()));
    const std::string ppm = "P6 2 1 255 \xff\x00\x00\x00\xff\x00";
    put(t, "ppm", std::vector<uint8_t>(ppm.begin(), ppm.end()));
    // The smallest GIF: 1x1, a two-colour palette.
    put(t, "gif", {0x47, 0x49, 0x46, 0x38, 0x39, 0x61, 0x01, 0x00, 0x01, 0x00, 0x80, 0x00, 0x00,
                   0xFF, 0xFF, 0xFF, 0x00, 0x00, 0x00, 0x21, 0xF9, 0x04, 0x01, 0x00, 0x00, 0x00,
                   0x00, 0x2C, 0x00, 0x00, 0x00, 0x00, 0x01, 0x00, 0x01, 0x00, 0x00, 0x02, 0x02,
                   0x44, 0x01, 0x00, 0x3B});
  }
}

}  // namespace

int main(int argc, char** argv) {
  if (argc != 2) {
    std::fprintf(stderr, "usage: %s <tests/fuzz/corpus>\n", argv[0]);
    return 2;
  }
  g_root = argv[1];
  safetensors();
  checkpoints();
  idx();
  images();
  std::printf("seed corpora written under %s\n", g_root.string().c_str());
  return 0;
}
