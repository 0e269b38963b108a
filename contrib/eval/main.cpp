// kvarn-eval: accuracy of KV-cache quantization on a real model (docs/ACCURACY.md).
//
// Loads a Llama-family GGUF model, tokenizes real English text, and runs every requested cache
// configuration side by side: perplexity at several context lengths, KL divergence and top-1
// agreement of next-token distributions against the fp16 cache, and exact greedy agreement on
// generated text. Prints a Markdown table; optionally enforces a perplexity-ratio bound (CI).
#include <algorithm>
#include <chrono>
#include <cmath>
#include <cstdio>
#include <cstdlib>
#include <ctime>
#include <fstream>
#include <iostream>
#include <map>
#include <sstream>
#include <string>
#include <sys/stat.h>
#include <vector>

#include "ablation_codec.hpp"
#include "calibrate.hpp"
#include "capture.hpp"
#include "evaluate.hpp"
#include "gguf.hpp"
#include "io/bounded_file.hpp"
#include "kv_config.hpp"
#include "kvarn_cl/backend.hpp"
#include "kvarn_cl/cache.hpp"
#include "kvarn_cl/codec.hpp"
#include "kvarn_cl/error.hpp"
#include "model.hpp"
#include "thread_pool.hpp"
#include "tokenizer.hpp"

using namespace kvarn_eval;

