// kvarn_cl.Backend: a C++ Backend shared by the codec calls and the caches built on it, with the
// lock that serializes its use (the GIL is released while the library works), and the staging of
// caller arrays into backend buffers (a view on host-memory backends, one transfer on devices).
#pragma once

#include <memory>
#include <mutex>
#include <string>

#include "arrays.hpp"
#include "kvarn_cl/backend.hpp"

namespace kvarn_cl::py {

struct PyBackend {
  std::shared_ptr<Backend> impl;
  std::shared_ptr<std::mutex> mutex = std::make_shared<std::mutex>();
  std::string requested;        // "cpu", "opencl" or "auto"
  std::string fallback_reason;  // why "auto" runs on the CPU because OpenCL was unusable
  std::string reason;           // why "auto" chose what it runs on; empty for cpu / opencl
  bool host_memory = false;     // buffers are host memory: caller arrays are used in place
};

// None -> the shared "auto" backend; "cpu" / "opencl" / "auto" -> the shared one of that kind
// (created on first use, kept for the process); a Backend -> itself.
nb::object resolve_backend(nb::handle backend, const char* fn);

// A caller's array as a backend buffer: wrapped in place on host-memory backends, else copied to
// a new device buffer (the one transfer a device needs).
std::unique_ptr<Buffer> stage_in(PyBackend& be, const void* data, std::size_t bytes);

// A destination for backend output: the caller's memory in place on host-memory backends, else a
// device buffer that finish() reads back into it.
class StagedOut {
 public:
  StagedOut(PyBackend& be, void* data, std::size_t bytes);
  Buffer& buffer() { return *buffer_; }
  void finish();

 private:
  PyBackend& be_;
  void* data_;
  std::size_t bytes_;
  std::unique_ptr<Buffer> buffer_;
};

void bind_backend(nb::module_& m);

}  // namespace kvarn_cl::py
