// tensor/file_io.cpp: whole-file reads and crash-safe (atomic) writes on POSIX.
//
// Every failure is reported with the path and the operating system's reason
// (strerror), because "could not save checkpoint" alone does not tell a user
// whether the disk is full, the directory is missing or permissions are wrong.
#include "tensor/file_io.h"

#include <fcntl.h>
#include <sys/stat.h>
#include <unistd.h>

#include <algorithm>
#include <cctype>
#include <cerrno>
#include <cstring>
#include <filesystem>
#include <system_error>

#include "tensor/checked_math.h"
#include "tensor/error.h"

namespace simba {

namespace {

std::string errno_text(int err) { return std::strerror(err); }

// Closes a descriptor when it goes out of scope; release() hands it back so
// that close() errors can be checked on the success path.
class FdGuard {
 public:
  explicit FdGuard(int fd) : fd_(fd) {}
  ~FdGuard() {
    if (fd_ >= 0) ::close(fd_);
  }
  FdGuard(const FdGuard&) = delete;
  FdGuard& operator=(const FdGuard&) = delete;
  int get() const { return fd_; }
  int release() {
    int fd = fd_;
    fd_ = -1;
    return fd;
  }

 private:
  int fd_;
};

// Writes all of `bytes`: write() may write less than asked (signals, pipes,
// some filesystems), so a single call is not enough. Returns 0 or an errno.
int write_all(int fd, const char* data, size_t size) {
  while (size > 0) {
    ssize_t n = ::write(fd, data, size);
    if (n < 0) {
      if (errno == EINTR) continue;
      return errno;
    }
    data += n;
    size -= static_cast<size_t>(n);
  }
  return 0;
}

std::string parent_dir(const std::string& path) {
  std::string dir = std::filesystem::path(path).parent_path().string();
  return dir.empty() ? std::string(".") : dir;
}

}  // namespace

std::string read_file(const std::string& path) {
  FdGuard fd(::open(path.c_str(), O_RDONLY | O_CLOEXEC));
  int err = errno;
  SIMBA_CHECK(fd.get() >= 0, "cannot open '" << path << "' for reading: " << errno_text(err));
  struct stat st {};
  SIMBA_CHECK(::fstat(fd.get(), &st) == 0, "cannot stat '" << path << "': " << errno_text(errno));
  SIMBA_CHECK(!S_ISDIR(st.st_mode), "cannot read '" << path << "': it is a directory, expected a file");

  // st_size is only a hint (the file may change while we read, and special
  // files report 0), so read until end of file rather than exactly st_size.
  // A file larger than the machine's memory cannot be read whole: say so,
  // naming it, instead of failing the allocation.
  check_memory_budget(st.st_size, "reading '" + path + "' whole would", "use a smaller file");
  std::string bytes;
  bytes.reserve(st.st_size > 0 ? static_cast<size_t>(st.st_size) : 0);
  char buffer[1 << 16];
  for (;;) {
    ssize_t n = ::read(fd.get(), buffer, sizeof buffer);
    if (n < 0) {
      err = errno;
      if (err == EINTR) continue;
      SIMBA_FAIL("cannot read '" << path << "': " << errno_text(err));
    }
    if (n == 0) break;
    bytes.append(buffer, static_cast<size_t>(n));
  }
  return bytes;
}

FileReader::FileReader(const std::string& path) : path_(path) {
  // O_NONBLOCK: opening a FIFO that no process writes to would otherwise wait forever, before
  // the type check below could refuse it; on a regular file the flag changes nothing.
  FdGuard fd(::open(path.c_str(), O_RDONLY | O_CLOEXEC | O_NONBLOCK));
  const int err = errno;
  SIMBA_CHECK(fd.get() >= 0, "cannot open '" << path << "' for reading: " << errno_text(err));
  struct stat st {};
  SIMBA_CHECK(::fstat(fd.get(), &st) == 0, "cannot stat '" << path << "': " << errno_text(errno));
  const char* kind = S_ISDIR(st.st_mode)    ? "a directory"
                     : S_ISFIFO(st.st_mode) ? "a FIFO (named pipe)"
                     : S_ISCHR(st.st_mode)  ? "a character device"
                     : S_ISBLK(st.st_mode)  ? "a block device"
                     : S_ISSOCK(st.st_mode) ? "a socket"
                                            : "not a regular file";
  SIMBA_CHECK(S_ISREG(st.st_mode), "cannot read '" << path << "': expected a regular file (its data is read at "
                                                   << "given offsets), got " << kind);
  size_ = static_cast<uint64_t>(st.st_size);
  fd_ = fd.release();
}

FileReader::~FileReader() {
  if (fd_ >= 0) ::close(fd_);
}

void FileReader::read_at(uint64_t offset, void* dst, size_t n) const {
  char* p = static_cast<char*>(dst);
  while (n > 0) {
    const ssize_t got = ::pread(fd_, p, n, static_cast<off_t>(offset));
    if (got < 0) {
      const int err = errno;
      if (err == EINTR) continue;
      SIMBA_FAIL("cannot read '" << path_ << "': " << errno_text(err));
    }
    SIMBA_CHECK(got > 0, "cannot read '" << path_ << "': the file ends at byte " << offset << ", before the "
                                         << n << " more bytes expected there (was it changed while being read?)");
    p += got;
    offset += static_cast<uint64_t>(got);
    n -= static_cast<size_t>(got);
  }
}

void write_file_atomic(const std::string& path, const std::string& bytes) {
  const std::string tmp = temp_path_for(path);
  const std::string failed = "cannot write '" + path + "'";
  const char* hint = "the previous contents of the file (if any) are unchanged";

  FdGuard fd(::open(tmp.c_str(), O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0644));
  int err = errno;
  SIMBA_CHECK_HINT(fd.get() >= 0,
                   failed << ": cannot create temporary file '" << tmp << "': " << errno_text(err),
                   hint);

  // From here on, every failure must remove the temporary file before
  // throwing, so an interrupted save leaves no debris next to the target.
  auto fail = [&](const char* step) {
    ::unlink(tmp.c_str());
    SIMBA_FAIL_HINT(failed << ": " << step << " '" << tmp << "' failed: " << errno_text(err), hint);
  };
  err = write_all(fd.get(), bytes.data(), bytes.size());
  if (err != 0) fail("writing");
  // fsync before rename: otherwise the rename can reach the disk before the
  // data, and a crash leaves a correctly named but empty or torn file.
  if (::fsync(fd.get()) != 0) {
    err = errno;
    fail("fsync of");
  }
  if (::close(fd.release()) != 0) {
    err = errno;
    fail("closing");
  }
  if (::rename(tmp.c_str(), path.c_str()) != 0) {
    err = errno;
    fail("renaming");
  }

  // fsync the directory so that the rename itself (the directory entry) is
  // durable.
  fsync_dir(parent_dir(path));
}

// True if anything (file, directory, ...) exists at `path`.
bool file_exists(const std::string& path) {
  struct stat st {};
  return ::stat(path.c_str(), &st) == 0;
}

// An empty path means "the current directory", which exists: a no-op, so that
// make_dirs(parent of a bare file name) needs no special case at the caller.
void make_dirs(const std::string& path) {
  if (path.empty()) return;
  std::error_code ec;
  std::filesystem::create_directories(path, ec);
  SIMBA_CHECK(!ec, "cannot create directory '" << path << "': " << ec.message());
}

std::string temp_path_for(const std::string& path) { return path + ".tmp." + std::to_string(::getpid()); }

void remove_stale_temps(const std::string& path) {
  const std::filesystem::path target(path);
  const std::string prefix = target.filename().string() + ".tmp.";
  const std::string dir = parent_dir(path);
  std::error_code ec;
  if (!std::filesystem::is_directory(dir, ec)) return;  // nothing was ever written there
  std::filesystem::directory_iterator it(dir, ec), end;
  SIMBA_CHECK(!ec, "cannot list directory '" << dir << "' to remove temp files of '" << path << "': " << ec.message());
  for (; it != end; it.increment(ec)) {
    const std::string name = it->path().filename().string();
    const bool stale = name.size() > prefix.size() && name.compare(0, prefix.size(), prefix) == 0 &&
                       std::all_of(name.begin() + static_cast<std::ptrdiff_t>(prefix.size()), name.end(),
                                   [](unsigned char c) { return std::isdigit(c) != 0; });
    if (stale) remove_tree(it->path().string());
  }
  SIMBA_CHECK(!ec, "cannot list directory '" << dir << "' to remove temp files of '" << path << "': " << ec.message());
}

void rename_durable(const std::string& from, const std::string& to) {
  const int err = ::rename(from.c_str(), to.c_str()) == 0 ? 0 : errno;
  SIMBA_CHECK(err == 0, "cannot rename '" << from << "' to '" << to << "': " << errno_text(err));
  fsync_dir(parent_dir(to));
}

void remove_tree(const std::string& path) {
  std::error_code ec;
  std::filesystem::remove_all(path, ec);
  SIMBA_CHECK(!ec, "cannot remove '" << path << "': " << ec.message());
}

// Some filesystems cannot fsync a directory and say so with EINVAL; the
// entries are still there, so that is not an error.
void fsync_dir(const std::string& dir) {
  FdGuard dfd(::open(dir.c_str(), O_RDONLY | O_DIRECTORY | O_CLOEXEC));
  int err = errno;
  SIMBA_CHECK(dfd.get() >= 0, "cannot open directory '" << dir << "' to make its entries durable: " << errno_text(err));
  err = ::fsync(dfd.get()) == 0 ? 0 : errno;
  SIMBA_CHECK(err == 0 || err == EINVAL, "fsync of directory '" << dir << "' failed: " << errno_text(err));
}

}  // namespace simba
