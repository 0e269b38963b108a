// Implementation of capi::guarded (included by last_error.hpp).
#include <new>

#include "kvarn_cl/error.hpp"

namespace kvarn_cl::capi {

template <typename Body>
kvarn_cl_status guarded(Body&& body) noexcept {
  try {
    body();
    set_last_error("");
    return KVARN_CL_OK;
  } catch (const Error& e) {
    return fail(static_cast<kvarn_cl_status>(e.status()), e.what());
  } catch (const std::bad_alloc&) {
    return fail(KVARN_CL_OUT_OF_MEMORY, "out of host memory");
  } catch (const std::exception& e) {
    return fail(KVARN_CL_INTERNAL, std::string("internal error: ") + e.what());
  } catch (...) {
    return fail(KVARN_CL_INTERNAL, "internal error: unknown exception");
  }
}

}  // namespace kvarn_cl::capi
