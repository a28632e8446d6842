// write_file_atomically: temporary file, fsync, rename, directory fsync.
#include "atomic_file.h"

#include <dirent.h>
#include <fcntl.h>
#include <signal.h>
#include <sys/stat.h>
#include <unistd.h>

#include <algorithm>
#include <atomic>
#include <cerrno>
#include <chrono>
#include <cstdint>
#include <cstdlib>
#include <cstring>
#include <filesystem>

#include "ember/core/base/error.h"

namespace ember::io::internal {

namespace {

// Large writes go in pieces: Linux writes at most ~2 GiB per call.
constexpr size_t kMaxIoChunk = size_t{1} << 30;

[[noreturn]] void fail(const std::string& op, const std::string& path, const std::string& what) {
  throw IOError(::ember::detail::str_cat(op, ": ", path, ": ", what));
}

std::string errno_text(int err) { return std::strerror(err); }

// Note [Atomic write]
// A file is replaced, never rewritten in place: the new bytes go to a temporary file in
// the same directory (rename is atomic only within one file system), which is fsync'ed,
// closed (close can report a deferred write error) and renamed over the target; then the
// directory is fsync'ed so the rename itself survives a power loss. A crash at any point
// leaves either the old file or the new one, whole. Until the rename succeeds the
// temporary is removed on every error path, so the old file is never touched.
class TempFile : public AtomicFileWriter {
 public:
  TempFile(const std::string& op, const std::string& target, const std::string& dir)
      : op_(op), target_(target) {
    namespace fs = std::filesystem;
    static std::atomic<uint64_t> counter{0};
    const std::string base = fs::path(target).filename().string();
    const auto clock =
        static_cast<uint64_t>(std::chrono::steady_clock::now().time_since_epoch().count());
    // O_EXCL makes a name collision (another writer, a stale file) a retry, not a clobber.
    for (int attempt = 0; attempt < 100; ++attempt) {
      const std::string candidate =
          (fs::path(dir) / ("." + base + ".tmp-" + std::to_string(::getpid()) + "-" +
                            std::to_string(counter++) + "-" + std::to_string(clock % 1000000)))
              .string();
      fd_ = ::open(candidate.c_str(), O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC, 0666);
      if (fd_ >= 0) {
        path_ = candidate;
        return;
      }
      if (errno != EEXIST) {
        fail(op_, target_, "cannot create a temporary file in " + dir + ": " + errno_text(errno));
      }
    }
    fail(op_, target_, "cannot create a temporary file in " + dir + ": every name tried exists");
  }
  ~TempFile() override {
    if (fd_ >= 0) ::close(fd_);
    if (!committed_) ::unlink(path_.c_str());
  }
  TempFile(const TempFile&) = delete;
  TempFile& operator=(const TempFile&) = delete;

  int fd() const { return fd_; }

  void write(const void* data, size_t n) override {
    const auto* p = static_cast<const char*>(data);
    size_t done = 0;
    while (done < n) {
      const ssize_t w = ::write(fd_, p + done, std::min(n - done, kMaxIoChunk));
      if (w < 0) {
        if (errno == EINTR) continue;
        fail(op_, target_, "cannot write " + path_ + ": " + errno_text(errno));
      }
      done += static_cast<size_t>(w);
    }
  }

  // Syncs, closes and renames over the target; after this the destructor leaves it alone.
  void commit() {
    if (::fsync(fd_) != 0) fail(op_, target_, "cannot fsync " + path_ + ": " + errno_text(errno));
    const int rc = ::close(fd_);
    fd_ = -1;
    if (rc != 0) fail(op_, target_, "cannot close " + path_ + ": " + errno_text(errno));
    if (::rename(path_.c_str(), target_.c_str()) != 0) {
      fail(op_, target_, "cannot rename " + path_ + " over it: " + errno_text(errno));
    }
    committed_ = true;
  }

 private:
  std::string op_;
  std::string target_;
  std::string path_;
  int fd_ = -1;
  bool committed_ = false;
};

// Note [Stale temporaries]
// A process killed between creating its temporary and the rename (SIGKILL, a power loss)
// leaves the temporary behind: a hidden file as large as the checkpoint, which nothing
// would ever remove. After each successful replace, the temporaries of the same target
// whose writer process no longer exists are removed. Those of a live process (another
// writer at work) are left alone; a name whose pid was reused by a live process is kept
// until a later save finds it dead.
void remove_stale_temporaries(const std::string& dir, const std::string& base) {
  const std::string prefix = "." + base + ".tmp-";
  DIR* d = ::opendir(dir.c_str());
  if (d == nullptr) return;
  while (const dirent* e = ::readdir(d)) {
    const std::string name = e->d_name;
    if (name.compare(0, prefix.size(), prefix) != 0) continue;
    const size_t dash = name.find('-', prefix.size());
    if (dash == std::string::npos || dash == prefix.size()) continue;
    const std::string pid_text = name.substr(prefix.size(), dash - prefix.size());
    if (!std::all_of(pid_text.begin(), pid_text.end(), [](char c) { return c >= '0' && c <= '9'; })) {
      continue;
    }
    const long pid = std::strtol(pid_text.c_str(), nullptr, 10);
    if (pid <= 0 || pid == static_cast<long>(::getpid())) continue;
    if (::kill(static_cast<pid_t>(pid), 0) == 0 || errno != ESRCH) continue;  // alive, or unknown
    (void)::unlinkat(::dirfd(d), name.c_str(), 0);
  }
  ::closedir(d);
}

}  // namespace

void write_file_atomically(const std::string& op, const std::string& path,
                           const std::function<void(AtomicFileWriter&)>& fill) {
  namespace fs = std::filesystem;
  if (path.empty()) fail(op, path, "the path is empty");
  // Found before anything is written, not after the whole file has been.
  std::error_code ec;
  if (fs::is_directory(path, ec)) fail(op, path, "the path is a directory");
  const fs::path parent = fs::path(path).parent_path();
  const std::string dir = parent.empty() ? std::string(".") : parent.string();
  TempFile tmp(op, path, dir);
  // Keep an existing file's permission bits, since the rename replaces its inode.
  struct stat old {};
  if (::stat(path.c_str(), &old) == 0 && S_ISREG(old.st_mode)) {
    (void)::fchmod(tmp.fd(), old.st_mode & 07777);
  }
  fill(tmp);
  tmp.commit();
  remove_stale_temporaries(dir, fs::path(path).filename().string());

  const int dir_fd = ::open(dir.c_str(), O_RDONLY | O_DIRECTORY | O_CLOEXEC);
  // Some file systems cannot sync a directory (EINVAL); the rename is then as durable as
  // they make it.
  const bool synced = dir_fd >= 0 && (::fsync(dir_fd) == 0 || errno == EINVAL || errno == ENOTSUP);
  const int err = errno;
  if (dir_fd >= 0) ::close(dir_fd);
  if (!synced) {
    fail(op, path,
         "written, but the directory " + dir + " could not be synced: " + errno_text(err));
  }
}

}  // namespace ember::io::internal
