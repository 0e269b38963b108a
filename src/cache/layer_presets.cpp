// Layer-preset files (include/kvarn_cl/cache.hpp): "<layer> <preset>" lines, '#' comments.
// Layer numbers are written as format_layer_presets writes them (plain decimal digits, no sign,
// no leading zero), like every integer kvarn-cl takes; text quoted from the file in a message is
// escaped (printable.hpp).
#include <limits>
#include <sstream>

#include "format/printable.hpp"
#include "io/bounded_file.hpp"
#include "kvarn_cl/cache.hpp"
#include "kvarn_cl/error.hpp"
#include "util/parse_int.hpp"

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
      throw InvalidArgument(where + ": expected '<layer> <preset>', got '" + printable(line) + "'");
    // The library's one spelling of an integer (util/parse_int.hpp): "+0", "00" or " 0" are not
    // layer 0.
    const util::ParsedInt number = util::try_parse_int(layer, 0, std::numeric_limits<int>::max());
    if (number.error != util::IntError::none || std::size_t(number.value) != out.size())
      throw InvalidArgument(
          where + ": layer '" + printable(layer) + "' where layer " + std::to_string(out.size()) +
          " was expected (layers are listed in order from 0, in plain decimal digits)");
    out.push_back(parse_preset(preset, where + " preset"));
  }
  if (out.empty()) throw InvalidArgument(source + ": no '<layer> <preset>' lines");
  return out;
}

std::vector<Preset> read_layer_presets(const std::string& path) {
  // A FIFO, /dev/zero or a huge file is refused instead of hanging or filling memory.
  const std::string text = io::read_text_file(path, {io::kMaxTextFileBytes, false, true},
                                              "layer-preset file '" + printable(path) + "'");
  return parse_layer_presets(text, path);
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
