// File input and output of kvarn-cl. Inputs are read whole and validated before any work starts;
// outputs go to a temporary file in the destination directory and are renamed into place only when
// complete, so a failed run never leaves a partial or stale-looking output behind.
#include <cerrno>
#include <cmath>
#include <cstdio>
#include <cstring>
#include <fstream>
#include <sstream>

#include <fcntl.h>
#include <sys/stat.h>
#include <unistd.h>

#include "cli.hpp"
#include "kvarn_cl/error.hpp"

namespace kvarn_cl::cli {
namespace {

std::string quoted(const std::string& option, const std::string& path) {
  return "--" + option + " '" + path + "'";
}

std::string parent_dir(const std::string& path) {
  auto slash = path.find_last_of('/');
  if (slash == std::string::npos) return ".";
  if (slash == 0) return "/";
  return path.substr(0, slash);
}

std::string base_name(const std::string& path) {
  auto slash = path.find_last_of('/');
  return slash == std::string::npos ? path : path.substr(slash + 1);
}

}  // namespace

std::vector<std::uint8_t> read_file(const std::string& path, const std::string& option) {
  struct stat st {};
  if (::stat(path.c_str(), &st) != 0)
    throw IoError(quoted(option, path) + ": cannot open: " + std::strerror(errno));
  if (!S_ISREG(st.st_mode)) throw IoError(quoted(option, path) + ": not a regular file");
  std::ifstream in(path, std::ios::binary);
  if (!in) throw IoError(quoted(option, path) + ": cannot open: " + std::strerror(errno));
  std::vector<std::uint8_t> data(static_cast<std::size_t>(st.st_size));
  if (!data.empty() && !in.read(reinterpret_cast<char*>(data.data()), std::streamsize(data.size())))
    throw IoError(quoted(option, path) + ": read failed after " + std::to_string(in.gcount()) +
                  " of " + std::to_string(data.size()) + " bytes");
  return data;
}

void check_finite(const half_bits* data, std::size_t rows, int cols, const std::string& what) {
  for (std::size_t i = 0; i < rows * std::size_t(cols); ++i) {
    if ((data[i] & 0x7C00u) != 0x7C00u) continue;  // exponent all ones: Inf or NaN
    std::ostringstream msg;
    msg << what << ": non-finite value " << half_to_float(data[i]) << " at token " << i / cols
        << ", channel " << i % cols;
    throw NonFiniteInput(msg.str());
  }
}

std::vector<half_bits> read_f16_rows(const std::string& path, const std::string& option, int cols,
                                     const std::string& cols_what, std::size_t row_multiple,
                                     const std::string& multiple_what, std::size_t* rows_out) {
  const std::vector<std::uint8_t> bytes = read_file(path, option);
  const std::string what = quoted(option, path);
  if (bytes.empty()) throw InvalidArgument(what + ": empty file");
  if (bytes.size() % 2 != 0)
    throw InvalidArgument(what + ": size " + std::to_string(bytes.size()) +
                          " bytes is not a whole number of fp16 values");
  const std::size_t values = bytes.size() / 2;
  if (values % std::size_t(cols) != 0)
    throw InvalidArgument(what + ": " + std::to_string(values) +
                          " fp16 values is not a multiple of " + cols_what);
  const std::size_t rows = values / std::size_t(cols);
  if (row_multiple > 1 && rows % row_multiple != 0)
    throw InvalidArgument(what + ": " + std::to_string(rows) + " tokens is not a multiple of " +
                          multiple_what + " " + std::to_string(row_multiple));
  std::vector<half_bits> out(values);
  for (std::size_t i = 0; i < values; ++i)  // little-endian on every host
    out[i] = half_bits(bytes[2 * i] | (unsigned(bytes[2 * i + 1]) << 8));
  check_finite(out.data(), rows, cols, what);
  *rows_out = rows;
  return out;
}

AtomicOutput::AtomicOutput(std::string path, std::string option)
    : path_(std::move(path)), option_(std::move(option)) {
  struct stat st {};
  if (::stat(path_.c_str(), &st) == 0 && S_ISDIR(st.st_mode))
    throw IoError(quoted(option_, path_) + ": is a directory");
  temp_ = parent_dir(path_) + "/." + base_name(path_) + ".tmp.XXXXXX";
  fd_ = ::mkstemp(temp_.data());
  if (fd_ < 0)
    throw IoError(quoted(option_, path_) + ": cannot create a file in '" + parent_dir(path_) +
                  "': " + std::strerror(errno));
}

AtomicOutput::~AtomicOutput() {
  if (fd_ >= 0) ::close(fd_);
  if (!committed_) ::unlink(temp_.c_str());
}

void AtomicOutput::write(const void* data, std::size_t bytes) {
  const char* p = static_cast<const char*>(data);
  while (bytes > 0) {
    ssize_t n = ::write(fd_, p, bytes);
    if (n < 0 && errno == EINTR) continue;
    if (n <= 0) throw IoError(quoted(option_, path_) + ": write failed: " + std::strerror(errno));
    p += n;
    bytes -= std::size_t(n);
  }
}

void AtomicOutput::commit() {
  // mkstemp creates 0600; give the file the permissions a plain create would (0666 & ~umask).
  mode_t mask = ::umask(0);
  ::umask(mask);
  ::fchmod(fd_, 0666 & ~mask);
  int rc = ::close(fd_);
  fd_ = -1;
  if (rc != 0) throw IoError(quoted(option_, path_) + ": write failed: " + std::strerror(errno));
  if (::rename(temp_.c_str(), path_.c_str()) != 0)
    throw IoError(quoted(option_, path_) + ": cannot rename the finished file into place: " +
                  std::strerror(errno));
  committed_ = true;
}

void AtomicOutput::remove_committed() noexcept {
  if (committed_) ::unlink(path_.c_str());
}

std::string format_bytes(double bytes) {
  char buf[64];
  if (bytes >= 1024.0 * 1024.0 * 1024.0)
    std::snprintf(buf, sizeof buf, "%.2f GiB", bytes / (1024.0 * 1024.0 * 1024.0));
  else if (bytes >= 1024.0 * 1024.0)
    std::snprintf(buf, sizeof buf, "%.2f MiB", bytes / (1024.0 * 1024.0));
  else if (bytes >= 1024.0)
    std::snprintf(buf, sizeof buf, "%.1f KiB", bytes / 1024.0);
  else
    std::snprintf(buf, sizeof buf, "%.0f B", bytes);
  return buf;
}

}  // namespace kvarn_cl::cli
