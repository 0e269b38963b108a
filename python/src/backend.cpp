// kvarn_cl.Backend and the shared default backends.
#include "backend.hpp"

#include <nanobind/stl/string.h>

#include "kvarn_cl/device.hpp"
#include "kvarn_cl/error.hpp"

namespace kvarn_cl::py {
namespace {

std::string selector_part(nb::handle h, const char* name) {
  if (h.is_none()) return "";
  if (nb::isinstance<nb::str>(h)) return nb::cast<std::string>(h);
  long long index = 0;
  if (!nb::isinstance<nb::bool_>(h) && nb::try_cast(h, index, true) && index >= 0)
    return std::to_string(index);
  throw InvalidArgument(std::string("Backend: ") + name + " " + std::string(nb::repr(h).c_str()) +
                        " is neither an index >= 0 nor a part of a name");
}

void init_backend(PyBackend* self, const std::string& kind_name, nb::handle platform,
                  nb::handle device, unsigned threads) {
  // The library's one rule (make_backend): Python adds only the conversion of its arguments.
  BackendOptions options;
  options.kind = parse_backend_kind(kind_name, "Backend: kind");
  options.device = {selector_part(platform, "platform"), selector_part(device, "device")};
  options.cpu_threads = CpuThreads{threads};
  PyBackend b;
  b.requested = to_string(options.kind);
  {
    nb::gil_scoped_release release;  // device discovery and kernel builds may take a while
    bool fell_back = false;
    b.impl = make_backend(options, &b.reason, &fell_back);
    if (fell_back) b.fallback_reason = b.reason;
    unsigned char probe = 0;  // does the backend take caller memory in place?
    b.host_memory = b.impl->view_host(&probe, 1) != nullptr;
  }
  new (self) PyBackend(std::move(b));
}

}  // namespace

nb::object resolve_backend(nb::handle backend, const char* fn) {
  if (nb::isinstance<PyBackend>(backend)) return nb::borrow(backend);
  std::string kind = "auto";
  if (nb::isinstance<nb::str>(backend)) {
    kind = to_string(
        parse_backend_kind(nb::cast<std::string>(backend), std::string(fn) + ": backend"));
  } else if (!backend.is_none()) {
    throw InvalidArgument(
        std::string(fn) +
        ": backend must be a kvarn_cl.Backend, 'cpu', 'opencl', 'auto' or None, got " +
        std::string(nb::type_name(backend.type()).c_str()));
  }
  // The shared backends live in the module's _shared_backends dict, so they are released with the
  // module at interpreter exit (before the OpenCL runtime goes away).
  nb::dict shared = nb::module_::import_("kvarn_cl._kvarn_cl").attr("_shared_backends");
  nb::str key(kind.c_str());
  if (shared.contains(key)) return shared[key];
  nb::object made = nb::module_::import_("kvarn_cl._kvarn_cl").attr("Backend")(key);
  shared[key] = made;
  return made;
}

std::unique_ptr<Buffer> stage_in(PyBackend& be, const void* data, std::size_t bytes) {
  if (be.host_memory) return be.impl->view_host(const_cast<void*>(data), bytes);
  auto buf = be.impl->allocate(bytes == 0 ? 1 : bytes);
  if (bytes) be.impl->write(*buf, 0, data, bytes);
  return buf;
}

StagedOut::StagedOut(PyBackend& be, void* data, std::size_t bytes)
    : be_(be), data_(data), bytes_(bytes) {
  if (be.host_memory)
    buffer_ = be.impl->view_host(data, bytes);
  else
    buffer_ = be.impl->allocate(bytes == 0 ? 1 : bytes);
}

void StagedOut::finish() {
  if (!be_.host_memory && bytes_) be_.impl->read(*buffer_, 0, data_, bytes_);
  be_.impl->finish();
}

void bind_backend(nb::module_& m) {
  m.attr("_shared_backends") = nb::dict();
  nb::class_<PyBackend>(
      m, "Backend",
      "Where the codec and the cache run: 'cpu' (the exact C++ codec over threads), "
      "'opencl' (an OpenCL device) or 'auto' (an OpenCL GPU or accelerator whose kernels\n"
      "build, else the CPU backend, which is also preferred to an OpenCL CPU device such as\n"
      "PoCL; `reason` says why).\n\n"
      "platform / device pick an OpenCL device by index or by a case-insensitive part of its\n"
      "name (default: KVARN_CL_PLATFORM / KVARN_CL_DEVICE, else the first GPU, accelerator,\n"
      "then CPU device); with 'auto' a selected device is used even if it is a CPU.\n"
      "threads: CPU worker threads (0 = the shared pool, KVARN_CL_THREADS or all cores). An OpenCL "
      "backend\n"
      "builds each kernel program when first needed (per preset and head_dim; seconds\n"
      "on PoCL) and keeps it, so reuse one backend (backend=None shares one per kind).")
      .def("__init__", &init_backend, nb::arg("kind") = "auto", nb::kw_only(),
           nb::arg("platform") = nb::none(), nb::arg("device") = nb::none(),
           nb::arg("threads") = 0u)
      .def_prop_ro(
          "name", [](const PyBackend& b) { return b.impl->name(); },
          "'cpu (N threads)' or 'opencl: <platform> / <device>'.")
      .def_prop_ro(
          "kind", [](const PyBackend& b) { return to_string(b.impl->kind()); },
          "What it runs on: 'cpu' or 'opencl'.")
      .def_prop_ro(
          "requested", [](const PyBackend& b) { return b.requested; },
          "The kind asked for: 'cpu', 'opencl' or 'auto'.")
      .def_prop_ro(
          "is_opencl", [](const PyBackend& b) { return b.impl->kind() == BackendKind::opencl; },
          "kind == 'opencl'.")
      .def_prop_ro(
          "fallback_reason",
          [](const PyBackend& b) -> nb::object {
            if (b.fallback_reason.empty()) return nb::none();
            return nb::str(b.fallback_reason.c_str());
          },
          "Why 'auto' fell back to the CPU because OpenCL was unusable, or None.")
      .def_prop_ro(
          "reason",
          [](const PyBackend& b) -> nb::object {
            if (b.reason.empty()) return nb::none();
            return nb::str(b.reason.c_str());
          },
          "Why 'auto' chose what it runs on (e.g. the CPU backend over an OpenCL CPU device), "
          "or None for 'cpu' and 'opencl'.")
      .def("__repr__",
           [](const PyBackend& b) { return "kvarn_cl.Backend('" + b.impl->name() + "')"; });
}

}  // namespace kvarn_cl::py
