// A fresh directory under /tmp for one test, removed with its contents at the end.
#pragma once

#include <stdlib.h>

#include <filesystem>
#include <fstream>
#include <stdexcept>
#include <string>
#include <system_error>
#include <vector>

namespace ember::testing {

class TempDir {
 public:
  // `prefix` names the folder (/tmp/<prefix>_XXXXXX), so a leftover says whose it was.
  explicit TempDir(const std::string& prefix = "ember_test") {
    std::string tmpl = "/tmp/" + prefix + "_XXXXXX";
    const char* p = ::mkdtemp(tmpl.data());
    if (p == nullptr) throw std::runtime_error("mkdtemp failed for " + tmpl);
    path_ = p;
  }
  ~TempDir() {
    std::error_code ec;
    std::filesystem::remove_all(path_, ec);
  }
  TempDir(const TempDir&) = delete;
  TempDir& operator=(const TempDir&) = delete;

  const std::filesystem::path& path() const { return path_; }
  std::string root() const { return path_.string(); }
  // root/<rel>, with its parent folders created.
  std::string file(const std::string& rel) const {
    const std::filesystem::path p = path_ / rel;
    std::filesystem::create_directories(p.parent_path());
    return p.string();
  }
  // root/<rel> holding `bytes`, parent folders created.
  std::string put(const std::string& rel, const std::vector<unsigned char>& bytes) const {
    const std::string p = file(rel);
    std::ofstream(p, std::ios::binary)
        .write(reinterpret_cast<const char*>(bytes.data()),
               static_cast<std::streamsize>(bytes.size()));
    return p;
  }

 private:
  std::filesystem::path path_;
};

}  // namespace ember::testing
