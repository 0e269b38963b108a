#include "opencl/stderr_capture.hpp"

#include <unistd.h>

namespace kvarn_cl::opencl {
namespace {

std::mutex& capture_mutex() {
  static std::mutex m;
  return m;
}

}  // namespace

StderrCapture::StderrCapture() : lock_(capture_mutex()) {
  std::fflush(stderr);
  file_ = std::tmpfile();
  if (file_ == nullptr) return;
  saved_ = ::dup(2);
  if (saved_ < 0 || ::dup2(::fileno(file_), 2) < 0) {
    if (saved_ >= 0) ::close(saved_);
    saved_ = -1;
    std::fclose(file_);
    file_ = nullptr;
  }
}

std::string StderrCapture::finish() {
  std::string text;
  if (file_ == nullptr) return text;
  std::fflush(stderr);
  ::dup2(saved_, 2);
  ::close(saved_);
  saved_ = -1;
  std::rewind(file_);
  char buf[4096];
  for (std::size_t n; (n = std::fread(buf, 1, sizeof buf, file_)) > 0;) text.append(buf, n);
  std::fclose(file_);
  file_ = nullptr;
  return text;
}

StderrCapture::~StderrCapture() { finish(); }

}  // namespace kvarn_cl::opencl
