#include "kv_config.hpp"

#include <sstream>

#include "kvarn_cl/error.hpp"

namespace kvarn_eval {

double KvConfig::bytes_per_token_head() const {
  const int D = codec.head_dim;
  switch (kind) {
    case KvKind::fp32: return 8.0 * D;
    case KvKind::fp16: return 4.0 * D;
    case KvKind::kvarn:
    case KvKind::ablation:
      return double(kvarn_cl::RecordLayout::make(codec).bytes) / codec.group();
    case KvKind::ggml:
      return double(D / 32) * double(block_bytes(k_type) + block_bytes(v_type));
  }
  return 0;
}

double KvConfig::resident_bytes_per_token_head(int ctx) const {
  if (!tiled()) return bytes_per_token_head();
  const int G = codec.group(), D = codec.head_dim;
  const int sink = std::min(ctx, G);
  const int records = ctx > G ? (ctx - G) / G : 0;
  const int tail = ctx - sink - records * G;
  const double bytes = 4.0 * D * (sink + tail) + double(records) * kvarn_cl::RecordLayout::make(codec).bytes;
  return bytes / ctx;
}

std::string KvConfig::describe() const {
  std::ostringstream s;
  switch (kind) {
    case KvKind::fp32: s << "fp32 K/V"; break;
    case KvKind::fp16: s << "fp16 K/V (reference)"; break;
    case KvKind::kvarn:
      s << "KVarN " << kvarn_cl::to_string(codec.preset) << ", " << codec.sinkhorn_iters
        << " Sinkhorn iterations"
        << (library_cache ? ", through kvarn_cl::KVCache + fused Backend::attend" : ", simulated (quantize_tile/dequantize_tile)");
      break;
    case KvKind::ablation:
      s << "KVarN " << kvarn_cl::to_string(codec.preset) << " without "
        << (!rotate && !normalize ? "rotation and normalization" : !rotate ? "rotation" : "normalization");
      break;
    case KvKind::ggml:
      s << "llama.cpp K " << to_string(k_type) << ", V " << to_string(v_type)
        << (rotate ? ", Hadamard-rotated" : "");
      break;
  }
  return s.str();
}

KvConfig KvConfig::parse(const std::string& name, int head_dim) {
  const std::string at_cache = "@cache";
  if (name.size() > at_cache.size() && name.compare(name.size() - at_cache.size(), at_cache.size(), at_cache) == 0) {
    KvConfig c = parse(name.substr(0, name.size() - at_cache.size()), head_dim);
    if (c.kind != KvKind::kvarn)
      throw kvarn_cl::InvalidArgument("config '" + name + "': only KVarN presets (not ablations or baselines) run through the library cache");
    c.name = name;
    c.library_cache = true;
    return c;
  }
  KvConfig c;
  c.name = name;
  c.codec.head_dim = head_dim;
  c.rotate = false;
  if (name == "fp32") { c.kind = KvKind::fp32; return c; }
  if (name == "fp16") { c.kind = KvKind::fp16; return c; }
  std::string base = name, suffix;
  const auto dash = name.find('-');
  if (dash != std::string::npos) {
    base = name.substr(0, dash);
    suffix = name.substr(dash + 1);
  }
  if (base == "K8V8" || base == "K8V4" || base == "K4V4") {
    c.kind = KvKind::ggml;
    c.k_type = base[1] == '8' ? GgmlKvType::q8_0 : GgmlKvType::q4_0;
    c.v_type = base[3] == '8' ? GgmlKvType::q8_0 : GgmlKvType::q4_0;
    if (suffix == "had") c.rotate = true;
    else if (!suffix.empty()) throw kvarn_cl::InvalidArgument("config '" + name + "': unknown suffix '-" + suffix + "' for a llama.cpp cache (only '-had')");
    if (head_dim % 32 != 0) throw kvarn_cl::InvalidArgument("config '" + name + "' needs head_dim a multiple of 32");
    return c;
  }
  try {
    c.codec.preset = kvarn_cl::parse_preset(base, "config");
  } catch (const kvarn_cl::InvalidArgument& e) {
    throw kvarn_cl::InvalidArgument(
        "config '" + name + "' is not fp32, fp16, K8V8, K8V4, K4V4[-had] or <preset>[-nonorm|-norot|-plain|-itersN]: " + e.what());
  }
  c.kind = KvKind::kvarn;
  c.rotate = true;
  if (suffix.empty()) {
  } else if (suffix == "nonorm") {
    c.codec.sinkhorn_iters = 0;  // the library codec itself: SPEC §2.3 with zero iterations
  } else if (suffix == "norot") {
    c.kind = KvKind::ablation;
    c.rotate = false;
    c.normalize = true;
  } else if (suffix == "plain") {
    c.kind = KvKind::ablation;
    c.rotate = false;
    c.normalize = false;
  } else if (suffix.rfind("iters", 0) == 0 && suffix.size() > 5) {
    c.codec.sinkhorn_iters = std::stoi(suffix.substr(5));
  } else {
    throw kvarn_cl::InvalidArgument("config '" + name + "': unknown suffix '-" + suffix +
                                    "' (use -nonorm, -norot, -plain or -itersN)");
  }
  c.codec.validate();
  return c;
}

std::vector<std::string> default_config_names() {
  return {"fp16",          "fp32",           "k4v2_g128",     "k4v4_g128",
          "k2v2_g128",     "k4v2_g64",       "k4v4_g64",      "k4v2_g128-nonorm",
          "k4v2_g128-norot", "k4v2_g128-plain", "K8V8",          "K8V4",
          "K4V4",          "K4V4-had"};
}

}  // namespace kvarn_eval
