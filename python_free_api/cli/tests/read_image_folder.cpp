// Test helper for `ember export-images`: reads an exported split back with
// data::ImageFolder and checks it against Fashion-MNIST itself: the number of images,
// each one's class and every pixel. Usage: read_image_folder DIR DATA_DIR train|test N
#include <cmath>
#include <cstdio>
#include <exception>
#include <filesystem>
#include <string>
#include <vector>

#include "ember/ember.h"

int main(int argc, char** argv) {
  using namespace ember;
  if (argc != 5) {
    std::fprintf(stderr, "usage: %s DIR DATA_DIR train|test N\n", argv[0]);
    return 2;
  }
  try {
    const std::string dir = argv[1];
    const data::Split split = std::string(argv[3]) == "test" ? data::Split::Test
                                                               : data::Split::Train;
    const int64_t expected = std::stoll(argv[4]);
    const data::ImageFolder folder(dir, {.height = 28, .width = 28, .channels = 1});
    const data::FashionMNIST fashion(argv[2], split);
    if (folder.size() != expected) {
      std::printf("FAIL: %lld images in %s, expected %lld\n",
                  static_cast<long long>(folder.size()), dir.c_str(),
                  static_cast<long long>(expected));
      return 1;
    }
    const std::vector<std::string>& names = data::FashionMNIST::classes();
    const std::vector<float> got = folder.images().to_vector<float>();
    const std::vector<int64_t> got_labels = folder.labels().to_vector<int64_t>();
    const std::vector<float> want = fashion.images().narrow(0, 0, expected).to_vector<float>();
    const std::vector<int64_t> want_labels =
        fashion.labels().narrow(0, 0, expected).to_vector<int64_t>();
    for (int64_t i = 0; i < folder.size(); ++i) {
      // The file is <class>/<sample index>.png; the folder's label indexes its classes().
      const std::filesystem::path file = folder.files()[i];
      const int64_t sample = std::stoll(file.stem().string());
      const std::string cls = folder.classes()[got_labels[i]];
      if (sample < 0 || sample >= expected) {
        std::printf("FAIL: %s: sample %lld is not among the first %lld\n", file.c_str(),
                    static_cast<long long>(sample), static_cast<long long>(expected));
        return 1;
      }
      if (cls != data::safe_file_name(names[want_labels[sample]])) {
        std::printf("FAIL: %s: class %s, expected %s\n", file.c_str(), cls.c_str(),
                    data::safe_file_name(names[want_labels[sample]]).c_str());
        return 1;
      }
      for (int64_t p = 0; p < 28 * 28; ++p) {
        if (std::abs(got[i * 784 + p] - want[sample * 784 + p]) > 1e-6f) {
          std::printf("FAIL: %s: pixel %lld is %g, expected %g\n", file.c_str(),
                      static_cast<long long>(p), got[i * 784 + p], want[sample * 784 + p]);
          return 1;
        }
      }
    }
    std::printf("read back %lld images in %zu classes from %s: all match\n",
                static_cast<long long>(folder.size()), folder.classes().size(), dir.c_str());
    return 0;
  } catch (const std::exception& e) {
    std::printf("FAIL: %s\n", e.what());
    return 1;
  }
}