namespace {

constexpr int kExitSkip = 77;      // ctest SKIP_RETURN_CODE: the model file is absent
constexpr int kExitBound = 2;      // a --max-ppl-ratio bound failed
constexpr const char* kModelFile = "SmolLM2-135M-Instruct.Q4_1.gguf";

const char* kUsage = R"(usage: kvarn-eval [options]
  --model PATH           GGUF model (default: $KVARN_CL_MODEL_DIR or ./models, file )"
                     "SmolLM2-135M-Instruct.Q4_1.gguf" R"()
  --skip-missing-model   exit 77 (ctest skip) if the model file does not exist
  --text FILE            text to score; repeat for several (default: GPL-3, GFDL-1.3, MPL-2.0
                         and Apache-2.0 from /usr/share/common-licenses); one chunk of --ctx
                         tokens is taken from the start of each text long enough
  --ctx N                tokens per scored chunk (default 2048)
  --windows L,L,...      context lengths to report perplexity at (default 512,1024,2048)
  --configs A,B,...|all  cache configurations (default all; its calib:B rows only with
                         --calibrate); the first is the reference
                         forms: fp32 fp16 <preset> <preset>-nonorm|-norot|-plain|-itersN
                                layers:FILE calib:B, any KVarN form +rN (N recent tokens exact)
                                K8V8 K8V4 K4V4 [-had|-hf|-had-hf]
  --long-texts F,F,...   also score one chunk of --long-ctx tokens of these texts concatenated
                         (in order; the scored texts may repeat here)
  --long-ctx N           tokens of the long chunk (default: the model's training context)
  --calibrate            measure per-layer sensitivity on --calib-text and choose per-layer
                         presets for every --budgets entry (configs calib:B use them)
  --calib-text FILE      calibration text, not a scored one (default Apache-2.0)
  --calib-ctx N          calibration tokens (default 1024)
  --calib-presets P,P    the preset ladder (default k4v2_g128,k4v4_g128; one tile size)
  --budgets B,B,...      bytes per token per KV head (default 57,60,64,68)
  --calib-objective O    mean (default): minimize the summed per-layer mean KL; p999: the summed
                         per-layer 99.9th-percentile KL
  --plan-dir DIR         write each plan as DIR/layers_b<B>.txt (a layer-preset file)
  --gen-tokens N         greedy tokens per prompt (default 256; 0 skips generation)
  --prompts N            how many of the built-in prompts to use (default 4)
  --long-prompts F,F,...  use the first --long-prompt-tokens tokens of each file as the greedy
                         prompts instead of the built-in ones (so that the generated tokens
                         attend to a mostly quantized cache)
  --long-prompt-tokens N (default 1024)
  --no-score             skip the perplexity/KL pass (greedy only)
  --step N               tokens per forward step when scoring (default 64)
  --threads N            worker threads (default: hardware concurrency)
  --backend cpu|opencl|auto   backend of the library KVCache for <preset>@cache configs (default cpu)
  --markdown FILE        also write the report to FILE
  --show-text            print each prompt's reference continuation
  --max-ppl-ratio R      with --check-config C and --check-window L: exit 2 unless
                         ppl(C)/ppl(reference) at window L <= R
  --capture DIR          instead of evaluating: save real K/V tiles (see --capture-layers)
  --capture-layers L,..  layers to save (default 0,1,15,29)
)";

std::vector<std::string> split(const std::string& s, char sep) {
  std::vector<std::string> out;
  std::stringstream ss(s);
  std::string item;
  while (std::getline(ss, item, sep))
    if (!item.empty()) out.push_back(item);
  return out;
}

int parse_int(const std::string& opt, const std::string& v) {
  try {
    std::size_t used = 0;
    const int x = std::stoi(v, &used);
    if (used == v.size()) return x;
  } catch (...) {
  }
  throw kvarn_cl::InvalidArgument("option " + opt + " expects an integer, got '" + v + "'");
}

bool file_exists(const std::string& p) {
  struct stat st;
  return ::stat(p.c_str(), &st) == 0;
}

// Evaluation texts (a book at most): through the library's bounded reader.
std::string read_text(const std::string& path) {
  return kvarn_cl::io::read_text_file(path, {std::uint64_t(1) << 30, false, true}, "text file '" + path + "'");
}

struct Prompt {
  const char* label;
  std::string text;
};

std::vector<Prompt> builtin_prompts() {
  auto chat = [](const std::string& user) {
    return "<|im_start|>system\nYou are a helpful AI assistant named SmolLM, trained by Hugging Face<|im_end|>\n"
           "<|im_start|>user\n" + user + "<|im_end|>\n<|im_start|>assistant\n";
  };
  return {
      {"chat: sky", chat("Why is the sky blue? Explain it to a curious ten-year-old.")},
      {"chat: story", chat("Write a short story about a lighthouse keeper who finds a message in a bottle.")},
      {"text: printing press", "The invention of the printing press in the fifteenth century changed Europe in several ways. First,"},
      {"chat: licenses", chat("What is the difference between a permissive software license and a copyleft license?")},
  };
}

// The ablation rows compose the library's detail functions; check once that the composition with
// normalization reproduces the library codec (same scales, same rounding) on a tile with
// outlier channels, so that the -norot/-plain rows differ from KVarN only where intended.
void self_check_ablation(int head_dim) {
  kvarn_cl::CodecParams p;
  p.head_dim = head_dim;
  const int G = p.group(), D = head_dim;
  std::vector<float> k(std::size_t(G) * D), v(k.size());
  std::uint32_t s = 12345;
  auto rnd = [&] {  // deterministic uniform(-1,1) sums: roughly Gaussian
    float a = 0;
    for (int i = 0; i < 4; ++i) {
      s = s * 1664525u + 1013904223u;
      a += float(s >> 8) / float(1u << 24) * 2.0f - 1.0f;
    }
    return a;
  };
  for (std::size_t i = 0; i < k.size(); ++i) {
    k[i] = rnd() * ((i % std::size_t(D)) == 3 ? 20.0f : 1.0f);
    v[i] = rnd();
  }
  std::vector<kvarn_cl::half_bits> kr(k.size()), vr(v.size());
  kvarn_cl::rotate_rows(k.data(), kr.data(), std::size_t(G), D);
  kvarn_cl::rotate_rows(v.data(), vr.data(), std::size_t(G), D);
  std::vector<std::uint8_t> rec(kvarn_cl::RecordLayout::make(p).bytes);
  kvarn_cl::quantize_tile(p, kr.data(), vr.data(), rec.data());
  std::vector<float> kl(k.size()), vl(v.size()), ka(k.size()), va(v.size());
  kvarn_cl::dequantize_tile(p, rec.data(), kl.data(), vl.data(), kvarn_cl::Frame::rotated);
  ablation_round_trip(p, true, kr.data(), vr.data(), ka.data(), va.data());
  double num = 0, den = 0;
  for (std::size_t i = 0; i < k.size(); ++i) {
    num += double(kl[i] - ka[i]) * (kl[i] - ka[i]) + double(vl[i] - va[i]) * (vl[i] - va[i]);
    den += double(kl[i]) * kl[i] + double(vl[i]) * vl[i];
  }
  const double rel = std::sqrt(num / den);
  if (!(rel < 1e-5)) {
    std::ostringstream m;
    m << "self-check failed: the ablation codec (composed from kvarn_cl::detail) differs from the "
         "library codec by " << rel << " relative on a synthetic tile";
    throw kvarn_cl::Error(kvarn_cl::Status::internal, m.str());
  }
}

std::string fmt(double v, int prec) {
  char b[64];
  std::snprintf(b, sizeof(b), "%.*f", prec, v);
  return b;
}

std::string sci(double v) {
  char b[64];
  std::snprintf(b, sizeof(b), "%.2e", v);
  return b;
}

std::string budget_key(double b) {
  std::ostringstream s;
  s << b;
  return s.str();
}

std::string signed_percent(double v) { return (v >= 0 ? "+" : "") + fmt(v, 2) + "%"; }

}  // namespace

