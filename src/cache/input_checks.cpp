// Checks of caller input (input_checks.hpp): what the cache refuses before it changes anything.
#include "cache/input_checks.hpp"

#include <cmath>
#include <type_traits>

#include "cache/error_message.hpp"
#include "kvarn_cl/error.hpp"
#include "kvarn_cl/half.hpp"

namespace kvarn_cl::cache {

namespace {

template <typename T>
void check_row_values(const T* row, int D, const char* which, std::size_t entry, int token,
                      int head) {
  double sq = 0;
  for (int d = 0; d < D; ++d) {
    const float x =
        std::is_same<T, float>::value ? float(row[d]) : half_to_float(half_bits(row[d]));
    if (!std::isfinite(x))
      throw NonFiniteInput(message("append: ", which, " of batch entry ", entry, ", token ", token,
                                   ", head ", head, ", channel ", d, " is ", x));
    sq += double(x) * x;
  }
  if (std::sqrt(sq) > double(kMaxRotatedMagnitude))
    throw NonFiniteInput(
        message("append: ", which, " row of batch entry ", entry, ", token ", token, ", head ",
                head, " has L2 norm ", std::sqrt(sq), " > ", kMaxRotatedMagnitude,
                ": its rotation could overflow fp16 once quantized (the codec's bound)"));
}

}  // namespace

void check_host_row(const void* row, ElementType type, int head_dim, const char* which,
                    std::size_t entry, int token, int head) {
  if (type == ElementType::f32)
    check_row_values(static_cast<const float*>(row), head_dim, which, entry, token, head);
  else
    check_row_values(static_cast<const half_bits*>(row), head_dim, which, entry, token, head);
}

void check_host_queries(const float* q, std::size_t seqs, int num_q_heads, int head_dim) {
  const std::size_t hq = std::size_t(num_q_heads), D = std::size_t(head_dim);
  for (std::size_t i = 0; i < seqs * hq * D; ++i)
    if (!std::isfinite(q[i]))
      throw NonFiniteInput(
          message("attend: q[", i / (hq * D), "][", (i / D) % hq, "][", i % D, "] is ", q[i]));
}

void check_buffer_holds(const Buffer& buffer, std::size_t needed, const char* fn, const char* name,
                        const std::string& needed_for) {
  if (buffer.size() < needed)
    throw InvalidArgument(message(fn, ": the ", name, " buffer holds ", buffer.size(),
                                  " bytes but ", needed, " are needed for ", needed_for));
}

void check_rotated_staging_rows(Backend& backend, const Buffer& rows, const AppendPlan& plan,
                                int head_dim, const char* which) {
  const std::int64_t bad =
      backend.first_row_out_of_range(rows, plan.staging_rows, head_dim, kMaxRotatedMagnitude);
  if (bad < 0) return;
  const StagingPosition at = plan.locate(std::size_t(bad));
  throw NonFiniteInput(message("append: the rotated ", which, " row of batch entry ", at.entry,
                               ", token ", at.token, ", head ", at.head,
                               " (device-resident input) holds NaN, Inf or a value beyond ",
                               kMaxRotatedMagnitude, " (the codec's bound): nothing was stored"));
}

}  // namespace kvarn_cl::cache
