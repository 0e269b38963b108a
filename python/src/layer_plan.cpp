// Per-layer preset plans (include/kvarn_cl/layer_plan.hpp): choose_layer_presets,
// measure_layer_sensitivity, preset_bytes_per_token_head, budget_from_total_bytes and LayerPlan.
#include <nanobind/ndarray.h>
#include <nanobind/stl/string.h>
#include <nanobind/stl/vector.h>

#include <string>
#include <vector>

#include "arrays.hpp"
#include "kvarn_cl/kvarn_cl.hpp"
#include "module.hpp"

namespace kvarn_cl::py {
namespace {

std::vector<Preset> preset_list(nb::handle presets, const char* fn) {
  if (nb::isinstance<nb::str>(presets) || !nb::isinstance<nb::sequence>(presets))
    throw InvalidArgument(std::string(fn) + ": presets must be a list of preset names, got " +
                          nb::repr(presets).c_str());
  std::vector<Preset> out;
  for (nb::handle p : presets) {
    if (!nb::isinstance<nb::str>(p))
      throw InvalidArgument(std::string(fn) + ": presets[" + std::to_string(out.size()) + "] " +
                            nb::repr(p).c_str() + " is not a preset name");
    out.push_back(parse_preset(nb::cast<std::string>(p),
                               std::string(fn) + ": presets[" + std::to_string(out.size()) + "]"));
  }
  return out;
}

// A list of rows of floats (or a 2-D numpy array): [layer][candidate].
std::vector<std::vector<double>> error_rows(nb::handle error, const char* fn) {
  std::vector<std::vector<double>> rows;
  if (!nb::try_cast(error, rows, true))
    throw InvalidArgument(std::string(fn) +
                          ": error must be rows of numbers ([layer][preset]), got " +
                          nb::repr(error).c_str());
  return rows;
}

LayerPlan choose(nb::handle error, nb::handle presets, int head_dim, double budget) {
  const char* fn = "choose_layer_presets";
  LayerSensitivity s;
  s.presets = preset_list(presets, fn);
  s.error = error_rows(error, fn);
  return choose_layer_presets(s, head_dim, budget);
}

nb::object measure(nb::handle k, nb::handle v, nb::handle presets, int sinkhorn_iters) {
  const char* fn = "measure_layer_sensitivity";
  const std::vector<Preset> list = preset_list(presets, fn);
  const ArrayIn ka = array_in(k, fn, "k", {Dtype::f32}), va = array_in(v, fn, "v", {Dtype::f32});
  if (ka.shape.size() != 4)
    throw InvalidArgument(std::string(fn) + ": k has shape " + shape_str(ka.shape) +
                          ", expected (layers, tokens, kv_heads, head_dim)");
  if (va.shape != ka.shape)
    throw InvalidArgument(std::string(fn) + ": v has shape " + shape_str(va.shape) + ", k has " +
                          shape_str(ka.shape) + " (they must match)");
  // Each count must fit the C++ API's int (head_dim is then checked to be 64, 128 or 256).
  for (std::size_t i = 0; i < 4; ++i)
    if (ka.shape[i] > std::size_t(1) << 30)
      throw InvalidArgument(std::string(fn) + ": k has shape " + shape_str(ka.shape) +
                            ", too large");
  CodecParams codec;
  codec.head_dim = int(ka.shape[3]);
  codec.sinkhorn_iters = sinkhorn_iters;
  LayerSensitivity s;
  {
    nb::gil_scoped_release release;
    s = measure_layer_sensitivity(codec, list, int(ka.shape[0]), int(ka.shape[1]), int(ka.shape[2]),
                                  static_cast<const float*>(ka.data),
                                  static_cast<const float*>(va.data));
  }
  auto* values = new std::vector<double>();
  for (const auto& row : s.error) values->insert(values->end(), row.begin(), row.end());
  nb::capsule owner(values, [](void* p) noexcept { delete static_cast<std::vector<double>*>(p); });
  const std::size_t shape[2] = {s.error.size(), list.size()};
  return nb::ndarray<nb::numpy, double, nb::ndim<2>>(values->data(), 2, shape, owner).cast();
}

}  // namespace

void bind_layer_plan(nb::module_& m) {
  nb::class_<LayerPlan>(
      m, "LayerPlan",
      "A per-layer preset plan (choose_layer_presets): presets (one name per layer, "
      "for KVCache(layer_presets=...)), budget and bytes_per_token_head (steady-state "
      "record bytes per token per KV head, mean over layers), predicted_error (the sum "
      "of the layers' errors at their presets).")
      .def_prop_ro("presets",
                   [](const LayerPlan& p) {
                     std::vector<std::string> names;
                     for (Preset q : p.presets) names.push_back(to_string(q));
                     return names;
                   })
      .def_ro("budget", &LayerPlan::budget)
      .def_ro("bytes_per_token_head", &LayerPlan::bytes_per_token_head)
      .def_ro("predicted_error", &LayerPlan::predicted_error)
      .def(
          "to_file_text",
          [](const LayerPlan& p, const std::string& comment) {
            return format_layer_presets(p.presets, comment);
          },
          nb::arg("comment") = "", "The plan as a layer-preset file's text.")
      .def("__repr__", [](const LayerPlan& p) {
        std::string s = "LayerPlan(presets=[";
        for (std::size_t i = 0; i < p.presets.size(); ++i)
          s += (i ? ", '" : "'") + to_string(p.presets[i]) + "'";
        return s + "], bytes_per_token_head=" + std::to_string(p.bytes_per_token_head) + ")";
      });
  m.def(
      "choose_layer_presets", &choose, nb::arg("error"), nb::arg("presets"), nb::arg("head_dim"),
      nb::arg("budget"),
      "The per-layer preset plan under `budget` bytes per token per KV head (steady state, mean "
      "over layers). error[layer][i]: the layer's sensitivity at presets[i] (finite, >= 0, smaller "
      "is better; measured by the caller, e.g. a model's KL with only that layer quantized, or by "
      "measure_layer_sensitivity). Greedy: every layer starts at the cheapest candidate, then the "
      "upgrade with the largest error reduction per added byte that fits, until none fits. "
      "Raises InvalidArgument for a budget below the cheapest plan (naming both).");
  m.def("measure_layer_sensitivity", &measure, nb::arg("k"), nb::arg("v"), nb::arg("presets"),
        nb::kw_only(), nb::arg("sinkhorn_iters") = kDefaultSinkhornIters,
        "Proxy sensitivity of captured rows: k and v float32 (layers, tokens, kv_heads, head_dim), "
        "original frame; each whole tile of each head through the CPU codec at every preset. "
        "Returns float64 (layers, len(presets)): |K-K'|^2/|K|^2 + |V-V'|^2/|V|^2 per layer.");
  m.def(
      "preset_bytes_per_token_head",
      [](const std::string& preset, int head_dim) {
        return preset_bytes_per_token_head(
            parse_preset(preset, "preset_bytes_per_token_head: preset"), head_dim);
      },
      nb::arg("preset"), nb::arg("head_dim"), "Record bytes / G of a preset at head_dim.");
  m.def("budget_from_total_bytes", &budget_from_total_bytes, nb::arg("total_bytes"),
        nb::arg("tokens"), nb::arg("kv_heads"), nb::arg("layers"),
        "The per-token-per-head budget of total_bytes of records for `tokens` tokens of kv_heads "
        "heads "
        "in each of `layers` layers.");
}

}  // namespace kvarn_cl::py
