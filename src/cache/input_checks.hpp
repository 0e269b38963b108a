// The cache's checks of what a caller hands in, one place per rule, each run once per call:
// host K/V rows (finite, within the codec's rotated-magnitude bound), host queries (finite),
// the size of device-resident buffers, and device-resident K/V after their rotation (the host
// never saw them). The backend validates its own arguments separately (src/backend_api/checks.hpp).
#pragma once

#include <cstddef>
#include <string>

#include "cache/append_plan.hpp"
#include "kvarn_cl/backend.hpp"
#include "kvarn_cl/format.hpp"

namespace kvarn_cl::cache {

// One host K or V row of an append (`which` "k" or "v"; entry, token, head locate it): finite,
// and an L2 norm of at most kMaxRotatedMagnitude (a rotated channel is at most the row's L2
// norm), so its fp16 rotated rows and every record quantized from them stay finite. Throws
// NonFiniteInput.
void check_host_row(const void* row, ElementType type, int head_dim, const char* which,
                    std::size_t entry, int token, int head);

// Host queries of an attend, [seqs][num_q_heads][head_dim]: every value finite (NonFiniteInput).
void check_host_queries(const float* q, std::size_t seqs, int num_q_heads, int head_dim);

// A device-resident buffer `name` of call `fn` holds at least `needed` bytes, which `needed_for`
// describes (InvalidArgument otherwise).
void check_buffer_holds(const Buffer& buffer, std::size_t needed, const char* fn, const char* name,
                        const std::string& needed_for);

// Device-resident K or V of an append, once rotated into the staging rows: no NaN, Inf or value
// beyond kMaxRotatedMagnitude in any staging row, before anything is stored. Throws
// NonFiniteInput naming the batch entry, token and head of the first bad row.
void check_rotated_staging_rows(Backend& backend, const Buffer& rows, const AppendPlan& plan,
                                int head_dim, const char* which);

}  // namespace kvarn_cl::cache
