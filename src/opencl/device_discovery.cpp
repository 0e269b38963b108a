// Discovery of OpenCL platforms and devices, their capabilities, and device selection.
#include "opencl/device_discovery.hpp"

#include <algorithm>
#include <cctype>
#include <cstdint>
#include <cstdlib>
#include <limits>
#include <sstream>

#include "kvarn_cl/error.hpp"
#include "opencl/cl_error.hpp"
#include "opencl/icd_loader_environment.hpp"
#include "util/parse_int.hpp"

namespace kvarn_cl::opencl {
namespace {

std::string lower(std::string s) {
  std::transform(s.begin(), s.end(), s.begin(),
                 [](unsigned char c) { return static_cast<char>(std::tolower(c)); });
  return s;
}

bool is_index(const std::string& s) {
  return !s.empty() &&
         std::all_of(s.begin(), s.end(), [](unsigned char c) { return std::isdigit(c); });
}

// A platform or device choice: an index (all digits, read by the library's one integer parser)
// or a case-insensitive part of the name. An index beyond int (KVARN_CL_DEVICE=99999999999) is
// no device's: Unsupported naming where the choice came from and its value, never an internal
// error.
struct Choice {
  std::string text;  // empty: any
  int index = -1;    // >= 0 when text is an index
};

Choice read_choice(const std::string& text, const std::string& source) {
  Choice c{text, -1};
  if (!is_index(text)) return c;
  constexpr long long kMaxIndex = std::numeric_limits<int>::max();
  const util::ParsedInt r = util::try_parse_int(text, 0, kMaxIndex);
  if (r.error != util::IntError::none)
    throw Unsupported(util::int_error_message(text, 0, kMaxIndex, source) +
                      " (an index) or a part of a name: no OpenCL device has that index");
  c.index = int(r.value);
  return c;
}

bool matches(const Choice& choice, int index, const std::string& name) {
  if (choice.text.empty()) return true;
  if (choice.index >= 0) return choice.index == index;
  return lower(name).find(lower(choice.text)) != std::string::npos;
}

std::string trim(std::string s) {
  while (!s.empty() && (s.back() == '\0' || std::isspace(static_cast<unsigned char>(s.back()))))
    s.pop_back();
  return s;
}

bool has_extension(const std::string& extensions, const std::string& name) {
  std::istringstream in(extensions);
  std::string e;
  while (in >> e)
    if (e == name) return true;
  return false;
}

std::string env_or(const char* name) {
  const char* v = std::getenv(name);
  return v ? std::string(v) : std::string();
}

std::string device_list(const std::vector<FoundDevice>& all) {
  std::ostringstream s;
  for (const FoundDevice& d : all)
    s << "\n  platform " << d.entry.platform_index << " (" << d.entry.caps.platform_name
      << "), device " << d.entry.device_index << " (" << d.entry.caps.device_name << ", "
      << d.entry.caps.type << ")";
  return s.str();
}

}  // namespace

void apply_device_limits(DeviceCapabilities& caps, const std::string& profile) {
  std::istringstream in(profile);
  std::string entry;
  // Entries and their halves may carry spaces around them ("work_group=256, fp16=0").
  auto strip = [](std::string s) {
    s = trim(s);
    s.erase(0, s.find_first_not_of(" \t"));
    return s;
  };
  while (std::getline(in, entry, ',')) {
    entry = strip(entry);
    if (entry.empty()) continue;
    auto bad = [&](const std::string& why) {
      return InvalidArgument("KVARN_CL_DEVICE_LIMITS: entry '" + entry + "' " + why +
                             " (entries: work_group=N, local_mem=BYTES or NK, fp16=0, fp64=0, "
                             "subgroups=0, denormals=0)");
    };
    const std::size_t eq = entry.find('=');
    if (eq == std::string::npos) throw bad("is not name=value");
    const std::string name = strip(entry.substr(0, eq));
    std::string value = strip(entry.substr(eq + 1));
    std::uint64_t scale = 1;
    if (name == "local_mem" && !value.empty() && (value.back() == 'K' || value.back() == 'k')) {
      scale = 1024;
      value.pop_back();
    }
    constexpr long long kMaxLimit = 999999999999LL;  // 12 digits: times 1024 still fits 64 bits
    const util::ParsedInt parsed = util::try_parse_int(value, 0, kMaxLimit);
    if (parsed.error != util::IntError::none)
      throw bad("has no whole number from 0 to " + std::to_string(kMaxLimit) + " as its value");
    const std::uint64_t n = std::uint64_t(parsed.value) * scale;
    if (name == "work_group" || name == "local_mem") {
      if (n == 0) throw bad("must be at least 1");
      std::uint64_t& field = name == "work_group" ? caps.max_work_group_size : caps.local_mem_bytes;
      field = std::min(field, n);
    } else if (name == "fp16" || name == "fp64" || name == "subgroups" || name == "denormals") {
      if (n > 1) throw bad("must be 0 or 1");
      bool& flag = name == "fp16"        ? caps.fp16
                   : name == "fp64"      ? caps.fp64
                   : name == "subgroups" ? caps.subgroups
                                         : caps.denormals;
      flag = flag && n == 1;
    } else {
      throw bad("names no limit");
    }
  }
}

DeviceCapabilities read_capabilities(const cl::Platform& platform, const cl::Device& device) {
  return cl_call("reading OpenCL device capabilities", [&] {
    DeviceCapabilities c;
    c.platform_name = trim(platform.getInfo<CL_PLATFORM_NAME>());
    c.platform_version = trim(platform.getInfo<CL_PLATFORM_VERSION>());
    c.device_name = trim(device.getInfo<CL_DEVICE_NAME>());
    c.device_vendor = trim(device.getInfo<CL_DEVICE_VENDOR>());
    c.device_version = trim(device.getInfo<CL_DEVICE_VERSION>());
    c.driver_version = trim(device.getInfo<CL_DRIVER_VERSION>());
    c.opencl_c_version = trim(device.getInfo<CL_DEVICE_OPENCL_C_VERSION>());
    // "OpenCL C <major>.<minor> ..."
    if (std::sscanf(c.opencl_c_version.c_str(), "OpenCL C %d.%d", &c.opencl_c_major,
                    &c.opencl_c_minor) != 2) {
      c.opencl_c_major = 1;
      c.opencl_c_minor = 0;
    }
    const cl_device_type type = device.getInfo<CL_DEVICE_TYPE>();
    c.type = (type & CL_DEVICE_TYPE_GPU)           ? "gpu"
             : (type & CL_DEVICE_TYPE_ACCELERATOR) ? "accelerator"
             : (type & CL_DEVICE_TYPE_CPU)         ? "cpu"
                                                   : "other";
    const std::string ext = device.getInfo<CL_DEVICE_EXTENSIONS>();
    c.fp16 = has_extension(ext, "cl_khr_fp16");
    c.fp64 = has_extension(ext, "cl_khr_fp64");
    c.subgroups =
        has_extension(ext, "cl_khr_subgroups") || has_extension(ext, "cl_intel_subgroups");
    const cl_device_fp_config fp = device.getInfo<CL_DEVICE_SINGLE_FP_CONFIG>();
    c.correctly_rounded_div_sqrt = (fp & CL_FP_CORRECTLY_ROUNDED_DIVIDE_SQRT) != 0;
    c.denormals = (fp & CL_FP_DENORM) != 0;
    c.local_mem_bytes = device.getInfo<CL_DEVICE_LOCAL_MEM_SIZE>();
    c.max_work_group_size = device.getInfo<CL_DEVICE_MAX_WORK_GROUP_SIZE>();
    c.compute_units = device.getInfo<CL_DEVICE_MAX_COMPUTE_UNITS>();
    c.global_mem_bytes = device.getInfo<CL_DEVICE_GLOBAL_MEM_SIZE>();
    c.max_alloc_bytes = device.getInfo<CL_DEVICE_MAX_MEM_ALLOC_SIZE>();
    c.max_clock_mhz = device.getInfo<CL_DEVICE_MAX_CLOCK_FREQUENCY>();
    apply_device_limits(c, env_or("KVARN_CL_DEVICE_LIMITS"));
    return c;
  });
}

std::vector<FoundDevice> find_devices(std::vector<std::string>* without_devices) {
  std::vector<cl::Platform> platforms;
  try {
    // Some ICD loaders cut OCL_ICD_FILENAMES in the process environment when they first list the
    // platforms; the guard puts it back for the processes the caller starts later.
    const IcdLoaderEnvironmentGuard keep_loader_environment;
    cl::Platform::get(&platforms);
  } catch (const cl::Error& e) {
    // ocl-icd reports "no platform" as CL_PLATFORM_NOT_FOUND_KHR (-1001); that is not an error
    // here, just an empty list (the caller falls back to the CPU).
    if (e.err() == -1001 || e.err() == CL_SUCCESS) return {};
    throw_cl_error("listing OpenCL platforms", e.what(), e.err());
  }
  std::vector<FoundDevice> out;
  for (std::size_t p = 0; p < platforms.size(); ++p) {
    std::vector<cl::Device> devices;
    try {
      platforms[p].getDevices(CL_DEVICE_TYPE_ALL, &devices);
    } catch (const cl::Error& e) {
      if (e.err() == CL_DEVICE_NOT_FOUND) {  // a platform without devices
        if (without_devices != nullptr) {
          std::string name = "?";
          try {
            name = trim(platforms[p].getInfo<CL_PLATFORM_NAME>());
          } catch (const cl::Error&) {}
          without_devices->push_back("platform " + std::to_string(p) + " (" + name +
                                     ") lists no device (CL_DEVICE_NOT_FOUND)");
        }
        continue;
      }
      throw_cl_error("listing the devices of OpenCL platform " + std::to_string(p), e.what(),
                     e.err());
    }
    for (std::size_t d = 0; d < devices.size(); ++d) {
      FoundDevice f{platforms[p], devices[d], {}};
      f.entry.platform_index = int(p);
      f.entry.device_index = int(d);
      f.entry.caps = read_capabilities(platforms[p], devices[d]);
      out.push_back(std::move(f));
    }
  }
  return out;
}

FoundDevice select_device(const DeviceSelector& selector) {
  const std::string platform_choice =
      !selector.platform.empty() ? selector.platform : env_or("KVARN_CL_PLATFORM");
  const std::string device_choice =
      !selector.device.empty() ? selector.device : env_or("KVARN_CL_DEVICE");
  const Choice platform =
      read_choice(platform_choice, !selector.platform.empty() ? "platform" : "KVARN_CL_PLATFORM");
  const Choice device =
      read_choice(device_choice, !selector.device.empty() ? "device" : "KVARN_CL_DEVICE");
  std::vector<std::string> without_devices;
  const std::vector<FoundDevice> all = find_devices(&without_devices);
  std::string empty_platforms;
  for (const std::string& line : without_devices) empty_platforms += "\n  " + line;
  if (all.empty())
    throw Unsupported(
        "no OpenCL platform or device found (the ICD loader lists none; is an OpenCL "
        "driver such as pocl-opencl-icd installed and registered?)" +
        empty_platforms);
  std::vector<const FoundDevice*> candidates;
  for (const FoundDevice& d : all)
    if (matches(platform, d.entry.platform_index, d.entry.caps.platform_name) &&
        matches(device, d.entry.device_index, d.entry.caps.device_name))
      candidates.push_back(&d);
  if (candidates.empty())
    throw Unsupported("no OpenCL device matches platform '" + platform_choice + "' and device '" +
                      device_choice +
                      "' (KVARN_CL_PLATFORM / KVARN_CL_DEVICE take an index or a "
                      "case-insensitive part of the name); devices:" +
                      device_list(all) + empty_platforms);
  // Default order among the candidates: GPU, accelerator, CPU, anything else.
  for (const char* type : {"gpu", "accelerator", "cpu", "other"})
    for (const FoundDevice* d : candidates)
      if (d->entry.caps.type == type) return *d;
  return *candidates.front();
}

}  // namespace kvarn_cl::opencl
