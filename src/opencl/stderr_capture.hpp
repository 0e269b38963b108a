// What an OpenCL compiler writes straight to the process's stderr while it builds a program (PoCL
// prints "N errors generated." there), captured so that it ends up in the KernelBuildError's build
// log after the error's own first line, instead of appearing on the terminal before it. On a
// successful build the captured text is written back to stderr unchanged.
//
// fd 2 is process-wide: captures are serialized by one mutex, and text other threads write to
// stderr during a build is caught too (it is written back, or kept in the build log of a failed
// build). If the descriptor cannot be redirected, nothing is captured and the build runs as before.
#pragma once

#include <cstdio>
#include <mutex>
#include <string>

namespace kvarn_cl::opencl {

class StderrCapture {
 public:
  StderrCapture();
  ~StderrCapture();  // restores fd 2 if finish() was not called
  StderrCapture(const StderrCapture&) = delete;
  StderrCapture& operator=(const StderrCapture&) = delete;

  // Restores fd 2 and returns what was written to it since construction.
  std::string finish();

 private:
  std::unique_lock<std::mutex> lock_;
  std::FILE* file_ = nullptr;
  int saved_ = -1;
};

}  // namespace kvarn_cl::opencl
