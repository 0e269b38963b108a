// host_memory_capacity() (host_memory.hpp).
#include "backend_api/host_memory.hpp"

#include <sys/resource.h>
#include <unistd.h>

#include <cstdio>
#include <string>
#include <vector>

#include "io/bounded_file.hpp"

namespace kvarn_cl {
namespace {

// The process's address-space size and data size in bytes (/proc/self/statm: pages of the
// whole space, ..., and of data + stack in the sixth field); false where there is no procfs.
bool current_use(std::size_t* address_space, std::size_t* data) {
  try {
    const std::string statm = io::read_text_file(
        "/proc/self/statm", {io::kMaxProcFileBytes, false, true}, "/proc/self/statm");
    unsigned long long size = 0, resident = 0, shared = 0, text = 0, lib = 0, data_pages = 0;
    if (std::sscanf(statm.c_str(), "%llu %llu %llu %llu %llu %llu", &size, &resident, &shared,
                    &text, &lib, &data_pages) != 6)
      return false;
    const long page = ::sysconf(_SC_PAGESIZE);
    if (page <= 0) return false;
    *address_space = std::size_t(size) * std::size_t(page);
    *data = std::size_t(data_pages) * std::size_t(page);
    return true;
  } catch (...) {
    return false;
  }
}

// What is left under one limit, or `fallback` when the limit is off or unknown.
std::size_t room_under(int resource, std::size_t used, bool known, std::size_t fallback) {
  struct rlimit limit {};
  if (::getrlimit(resource, &limit) != 0 || limit.rlim_cur == RLIM_INFINITY) return fallback;
  if (!known) return fallback;
  const auto cap = static_cast<unsigned long long>(limit.rlim_cur);
  const std::size_t left =
      cap > used ? std::size_t(cap - used) : 1;  // 1: nothing left (0 = unknown)
  return fallback == 0 || left < fallback ? left : fallback;
}

}  // namespace

std::size_t host_memory_capacity() noexcept {
  const long pages = ::sysconf(_SC_PHYS_PAGES), page = ::sysconf(_SC_PAGESIZE);
  std::size_t capacity = pages > 0 && page > 0 ? std::size_t(pages) * std::size_t(page) : 0;
  std::size_t address_space = 0, data = 0;
  const bool known = current_use(&address_space, &data);
  capacity = room_under(RLIMIT_AS, address_space, known, capacity);
  capacity = room_under(RLIMIT_DATA, data, known, capacity);
  return capacity;
}

}  // namespace kvarn_cl