int main(int argc, char** argv) {
  try {
    std::string model_path, markdown, capture_dir, check_config, backend_name = "cpu";
    bool skip_missing = false, show_text = false, no_score = false;
    std::vector<std::string> long_prompts;
    int long_prompt_tokens = 1024;
    std::vector<std::string> texts, config_names;
    std::vector<int> windows{512, 1024, 2048}, capture_layers{0, 1, 15, 29};
    std::vector<std::string> long_texts;
    int long_ctx = 0, calib_ctx = 1024;
    bool calibrate = false, configs_are_all = false;
    std::string calib_text = "/usr/share/common-licenses/Apache-2.0", plan_dir;
    std::vector<std::string> calib_presets{"k4v2_g128", "k4v4_g128"};
    std::vector<double> budgets{57, 60, 64, 68};
    CalibrationObjective objective = CalibrationObjective::mean_kl;
    int ctx = 2048, gen_tokens = 256, n_prompts = 4, step = 64, check_window = 0;
    unsigned threads = 0;
    double max_ratio = 0;
    for (int i = 1; i < argc; ++i) {
      const std::string a = argv[i];
      auto val = [&]() -> std::string {
        if (i + 1 >= argc) throw kvarn_cl::InvalidArgument("option " + a + " needs a value");
        return argv[++i];
      };
      if (a == "--model") model_path = val();
      else if (a == "--skip-missing-model") skip_missing = true;
      else if (a == "--text") texts.push_back(val());
      else if (a == "--ctx") ctx = parse_int(a, val());
      else if (a == "--windows") {
        windows.clear();
        for (auto& w : split(val(), ',')) windows.push_back(parse_int(a, w));
      } else if (a == "--configs") {
        const std::string v = val();
        config_names = v == "all" ? default_config_names() : split(v, ',');
        configs_are_all = v == "all";
      } else if (a == "--gen-tokens") gen_tokens = parse_int(a, val());
      else if (a == "--prompts") n_prompts = parse_int(a, val());
      else if (a == "--step") step = parse_int(a, val());
      else if (a == "--threads") threads = unsigned(parse_int(a, val()));
      else if (a == "--markdown") markdown = val();
      else if (a == "--backend") backend_name = val();
      else if (a == "--show-text") show_text = true;
      else if (a == "--no-score") no_score = true;
      else if (a == "--long-prompts") long_prompts = split(val(), ',');
      else if (a == "--long-prompt-tokens") long_prompt_tokens = parse_int(a, val());
      else if (a == "--max-ppl-ratio") max_ratio = std::stod(val());
      else if (a == "--check-config") check_config = val();
      else if (a == "--check-window") check_window = parse_int(a, val());
      else if (a == "--capture") capture_dir = val();
      else if (a == "--long-texts") long_texts = split(val(), ',');
      else if (a == "--long-ctx") long_ctx = parse_int(a, val());
      else if (a == "--calibrate") calibrate = true;
      else if (a == "--calib-text") calib_text = val();
      else if (a == "--calib-ctx") calib_ctx = parse_int(a, val());
      else if (a == "--calib-presets") calib_presets = split(val(), ',');
      else if (a == "--plan-dir") plan_dir = val();
      else if (a == "--calib-objective") objective = parse_objective(val());
      else if (a == "--budgets") {
        budgets.clear();
        for (auto& b : split(val(), ',')) {
          std::size_t used = 0;
          double x = 0;
          try {
            x = std::stod(b, &used);
          } catch (...) {
            used = 0;
          }
          if (used != b.size() || !(x > 0)) throw kvarn_cl::InvalidArgument("--budgets entry '" + b + "' is not a positive number");
          budgets.push_back(x);
        }
      }
      else if (a == "--capture-layers") {
        capture_layers.clear();
        for (auto& w : split(val(), ',')) capture_layers.push_back(parse_int(a, w));
      } else if (a == "--help" || a == "-h") {
        std::cout << kUsage;
        return 0;
      } else {
        throw kvarn_cl::InvalidArgument("unknown option '" + a + "' (see --help)");
      }
    }
    if (ctx < 2 || step < 1 || n_prompts < 0 || gen_tokens < 0)
      throw kvarn_cl::InvalidArgument("--ctx must be >= 2, --step >= 1, --prompts and --gen-tokens >= 0");
    for (int w : windows)
      if (w < 2 || w > ctx)
        throw kvarn_cl::InvalidArgument("window " + std::to_string(w) + " must lie in [2, --ctx=" + std::to_string(ctx) + "]");
    if (model_path.empty()) {
      const char* dir = std::getenv("KVARN_CL_MODEL_DIR");
      model_path = std::string(dir && *dir ? dir : "models") + "/" + kModelFile;
    }
    if (!file_exists(model_path)) {
      if (skip_missing) {
        std::cout << "SKIP: model file '" << model_path << "' not found; run scripts/fetch_model.sh\n";
        return kExitSkip;
      }
      throw kvarn_cl::IoError("model file '" + model_path + "' not found; run scripts/fetch_model.sh");
    }
    if (texts.empty())
      for (const char* t : {"GPL-3", "GFDL-1.3", "MPL-2.0", "Apache-2.0"})
        texts.push_back(std::string("/usr/share/common-licenses/") + t);
    if (config_names.empty()) {
      config_names = default_config_names();
      configs_are_all = true;
    }
    if (configs_are_all && !calibrate) {  // the calib:B rows of the full table need --calibrate
      config_names.erase(std::remove_if(config_names.begin(), config_names.end(),
                                        [](const std::string& n) { return n.rfind("calib:", 0) == 0; }),
                         config_names.end());
      std::fprintf(stderr, "note: without --calibrate the calib:B rows of the full table are left out\n");
    }

    const auto t_start = std::chrono::steady_clock::now();
    GgufFile file(model_path);
    Model model(file);
    Tokenizer tok(file);
    ThreadPool pool(threads);
    const ModelConfig& mc = model.config();
    std::fprintf(stderr, "model: %s, %d layers, d_model %d, %d heads / %d KV heads of %d, vocab %d, rope theta %g; loaded in %.1f s, %u threads\n",
                 mc.name.c_str(), mc.layers, mc.d_model, mc.heads, mc.kv_heads, mc.head_dim, mc.vocab,
                 mc.rope_theta,
                 std::chrono::duration<double>(std::chrono::steady_clock::now() - t_start).count(), pool.size());

    if (!capture_dir.empty()) {
      const auto tokens = tok.encode(read_text(texts.front()));
      capture_tiles(model, pool, tokens, {capture_dir, capture_layers, 1});
      return 0;
    }

    self_check_ablation(mc.head_dim);
    // Calibration first: the calib:B configs use its plans.
    std::map<std::string, std::vector<kvarn_cl::Preset>> plans;
    std::string calib_report;
    if (calibrate) {
      if (calib_ctx < 2 * 128) throw kvarn_cl::InvalidArgument("--calib-ctx must be >= 256 (a sink tile and a quantized tile)");
      for (const auto& t : texts)
        if (t == calib_text) throw kvarn_cl::InvalidArgument("--calib-text '" + calib_text + "' is also a scored --text");
      std::vector<kvarn_cl::Preset> ladder;
      for (const auto& p : calib_presets) ladder.push_back(kvarn_cl::parse_preset(p, "--calib-presets"));
      auto ids = tok.encode(read_text(calib_text));
      if (int(ids.size()) < calib_ctx)
        throw kvarn_cl::InvalidArgument("--calib-text '" + calib_text + "' has " + std::to_string(ids.size()) +
                                        " tokens, fewer than --calib-ctx " + std::to_string(calib_ctx));
      ids.resize(std::size_t(calib_ctx));
      std::fprintf(stderr, "calibration: %d layers x %zu presets on %d tokens of %s\n", mc.layers, ladder.size(),
                   calib_ctx, calib_text.c_str());
      const Sensitivity sens = measure_sensitivity(model, pool, {ids}, ladder, step, true);
      std::vector<LayerPlan> chosen;
      for (double b : budgets) chosen.push_back(choose_presets(sens, mc.head_dim, b, objective));
      std::ostringstream cr;
      cr << "Calibration: " << calib_ctx << " tokens of " << calib_text << ", " << mc.layers << " layers x "
         << ladder.size() << " presets, each layer quantized alone (fp16 elsewhere), " << fmt(sens.seconds, 0)
         << " s\n\n" << sensitivity_table(sens, chosen) << "\n";
      for (const LayerPlan& p : chosen) {
        plans[budget_key(p.budget)] = p.presets;
        std::vector<int> up;
        for (std::size_t l = 0; l < p.presets.size(); ++l)
          if (p.presets[l] != sens.ladder.front()) up.push_back(int(l));
        cr << "- budget " << p.budget << ": " << fmt(p.bytes_per_token_head, 2) << " B/token/head, "
           << up.size() << " layers above " << kvarn_cl::to_string(sens.ladder.front()) << ":";
        for (int l : up) cr << " " << l << "(" << kvarn_cl::to_string(p.presets[std::size_t(l)]) << ")";
        cr << "; predicted " << (objective == CalibrationObjective::mean_kl ? "mean" : "99.9%")
           << " KL (sum of per-layer sensitivities) " << sci(p.predicted_kl) << "\n";
        if (!plan_dir.empty()) {
          const std::string path = plan_dir + "/layers_b" + budget_key(p.budget) + ".txt";
          std::ofstream f(path);
          std::ostringstream comment;
          comment << "kvarn-eval --calibrate: " << mc.name << ", budget " << p.budget << " B/token/head, achieved "
                  << fmt(p.bytes_per_token_head, 2) << "\ncalibration text: first " << calib_ctx << " tokens of "
                  << calib_text << "\nsensitivity: " << (objective == CalibrationObjective::mean_kl ? "mean" : "99.9th-percentile")
                  << " KL vs fp16 with only that layer quantized";
          f << kvarn_cl::format_layer_presets(p.presets, comment.str());
          if (!f) throw kvarn_cl::IoError("cannot write layer-preset file '" + path + "'");
          cr << "  written to " << path << "\n";
        }
      }
      calib_report = cr.str();
      std::fputs(calib_report.c_str(), stderr);
    }
    std::vector<KvConfig> configs;
    bool need_backend = false;
    for (const auto& n : config_names) {
      configs.push_back(KvConfig::parse(n, mc.head_dim, plans));
      need_backend = need_backend || configs.back().library_cache;
    }
    std::shared_ptr<kvarn_cl::Backend> backend;
    std::string backend_note;
    if (need_backend) {
      std::string why;
      backend = kvarn_cl::make_backend(kvarn_cl::parse_backend_kind(backend_name, "--backend"), &why);
      backend_note = backend->name() + (why.empty() ? "" : " (" + why + ")");
      std::fprintf(stderr, "library cache backend: %s\n", backend_note.c_str());
    }

    // Chunks: the first ctx tokens of each text that has that many.
    std::vector<std::vector<std::int32_t>> chunks;
    std::vector<std::string> used_texts;
    for (const auto& t : texts) {
      if (no_score) break;
      const auto ids = tok.encode(read_text(t));
      if (int(ids.size()) < ctx) {
        std::fprintf(stderr, "note: %s has %zu tokens < --ctx %d; not scored\n", t.c_str(), ids.size(), ctx);
        continue;
      }
      chunks.emplace_back(ids.begin(), ids.begin() + ctx);
      used_texts.push_back(t + " (" + std::to_string(ids.size()) + " tokens)");
    }
    if (chunks.empty() && !no_score) throw kvarn_cl::InvalidArgument("no --text has at least --ctx tokens");
    if (no_score) chunks.clear();

    std::vector<ScoreStats> stats(configs.size());
    for (auto& st : stats) {
      st.nll_sum.assign(windows.size(), 0.0);
      st.nll_count.assign(windows.size(), 0);
    }
    if (!no_score) stats = score_chunks(model, pool, configs, 0, chunks, windows, step, true, backend);
    // The long chunk: the texts concatenated, up to the model's context.
    std::vector<ScoreStats> long_stats;
    std::string long_note;
    if (!long_texts.empty() && !no_score) {
      if (long_ctx == 0) long_ctx = mc.train_context > 0 ? mc.train_context : 8192;
      if (mc.train_context > 0 && long_ctx > mc.train_context)
        throw kvarn_cl::InvalidArgument("--long-ctx " + std::to_string(long_ctx) + " exceeds the model's context " +
                                        std::to_string(mc.train_context));
      std::vector<std::int32_t> ids;
      for (const auto& t : long_texts) {
        const auto part = tok.encode(read_text(t) + "\n\n");
        ids.insert(ids.end(), part.begin(), part.end());
        long_note += (long_note.empty() ? "" : " + ") + t + " (" + std::to_string(part.size()) + ")";
        if (int(ids.size()) >= long_ctx) break;
      }
      if (int(ids.size()) < long_ctx)
        throw kvarn_cl::InvalidArgument("--long-texts hold " + std::to_string(ids.size()) + " tokens, fewer than --long-ctx " +
                                        std::to_string(long_ctx));
      ids.resize(std::size_t(long_ctx));
      long_stats = score_chunks(model, pool, configs, 0, {ids}, {long_ctx}, step, true, backend);
    }
    std::vector<std::vector<std::int32_t>> prompts;
    auto all_prompts = builtin_prompts();
    if (!long_prompts.empty()) {
      all_prompts.clear();
      for (const auto& f : long_prompts) {
        auto ids = tok.encode(read_text(f));
        if (int(ids.size()) < long_prompt_tokens)
          throw kvarn_cl::InvalidArgument("--long-prompts file '" + f + "' has fewer than --long-prompt-tokens tokens");
        ids.resize(std::size_t(long_prompt_tokens));
        prompts.push_back(ids);
        all_prompts.push_back({"long prompt", f});
      }
    } else {
      n_prompts = std::min<int>(n_prompts, int(all_prompts.size()));
      for (int p = 0; p < n_prompts; ++p) prompts.push_back(tok.encode(all_prompts[std::size_t(p)].text));
    }
    const auto gen = greedy_generate(model, pool, configs, prompts, gen_tokens, true, backend);
    const double seconds = std::chrono::duration<double>(std::chrono::steady_clock::now() - t_start).count();

    std::ostringstream r;
    r << "Model: " << mc.name << " (" << model_path.substr(model_path.find_last_of('/') + 1) << "), head_dim "
      << mc.head_dim << ", " << mc.kv_heads << " KV heads x " << mc.layers << " layers\n";
    if (!no_score) r << "Text: " << chunks.size() << " chunk(s) of " << ctx << " tokens:";
    for (const auto& t : used_texts) r << " " << t << ";";
    r << (no_score ? "" : "\n") << "Greedy: " << prompts.size() << " prompts x " << gen_tokens << " tokens";
    if (!long_prompts.empty()) {
      r << " after the first " << long_prompt_tokens << " tokens of:";
      for (const auto& f : long_prompts) r << " " << f;
    }
    r << "\n";
    if (!long_stats.empty()) r << "Long chunk: " << long_ctx << " tokens of " << long_note << "\n";
    r << "Reference for KL / top-1 / greedy: " << configs[0].name << "\n\n";
    if (!calib_report.empty()) r << calib_report << "\n";
    const bool with_long = !long_stats.empty();
    r << "| cache | B/token/head | B/token/head @" << ctx << " |";
    for (int w : windows) r << " PPL@" << w << " |";
    r << " dPPL@" << windows.back() << " | mean KLD | median KLD | 99.9% KLD | same top-1 |";
    if (with_long) r << " PPL@" << long_ctx << " | dPPL@" << long_ctx << " | mean KLD @" << long_ctx << " | 99.9% KLD @" << long_ctx << " | same top-1 @" << long_ctx << " |";
    r << " greedy agree (per prompt) |\n|---|---|---|";
    for (std::size_t w = 0; w < windows.size(); ++w) r << "---|";
    r << "---|---|---|---|---|";
    if (with_long) r << "---|---|---|---|---|";
    r << "---|\n";
    const std::size_t last = windows.size() - 1;
    for (std::size_t c = 0; c < configs.size(); ++c) {
      r << "| " << configs[c].name << " | " << fmt(configs[c].bytes_per_token_head(), 1) << " | "
        << fmt(configs[c].resident_bytes_per_token_head(ctx), 1) << " |";
      if (stats[0].nll_count[last] == 0) {  // --no-score
        for (std::size_t w = 0; w < windows.size() + 5; ++w) r << " - |";
      } else {
        for (std::size_t w = 0; w < windows.size(); ++w) r << " " << fmt(stats[c].perplexity(w), 3) << " |";
        const double dppl = 100.0 * (stats[c].perplexity(last) / stats[0].perplexity(last) - 1.0);
        r << " " << signed_percent(dppl) << " | " << sci(stats[c].mean_kl()) << " | " << sci(stats[c].kl_quantile(0.5))
          << " | " << sci(stats[c].kl_quantile(0.999)) << " | " << fmt(100.0 * stats[c].top1(), 2) << "% |";
      }
      if (with_long) {
        const ScoreStats& ls = long_stats[c];
        r << " " << fmt(ls.perplexity(0), 3) << " | " << signed_percent(100.0 * (ls.perplexity(0) / long_stats[0].perplexity(0) - 1.0))
          << " | " << sci(ls.mean_kl()) << " | " << sci(ls.kl_quantile(0.999)) << " | " << fmt(100.0 * ls.top1(), 2) << "% |";
      }
      if (prompts.empty() || gen_tokens == 0) {
        r << " - |\n";
        continue;
      }
      std::size_t sum = 0;
      std::string per;
      for (std::size_t p = 0; p < prompts.size(); ++p) {
        const std::size_t a = agreement_length(gen[c][p], gen[0][p]);
        sum += a;
        per += (p ? "/" : "") + std::to_string(a);
      }
      r << " " << fmt(double(sum) / prompts.size(), 1) << " (" << per << ") |\n";
    }
    r << "\nConfigurations:\n";
    for (const auto& c : configs) r << "- " << c.name << ": " << c.describe() << "\n";
    if (backend) r << "Library cache backend: " << backend_note << "\n";
    r << "\nWall time " << fmt(seconds, 0) << " s with " << pool.size() << " threads.\n";
    if (show_text)
      for (std::size_t p = 0; p < prompts.size(); ++p)
        r << "\n--- prompt " << p << " (" << all_prompts[p].label << "), " << configs[0].name << " continuation ---\n"
          << tok.decode(gen[0][p]) << "\n";
    std::cout << r.str();
    if (!markdown.empty()) {
      std::ofstream f(markdown);
      if (!f) throw kvarn_cl::IoError("cannot write --markdown file '" + markdown + "'");
      f << r.str();
    }

    if (max_ratio > 0) {
      auto it = std::find(config_names.begin(), config_names.end(), check_config);
      auto wt = std::find(windows.begin(), windows.end(), check_window);
      if (it == config_names.end() || wt == windows.end())
        throw kvarn_cl::InvalidArgument("--max-ppl-ratio needs --check-config among --configs and --check-window among --windows");
      const std::size_t c = std::size_t(it - config_names.begin()), w = std::size_t(wt - windows.begin());
      const double ratio = stats[c].perplexity(w) / stats[0].perplexity(w);
      std::printf("check: ppl(%s)/ppl(%s) at %d = %.5f, bound %.5f: %s\n", check_config.c_str(),
                  configs[0].name.c_str(), check_window, ratio, max_ratio, ratio <= max_ratio ? "PASS" : "FAIL");
      if (!(ratio <= max_ratio)) return kExitBound;
    }
    return 0;
  } catch (const std::exception& e) {
    std::fprintf(stderr, "kvarn-eval: error: %s\n", e.what());
    return 1;
  }
}
