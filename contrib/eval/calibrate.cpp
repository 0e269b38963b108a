#include "calibrate.hpp"

#include <algorithm>
#include <chrono>
#include <cmath>
#include <sstream>

#include "evaluate.hpp"
#include "kv_config.hpp"
#include "kvarn_cl/error.hpp"
#include "kvarn_cl/layer_plan.hpp"

namespace kvarn_eval {

Sensitivity measure_sensitivity(Model& model, ThreadPool& pool, const std::vector<std::vector<std::int32_t>>& chunks,
                                std::vector<kvarn_cl::Preset> ladder, int step, bool verbose) {
  if (ladder.empty()) throw kvarn_cl::InvalidArgument("--calib-presets is empty");
  if (chunks.empty()) throw kvarn_cl::InvalidArgument("calibration needs at least one text chunk");
  const ModelConfig& mc = model.config();
  Sensitivity s;
  auto bytes_of = [&](kvarn_cl::Preset p) {
    kvarn_cl::CodecParams c;
    c.preset = p;
    c.head_dim = mc.head_dim;
    return double(kvarn_cl::RecordLayout::make(c).bytes) / c.group();
  };
  std::sort(ladder.begin(), ladder.end(), [&](kvarn_cl::Preset a, kvarn_cl::Preset b) { return bytes_of(a) < bytes_of(b); });
  for (auto p : ladder) {
    if (kvarn_cl::preset_info(p).group != kvarn_cl::preset_info(ladder.front()).group)
      throw kvarn_cl::InvalidArgument("--calib-presets " + kvarn_cl::to_string(p) + " has another tile size than " +
                                      kvarn_cl::to_string(ladder.front()) + " (the layers of one cache share G)");
    s.bytes.push_back(bytes_of(p));
  }
  s.ladder = ladder;
  std::vector<KvConfig> configs{KvConfig::parse("fp16", mc.head_dim)};
  for (int l = 0; l < mc.layers; ++l)
    for (auto p : ladder) {
      KvConfig c = KvConfig::parse(kvarn_cl::to_string(p), mc.head_dim);
      c.only_layer = l;
      c.name = kvarn_cl::to_string(p) + "@L" + std::to_string(l);
      configs.push_back(c);
    }
  const auto t0 = std::chrono::steady_clock::now();
  const int ctx = int(chunks.front().size());
  const auto stats = score_chunks(model, pool, configs, 0, chunks, {ctx}, step, verbose);
  s.seconds = std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
  s.tokens = ctx;
  s.kl.assign(std::size_t(mc.layers), std::vector<double>(ladder.size()));
  s.kl_p999 = s.kl;
  for (int l = 0; l < mc.layers; ++l)
    for (std::size_t i = 0; i < ladder.size(); ++i) {
      const ScoreStats& st = stats[1 + std::size_t(l) * ladder.size() + i];
      s.kl[std::size_t(l)][i] = st.mean_kl();
      s.kl_p999[std::size_t(l)][i] = st.kl_quantile(0.999);
    }
  return s;
}

CalibrationObjective parse_objective(const std::string& name) {
  if (name == "mean") return CalibrationObjective::mean_kl;
  if (name == "p999") return CalibrationObjective::p999_kl;
  throw kvarn_cl::InvalidArgument("--calib-objective '" + name + "': expected mean or p999");
}

LayerPlan choose_presets(const Sensitivity& s, int head_dim, double budget, CalibrationObjective objective) {
  // The choice itself is the library's (kvarn_cl::choose_layer_presets); this tool supplies the
  // model-measured KL as the sensitivity.
  kvarn_cl::LayerSensitivity ls;
  ls.presets = s.ladder;
  ls.error = objective == CalibrationObjective::mean_kl ? s.kl : s.kl_p999;
  const kvarn_cl::LayerPlan chosen = kvarn_cl::choose_layer_presets(ls, head_dim, budget);
  LayerPlan plan;
  plan.budget = budget;
  plan.presets = chosen.presets;
  plan.bytes_per_token_head = chosen.bytes_per_token_head;
  plan.predicted_kl = chosen.predicted_error;
  return plan;
}

std::string sensitivity_table(const Sensitivity& s, const std::vector<LayerPlan>& plans) {
  auto sci = [](double v) {
    char b[32];
    std::snprintf(b, sizeof b, "%.2e", v);
    return std::string(b);
  };
  std::ostringstream r;
  r << "| layer |";
  for (auto p : s.ladder) r << " mean KL " << kvarn_cl::to_string(p) << " | 99.9% KL " << kvarn_cl::to_string(p) << " |";
  for (const auto& p : plans) r << " plan " << p.budget << " |";
  r << "\n|---|";
  for (std::size_t i = 0; i < s.ladder.size(); ++i) r << "---|---|";
  for (std::size_t i = 0; i < plans.size(); ++i) r << "---|";
  r << "\n";
  for (std::size_t l = 0; l < s.kl.size(); ++l) {
    r << "| " << l << " |";
    for (std::size_t i = 0; i < s.ladder.size(); ++i) r << " " << sci(s.kl[l][i]) << " | " << sci(s.kl_p999[l][i]) << " |";
    for (const auto& p : plans) r << " " << kvarn_cl::to_string(p.presets[l]) << " |";
    r << "\n";
  }
  r << "| plan B/token/head |";
  for (std::size_t i = 0; i < s.ladder.size(); ++i) r << " | |";
  for (const auto& p : plans) {
    char b[32];
    std::snprintf(b, sizeof b, "%.2f", p.bytes_per_token_head);
    r << " " << b << " |";
  }
  r << "\n";
  return r.str();
}

}  // namespace kvarn_eval
