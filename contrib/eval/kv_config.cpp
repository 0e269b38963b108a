#include "kv_config.hpp"

#include <sstream>

#include "kvarn_cl/cache.hpp"
#include "kvarn_cl/error.hpp"

namespace kvarn_eval {
namespace {

bool ends_with(const std::string& s, const std::string& tail) {
  return s.size() > tail.size() && s.compare(s.size() - tail.size(), tail.size(), tail) == 0;
}

double record_bytes_per_token(const kvarn_cl::CodecParams& p) {
  return double(kvarn_cl::RecordLayout::make(p).bytes) / p.group();
}

}  // namespace

kvarn_cl::CodecParams KvConfig::codec_for(int layer) const {
  kvarn_cl::CodecParams p = codec;
  if (!layer_presets.empty()) p.preset = layer_presets.at(std::size_t(layer));
  return p;
}

int KvConfig::quantized_tiles(int tokens) const {
  const int G = group();
  return tokens > G + recent ? (tokens - G - recent) / G : 0;
}

double KvConfig::bytes_per_token_head() const {
  const int D = codec.head_dim;
  switch (kind) {
    case KvKind::fp32: return 8.0 * D;
    case KvKind::fp16: return 4.0 * D;
    case KvKind::kvarn:
    case KvKind::ablation: {
      if (layer_presets.empty()) return record_bytes_per_token(codec);
      double sum = 0;
      for (std::size_t l = 0; l < layer_presets.size(); ++l) sum += record_bytes_per_token(codec_for(int(l)));
      return sum / double(layer_presets.size());
    }
    case KvKind::ggml:
      return double(D / 32) * double(block_bytes(k_type) + block_bytes(v_type));
  }
  return 0;
}

double KvConfig::resident_bytes_per_token_head(int ctx) const {
  if (!tiled()) return bytes_per_token_head();
  const int G = codec.group(), D = codec.head_dim;
  const int records = quantized_tiles(ctx);
  const double fp16_rows = 4.0 * D * (ctx - records * G);  // sink, recent window, tail
  return (fp16_rows + double(records) * G * bytes_per_token_head()) / ctx;
}

std::string KvConfig::describe() const {
  std::ostringstream s;
  switch (kind) {
    case KvKind::fp32: s << "fp32 K/V"; break;
    case KvKind::fp16: s << "fp16 K/V (reference)"; break;
    case KvKind::kvarn:
      if (layer_presets.empty()) {
        s << "KVarN " << kvarn_cl::to_string(codec.preset);
      } else {
        std::map<std::string, int> count;
        for (auto p : layer_presets) ++count[kvarn_cl::to_string(p)];
        s << "KVarN per layer (";
        bool first = true;
        for (const auto& [p, n] : count) s << (first ? "" : ", ") << n << "x " << p, first = false;
        s << ")";
      }
      if (only_layer >= 0) s << " in layer " << only_layer << " only (fp16 elsewhere)";
      s << ", " << codec.sinkhorn_iters << " Sinkhorn iterations";
      if (recent > 0) s << ", newest " << recent << " tokens exact";
      s << (library_cache ? ", through kvarn_cl::KVCache + fused Backend::attend"
                          : ", simulated (quantize_tile/dequantize_tile)");
      break;
    case KvKind::ablation:
      s << "KVarN " << kvarn_cl::to_string(codec.preset) << " without "
        << (!rotate && !normalize ? "rotation and normalization" : !rotate ? "rotation" : "normalization");
      break;
    case KvKind::ggml:
      s << "llama.cpp K " << to_string(k_type) << ", V " << to_string(v_type)
        << (rotate ? ", Hadamard-rotated (llama.cpp's default)" : ", no rotation")
        << (llama_order ? ", K blocks in llama.cpp's channel order" : ", K blocks in Hugging Face channel order")
        << (q8_query ? ", query as q8_0" : ", fp32 query");
      break;
  }
  return s.str();
}

KvConfig KvConfig::parse(const std::string& name, int head_dim,
                         const std::map<std::string, std::vector<kvarn_cl::Preset>>& plans) {
  if (ends_with(name, "@cache")) {
    KvConfig c = parse(name.substr(0, name.size() - 6), head_dim, plans);
    if (c.kind != KvKind::kvarn)
      throw kvarn_cl::InvalidArgument("config '" + name + "': only KVarN presets (not ablations or baselines) run through the library cache");
    c.name = name;
    c.library_cache = true;
    return c;
  }
  const auto plus = name.rfind("+r");
  if (plus != std::string::npos && plus > 0) {
    KvConfig c = parse(name.substr(0, plus), head_dim, plans);
    const std::string n = name.substr(plus + 2);
    std::size_t used = 0;
    int r = -1;
    try {
      r = std::stoi(n, &used);
    } catch (...) {
      used = 0;
    }
    if (used != n.size() || n.empty() || r < 0 || r > 65536)
      throw kvarn_cl::InvalidArgument("config '" + name + "': '+r" + n + "' is not +rN with N in 0..65536");
    if (c.kind != KvKind::kvarn)
      throw kvarn_cl::InvalidArgument("config '" + name + "': a recent window (+rN) applies to KVarN configs only");
    c.name = name;
    c.recent = r;
    return c;
  }
  KvConfig c;
  c.name = name;
  c.codec.head_dim = head_dim;
  c.rotate = false;
  if (name == "fp32") { c.kind = KvKind::fp32; return c; }
  if (name == "fp16") { c.kind = KvKind::fp16; return c; }
  if (name.rfind("layers:", 0) == 0 || name.rfind("calib:", 0) == 0) {
    c.kind = KvKind::kvarn;
    c.rotate = true;
    if (name[0] == 'l') {
      c.layer_presets = kvarn_cl::read_layer_presets(name.substr(7));
    } else {
      auto it = plans.find(name.substr(6));
      if (it == plans.end())
        throw kvarn_cl::InvalidArgument("config '" + name + "': no calibration result for budget '" + name.substr(6) +
                                        "' (run with --calibrate and list the budget in --budgets)");
      c.layer_presets = it->second;
    }
    for (std::size_t l = 1; l < c.layer_presets.size(); ++l)
      if (kvarn_cl::preset_info(c.layer_presets[l]).group != kvarn_cl::preset_info(c.layer_presets[0]).group)
        throw kvarn_cl::InvalidArgument("config '" + name + "': layer " + std::to_string(l) +
                                        " has another tile size than layer 0 (all layers share one)");
    c.codec.preset = c.layer_presets.front();
    c.codec.validate();
    return c;
  }
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
    if (suffix == "had") {
      c.rotate = true;
    } else if (suffix == "hf") {
      c.llama_order = false;
      c.q8_query = false;
    } else if (suffix == "had-hf") {
      c.rotate = true;
      c.llama_order = false;
      c.q8_query = false;
    } else if (!suffix.empty()) {
      throw kvarn_cl::InvalidArgument("config '" + name + "': unknown suffix '-" + suffix +
                                      "' for a llama.cpp cache (use -had, -hf or -had-hf)");
    }
    if (head_dim % 32 != 0) throw kvarn_cl::InvalidArgument("config '" + name + "' needs head_dim a multiple of 32");
    return c;
  }
  try {
    c.codec.preset = kvarn_cl::parse_preset(base, "config");
  } catch (const kvarn_cl::InvalidArgument& e) {
    throw kvarn_cl::InvalidArgument(
        "config '" + name + "' is not fp32, fp16, K8V8, K8V4, K4V4[-had|-hf], layers:FILE, calib:B or "
        "<preset>[-nonorm|-norot|-plain|-itersN][+rN]: " + e.what());
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
  return {"fp16",      "k4v2_g128", "k4v4_g128", "k2v2_g128", "k4v2_g64",      "k4v4_g64",
          "calib:57",  "calib:60",  "calib:64",  "calib:68",  "k4v2_g128+r128", "calib:64+r128",
          "K8V8",      "K8V4",      "K4V4",      "K8V8-had",  "K8V4-had",       "K4V4-had",
          "K8V4-hf",   "K4V4-hf"};
}

}  // namespace kvarn_eval
