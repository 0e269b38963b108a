// validate_records (format.hpp): the check of records that come from outside the library.
#include <cstring>
#include <sstream>

#include "kvarn_cl/error.hpp"
#include "kvarn_cl/format.hpp"

namespace kvarn_cl {
namespace {

// One fp16 vector of a record; `signed_ok` for zero points, which may be negative.
void check_vector(const std::uint8_t* record, std::size_t offset, int n, const char* field,
                  bool signed_ok, std::size_t index, bool name_index) {
  for (int i = 0; i < n; ++i) {
    std::uint16_t h;
    std::memcpy(&h, record + offset + 2 * std::size_t(i), sizeof h);
    const bool non_finite = (h & 0x7C00u) == 0x7C00u;
    const bool negative = !signed_ok && (h & 0x8000u) != 0 && (h & 0x7FFFu) != 0;
    if (!non_finite && !negative) continue;
    std::ostringstream m;
    m << "corrupt record";
    if (name_index) m << ' ' << index;
    m << ": " << field << '[' << i << "] is " << (non_finite ? "not finite" : "negative") << " (0x"
      << std::hex << h << ')';
    throw CorruptRecord(m.str());
  }
}

}  // namespace

void validate_records(const CodecParams& params, const std::uint8_t* records, std::size_t count) {
  const RecordLayout l = RecordLayout::make(params);
  if (count > 0 && records == nullptr) throw InvalidArgument("validate_records: records is null");
  for (std::size_t r = 0; r < count; ++r) {
    const std::uint8_t* rec = records + r * l.bytes;
    check_vector(rec, l.s_col_k, l.head_dim, "s_col_K", false, r, count > 1);
    check_vector(rec, l.zp_k, l.head_dim, "zp_K", true, r, count > 1);
    check_vector(rec, l.s_row_k, l.group, "s_row_K", false, r, count > 1);
    check_vector(rec, l.s_col_v, l.head_dim, "s_col_V", false, r, count > 1);
    check_vector(rec, l.s_row_v, l.group, "s_row_V", false, r, count > 1);
    check_vector(rec, l.zp_v, l.group, "zp_V", true, r, count > 1);
  }
}

}  // namespace kvarn_cl
