// Checks of C arguments shared by the files of src/capi: null pointers, C enum values in and out.
#pragma once

#include <cstring>
#include <string>
#include <type_traits>

#include "kvarn_cl/error.hpp"
#include "kvarn_cl/format.hpp"
#include "kvarn_cl/kvarn_cl.h"

namespace kvarn_cl::capi {

inline void require(const void* p, const char* name) {
  if (p == nullptr) throw InvalidArgument(std::string("argument ") + name + " is NULL");
}

// A C caller may pass any int where a C enum is declared, but in C++ reading an enum object whose
// value lies outside the enum's range is undefined behaviour. The bytes are copied into an integer
// instead, and only that integer is compared; enum arguments travel by reference until then (a
// copy would be a read).
template <typename E>
long long raw(const E& e) noexcept {
  static_assert(std::is_enum<E>::value, "raw() reads C enums");
  std::underlying_type_t<E> v;
  static_assert(sizeof v == sizeof e, "a C enum is an int");
  std::memcpy(&v, &e, sizeof v);
  return static_cast<long long>(v);
}

inline Preset to_preset(const kvarn_cl_preset& p) {
  const long long v = raw(p);
  if (v < 0 || v >= int(all_presets().size()))
    throw InvalidArgument("invalid preset value " + std::to_string(v) + ": expected 0.." +
                          std::to_string(all_presets().size() - 1));
  return all_presets()[std::size_t(v)];
}

inline kvarn_cl_preset from_preset(Preset p) {
  for (std::size_t i = 0; i < all_presets().size(); ++i)
    if (all_presets()[i] == p) return static_cast<kvarn_cl_preset>(i);
  throw Error(Status::internal, "preset without a C value: " + to_string(p));
}

}  // namespace kvarn_cl::capi
