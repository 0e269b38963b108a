// Command-line option parsing for every subcommand: "--name value" or "--name=value", flags without
// values, --help. Every mistake becomes a UsageError that names the option and the value.
#include <sstream>

#include "cli.hpp"
#include "kvarn_cl/error.hpp"
#include "util/parse_int.hpp"

namespace kvarn_cl::cli {
namespace {

const OptionSpec* find_option(const CommandSpec& spec, const std::string& name) {
  for (const auto& o : spec.options)
    if (o.name == name) return &o;
  return nullptr;
}

}  // namespace

Options::Options(const CommandSpec& spec, int argc, char** argv) {
  for (int i = 0; i < argc; ++i) {
    std::string arg = argv[i];
    if (arg == "--help" || arg == "-h") {
      help_ = true;
      return;
    }
    if (arg.size() < 3 || arg.compare(0, 2, "--") != 0)
      throw UsageError("unexpected argument '" + arg + "' for '" + spec.name +
                       "' (options start with --; see kvarn-cl " + spec.name + " --help)");
    std::string name = arg.substr(2), value;
    bool inline_value = false;
    if (auto eq = name.find('='); eq != std::string::npos) {
      value = name.substr(eq + 1);
      name = name.substr(0, eq);
      inline_value = true;
    }
    const OptionSpec* o = find_option(spec, name);
    if (o == nullptr)
      throw UsageError("unknown option '--" + name + "' for '" + spec.name + "' (see kvarn-cl " +
                       spec.name + " --help)");
    if (values_.count(name)) throw UsageError("option --" + name + " given twice");
    if (o->value.empty()) {
      if (inline_value)
        throw UsageError("option --" + name + " takes no value, got '" + value + "'");
      value = "1";
    } else if (!inline_value) {
      if (i + 1 >= argc) throw UsageError("option --" + name + " needs a value " + o->value);
      value = argv[++i];
    }
    values_[name] = value;
  }
  for (const auto& o : spec.options)
    if (o.required && !values_.count(o.name))
      throw UsageError("missing required option --" + o.name + " " + o.value + " for '" +
                       spec.name + "' (see kvarn-cl " + spec.name + " --help)");
}

const std::string& Options::get(const std::string& name) const {
  auto it = values_.find(name);
  if (it == values_.end()) throw UsageError("missing option --" + name);
  return it->second;
}

std::string Options::get_or(const std::string& name, const std::string& fallback) const {
  auto it = values_.find(name);
  return it == values_.end() ? fallback : it->second;
}

long Options::get_int(const std::string& name, long fallback, long min, long max) const {
  auto it = values_.find(name);
  if (it == values_.end()) return fallback;
  // The library's one spelling of an integer (src/util/parse_int.hpp): no " 128" or "+128".
  const std::string& text = it->second;
  const util::ParsedInt r = util::try_parse_int(text, min, max);
  if (r.error == util::IntError::not_an_integer)
    throw UsageError("invalid --" + name + " '" + text + "': expected an integer");
  if (r.error == util::IntError::out_of_range)
    throw UsageError("invalid --" + name + " " + text + ": expected " + std::to_string(min) + ".." +
                     std::to_string(max));
  return long(r.value);
}

CodecParams Options::codec_params() const {
  CodecParams p;
  try {
    p.preset = parse_preset(get_or("preset", to_string(Preset::k4v2_g128)), "--preset");
    p.head_dim = int(get_int("head-dim", 128, -(1L << 30), 1L << 30));
    validate_head_dim(p.head_dim, "--head-dim");
  } catch (const InvalidArgument& e) {
    throw UsageError(e.what());
  }
  p.sinkhorn_iters = int(get_int("sinkhorn-iters", kDefaultSinkhornIters, 0, 64));
  return p;
}

BackendKind Options::backend_kind() const {
  try {
    return parse_backend_kind(get_or("backend", "auto"), "--backend");
  } catch (const InvalidArgument& e) {
    throw UsageError(e.what());
  }
}

std::string help_text(const CommandSpec& spec) {
  std::ostringstream out;
  out << "usage: kvarn-cl " << spec.name;
  for (const auto& o : spec.options) {
    out << ' ' << (o.required ? "" : "[") << "--" << o.name;
    if (!o.value.empty()) out << ' ' << o.value;
    out << (o.required ? "" : "]");
  }
  out << "\n\n" << spec.summary << "\n\noptions:\n";
  for (const auto& o : spec.options) {
    std::string head = "  --" + o.name + (o.value.empty() ? "" : " " + o.value);
    out << head;
    if (head.size() < 28)
      out << std::string(28 - head.size(), ' ');
    else
      out << "\n" << std::string(28, ' ');
    out << o.help << (o.required ? " (required)" : "") << "\n";
  }
  out << "  --help                    this text\n";
  if (!spec.details.empty()) out << "\n" << spec.details;
  return out.str();
}

OptionSpec preset_option(bool required) {
  std::string help = "codec preset: ";
  for (Preset p : all_presets()) help += to_string(p) + (p == all_presets().back() ? "" : ", ");
  if (!required) help += " (default k4v2_g128)";
  return {"preset", "P", help, required};
}

OptionSpec head_dim_option(bool required) {
  return {"head-dim", "D",
          std::string("head dimension: 64, 128 or 256") + (required ? "" : " (default 128)"),
          required};
}

OptionSpec iters_option() {
  return {"sinkhorn-iters", "N",
          "variance-normalization iterations, 0..64 (default " +
              std::to_string(kDefaultSinkhornIters) + "); decoding needs no value",
          false};
}

OptionSpec backend_option() {
  return {"backend", "B",
          "cpu, opencl or auto (default auto: OpenCL when a device is usable, else the CPU)",
          false};
}

}  // namespace kvarn_cl::cli
