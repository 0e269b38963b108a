// C++ kvarn_cl::Error -> the Python class of the same name (kvarn_cl/_errors.py), carrying the
// library's message, and build_log for kernel build failures.
#include "kvarn_cl/error.hpp"
#include "module.hpp"

namespace kvarn_cl::py {
namespace {

// Owned for the life of the process (classes of a module that is never unloaded).
PyObject* g_by_status = nullptr;
PyObject* g_base = nullptr;

void raise(const Error& e, const std::string* build_log) {
  nb::handle cls(g_base);
  nb::int_ status(int(e.status()));
  nb::handle by_status(g_by_status);
  if (nb::borrow<nb::dict>(by_status).contains(status))
    cls = nb::borrow<nb::dict>(by_status)[status];
  nb::object exc = cls(nb::str(e.what()));
  if (build_log) exc.attr("build_log") = nb::str(build_log->c_str());
  PyErr_SetObject(cls.ptr(), exc.ptr());
}

}  // namespace

void register_errors(nb::module_& m) {
  nb::module_ errors = nb::module_::import_("kvarn_cl._errors");
  g_by_status = errors.attr("BY_STATUS").inc_ref().ptr();
  g_base = errors.attr("Error").inc_ref().ptr();
  m.attr("Error") = nb::handle(g_base);
  nb::register_exception_translator([](const std::exception_ptr& p, void*) {
    try {
      std::rethrow_exception(p);
    } catch (const KernelBuildError& e) {
      raise(e, &e.build_log());
    } catch (const Error& e) {
      raise(e, nullptr);
    }
  });
}

}  // namespace kvarn_cl::py
