// tensor/file_io.h: whole-file reads and crash-safe writes.
//
// write_file_atomic writes to temp_path_for(path) = "<path>.tmp.<pid>",
// fsyncs it, renames it over `path` and fsyncs the directory, so a reader
// sees either the old file or the new one, never a torn one: a crash or a
// full disk mid-save cannot corrupt a checkpoint. A process killed before the
// rename leaves its temp file behind; remove_stale_temps(path) clears those.
//
// rename_durable and remove_tree are the directory-level pieces from which a
// caller builds an atomic switch of a whole directory (train/train_state.h).
#pragma once

#include <cstddef>
#include <cstdint>
#include <string>

namespace simba {

std::string read_file(const std::string& path);  // error names the path on failure

// A regular file open for reading in pieces at given offsets, for formats that place data at
// known offsets (nn/safetensors.cpp reads its header, then each tensor straight into the
// tensor's storage: one copy, and no whole-file buffer beside the tensors). Errors name the path.
class FileReader {
 public:
  explicit FileReader(const std::string& path);
  ~FileReader();
  FileReader(const FileReader&) = delete;
  FileReader& operator=(const FileReader&) = delete;
  uint64_t size() const { return size_; }  // bytes, when the file was opened
  // Reads exactly n bytes at `offset` into dst; an error if the file ends before them.
  void read_at(uint64_t offset, void* dst, size_t n) const;

 private:
  std::string path_;
  int fd_ = -1;
  uint64_t size_ = 0;
};
void write_file_atomic(const std::string& path, const std::string& bytes);
bool file_exists(const std::string& path);
void make_dirs(const std::string& path);  // mkdir -p

// "<path>.tmp.<pid of this process>": where an atomic write of `path` stages its data.
std::string temp_path_for(const std::string& path);
// Removes every "<path>.tmp.<digits>" next to `path` (files or directories):
// what killed writers of `path` left behind. Call it only while no other
// process writes `path`.
void remove_stale_temps(const std::string& path);

// rename(from, to), then fsync of the parent directory of `to`, so that the
// new name survives a power loss. Errors name both paths.
void rename_durable(const std::string& from, const std::string& to);
// rm -r; nothing to do if `path` does not exist.
void remove_tree(const std::string& path);
// fsync of a directory, making the entries created or renamed in it durable.
void fsync_dir(const std::string& dir);

}  // namespace simba
