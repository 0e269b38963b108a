// version(), presets(), record_bytes() and devices().
#include <nanobind/stl/string.h>
#include <nanobind/stl/vector.h>

#include "files.hpp"
#include "kvarn_cl/device.hpp"
#include "kvarn_cl/kvarn_cl.hpp"
#include "module.hpp"

namespace kvarn_cl::py {
namespace {

nb::list presets() {
  nb::list out;
  for (Preset p : all_presets()) {
    const PresetInfo& info = preset_info(p);
    nb::dict sizes;
    for (int d : {64, 128, 256})
      sizes[nb::int_(d)] = RecordLayout::make({p, d, kDefaultSinkhornIters}).bytes;
    nb::dict e;
    e["name"] = info.name;
    e["k_bits"] = info.k_bits;
    e["v_bits"] = info.v_bits;
    e["group"] = info.group;
    e["experimental"] = info.experimental;
    e["default"] = p == CodecParams{}.preset;
    e["record_bytes"] = sizes;
    out.append(e);
  }
  return out;
}

std::size_t record_bytes(const std::string& preset, int head_dim) {
  CodecParams p{parse_preset(preset, "record_bytes: preset"), head_dim, kDefaultSinkhornIters};
  validate_head_dim(head_dim, "record_bytes: head_dim");
  return RecordLayout::make(p).bytes;
}

nb::list devices() {
  nb::list out;
#if KVARN_CL_WITH_OPENCL
  std::vector<DeviceEntry> found;
  {
    nb::gil_scoped_release release;
    found = list_opencl_devices();
  }
  for (const DeviceEntry& d : found) {
    const DeviceCapabilities& c = d.caps;
    nb::dict e;
    e["platform_index"] = d.platform_index;
    e["device_index"] = d.device_index;
    e["platform"] = c.platform_name;
    e["platform_version"] = c.platform_version;
    e["name"] = c.device_name;
    e["vendor"] = c.device_vendor;
    e["version"] = c.device_version;
    e["driver_version"] = c.driver_version;
    e["opencl_c_version"] = c.opencl_c_version;
    e["type"] = c.type;
    e["fp16"] = c.fp16;
    e["fp64"] = c.fp64;
    e["subgroups"] = c.subgroups;
    e["denormals"] = c.denormals;
    e["local_mem_bytes"] = c.local_mem_bytes;
    e["max_work_group_size"] = c.max_work_group_size;
    e["compute_units"] = c.compute_units;
    e["global_mem_bytes"] = c.global_mem_bytes;
    e["max_alloc_bytes"] = c.max_alloc_bytes;
    e["max_clock_mhz"] = c.max_clock_mhz;
    out.append(e);
  }
#endif
  return out;
}

}  // namespace

void bind_info(nb::module_& m) {
  m.def(
      "version", [] { return std::string(kvarn_cl::version()); },
      "The library's version, 'MAJOR.MINOR.PATCH'.");
  m.def("presets", &presets,
        "Every preset as a dict: name, k_bits, v_bits, group (tokens per tile G), experimental, "
        "default, record_bytes ({head_dim: bytes of one record} for 64, 128, 256).");
  m.def("record_bytes", &record_bytes, nb::arg("preset") = "k4v2_g128", nb::arg("head_dim") = 128,
        "Bytes of one record (one tile of one KV head) of the preset at head_dim.");
  m.def(
      "read_layer_presets",
      [](const std::string& path) {
        std::vector<std::string> names;
        for (Preset p : read_layer_presets_without_gil(path)) names.push_back(to_string(p));
        return names;
      },
      nb::arg("path"),
      "The presets of a layer-preset file (`kvarn-eval --calibrate`; lines '<layer> <preset>'), "
      "one per layer, for KVCache(layer_presets=...).");
  m.def("devices", &devices,
        "Every OpenCL device of every platform as a dict (platform_index, device_index, platform, "
        "name, vendor, version, type, fp16, subgroups, local_mem_bytes, ...). Empty when no "
        "OpenCL platform is installed or the build has no OpenCL.");
#if KVARN_CL_WITH_OPENCL
  m.attr("with_opencl") = true;
#else
  m.attr("with_opencl") = false;
#endif
}

}  // namespace kvarn_cl::py
