// tensor/file_io.h: whole-file reads and crash-safe writes.
//
// write_file_atomic writes to "<path>.tmp.<pid>", fsyncs it, renames it over
// `path` and fsyncs the directory, so a reader sees either the old file or the
// new one, never a torn one: a crash or a full disk mid-save cannot corrupt a
// checkpoint.
#pragma once

#include <string>

namespace simba {

std::string read_file(const std::string& path);  // error names the path on failure
void write_file_atomic(const std::string& path, const std::string& bytes);
bool file_exists(const std::string& path);
void make_dirs(const std::string& path);  // mkdir -p

}  // namespace simba
