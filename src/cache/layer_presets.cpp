// Layer-preset files (include/kvarn_cl/cache.hpp): "<layer> <preset>" lines, '#' comments.
#include <fstream>
#include <sstream>

#include "kvarn_cl/cache.hpp"
#include "kvarn_cl/error.hpp"

namespace kvarn_cl {

std::vector<Preset> parse_layer_presets(const std::string& text, const std::string& source) {
  std::vector<Preset> out;
  std::istringstream in(text);
  std::string line;
  int line_no = 0;
  while (std::getline(in, line)) {
    ++line_no;
    const auto hash = line.find('#');
    if (hash != std::string::npos) line.erase(hash);
    std::istringstream fields(line);
    std::string layer, preset, extra;
    if (!(fields >> layer)) continue;  // blank or comment
    const std::string where = source + ":" + std::to_string(line_no);
    if (!(fields >> preset) || (fields >> extra))
      throw InvalidArgument(where + ": expected '<layer> <preset>', got '" + line + "'");
    std::size_t used = 0;
    long n = -1;
    try {
      n = std::stol(layer, &used);
    } catch (...) {
      used = 0;
    }
    if (used != layer.size() || n != long(out.size()))
      throw InvalidArgument(where + ": layer '" + layer + "' where layer " + std::to_string(out.size()) +
                            " was expected (layers are listed in order from 0)");
    out.push_back(parse_preset(preset, where + " preset"));
  }
  if (out.empty()) throw InvalidArgument(source + ": no '<layer> <preset>' lines");
  return out;
}

std::vector<Preset> read_layer_presets(const std::string& path) {
  std::ifstream f(path, std::ios::binary);
  if (!f) throw IoError("cannot read layer-preset file '" + path + "'");
  std::stringstream ss;
  ss << f.rdbuf();
  if (f.bad()) throw IoError("error reading layer-preset file '" + path + "'");
  return parse_layer_presets(ss.str(), path);
}

std::string format_layer_presets(const std::vector<Preset>& presets, const std::string& comment) {
  std::ostringstream s;
  s << "# kvarn_cl layer presets: <layer> <preset>\n";
  std::istringstream c(comment);
  std::string line;
  while (std::getline(c, line)) s << "# " << line << "\n";
  for (std::size_t l = 0; l < presets.size(); ++l) s << l << " " << to_string(presets[l]) << "\n";
  return s.str();
}

}  // namespace kvarn_cl
