// The argument checks of the backend interface (src/backend_api/checks.hpp) through the CPU backend:
// every bad argument is an InvalidArgument naming the argument and its value, with the same
// message the OpenCL backend gives (test/opencl checks the same rules there).
#include <gtest/gtest.h>

#include <functional>
#include <string>
#include <vector>

#include "backend_api/checks.hpp"
#include "kvarn_cl/backend.hpp"
#include "kvarn_cl/error.hpp"

namespace kvarn_cl {
namespace {

const CodecParams kParams{Preset::k4v2_g128, 64, 8};

void expect_invalid(const std::function<void()>& f, const std::string& needle) {
  try {
    f();
    ADD_FAILURE() << "expected an InvalidArgument containing '" << needle << "'";
  } catch (const InvalidArgument& e) {
    EXPECT_NE(std::string(e.what()).find(needle), std::string::npos) << e.what();
  } catch (const std::exception& e) {
    ADD_FAILURE() << "wrong exception type: " << e.what();
  }
}

TEST(BackendChecks, CodecCallsNameTheJobAndTheValue) {
  auto be = make_cpu_backend(CpuThreads{1});
  const RecordLayout l = RecordLayout::make(kParams);
  auto rows = be->allocate(std::size_t(l.group) * l.head_dim * 2);
  auto records = be->allocate(l.bytes);
  expect_invalid(
      [&] {
        be->quantize(kParams, *rows, *rows, {{1, 0}}, *records);
      },
      "quantize: jobs[0].src_row = 1");
  expect_invalid(
      [&] {
        be->quantize(kParams, *rows, *rows, {{0, 0}, {0, 1}}, *records);
      },
      "quantize: jobs[1].dst_record = 1");
  expect_invalid(
      [&] {
        be->dequantize(kParams, *records, {0, 3}, Frame::rotated, *rows, *rows);
      },
      "dequantize: record_ids[1] = 3");
  expect_invalid(
      [&] {
        be->dequantize(kParams, *records, {0, 0}, Frame::rotated, *rows, *rows);
      },
      "dequantize: k_out: bytes [0, 32768) are outside the buffer of 16384 bytes");
  expect_invalid([&] { be->rotate(kParams, *rows, ElementType::f32, l.group, *rows, 0); },
                 "rotate: in");
  expect_invalid([&] { be->rotate(kParams, *rows, ElementType::f16, 2, *rows, l.group - 1); },
                 "rotate: out");
  expect_invalid(
      [&] {
        be->copy_rows(*rows, *rows, {{0, 0, 1}, {255, 0, 2}}, 64);
      },
      "copy_rows: runs[1] source");
  expect_invalid([&] { be->read(*rows, rows->size(), nullptr, 1); }, "read: src");
}

// One sequence over one record, a sink and a tail of one tile each.
struct AttendSetup {
  std::unique_ptr<Backend> be = make_cpu_backend(CpuThreads{1});
  RecordLayout l = RecordLayout::make(kParams);
  std::unique_ptr<Buffer> q, out, records, tables, sink, tail, info;
  SeqInfo seq{0, 1, 1, 1};
  std::int32_t block = 0;
  AttendArgs a;

  AttendSetup() {
    const std::size_t D = std::size_t(l.head_dim), G = std::size_t(l.group);
    q = be->allocate(2 * D * 4);
    out = be->allocate(2 * D * 4);
    records = be->allocate(l.bytes);
    tables = be->allocate(4);
    sink = be->allocate(G * D * 2);
    tail = be->allocate(G * D * 2);
    info = be->allocate(sizeof(SeqInfo));
    a.params = kParams;
    a.num_seqs = 1;
    a.num_q_heads = 2;
    a.num_kv_heads = 1;
    a.scale = 0.125f;
    a.q = q.get();
    a.out = out.get();
    a.records = records.get();
    a.block_tables = tables.get();
    a.max_blocks = 1;
    a.sink = a.sink_v = sink.get();
    a.tail = a.tail_v = tail.get();
    a.sink_capacity = a.tail_capacity = int(G);
    a.seq_info = info.get();
  }
  void attend() {
    be->write(*info, 0, &seq, sizeof seq);
    be->write(*tables, 0, &block, sizeof block);
    be->attend(a);
  }
};

TEST(BackendChecks, AttendNamesTheArgumentOrTheBatchEntry) {
  AttendSetup s;
  s.block = 999;
  expect_invalid([&] { s.attend(); }, "attend: block id of batch entry 0 is 999, outside [0, 1)");
  s.block = 0;
  s.seq.slot = 5;
  expect_invalid([&] { s.attend(); }, "attend: slot of batch entry 0 is 5, outside [0, 1)");
  s.seq.slot = 0;
  s.seq.tail_len = 129;
  expect_invalid([&] { s.attend(); }, "attend: tail_len of batch entry 0 is 129, outside [0, 129)");
  s.seq.tail_len = 1;
  s.a.num_q_heads = 3;
  s.a.num_kv_heads = 2;
  expect_invalid([&] { s.attend(); },
                 "attend: num_q_heads 3 is not a positive multiple of num_kv_heads 2");
  s.a.num_q_heads = 2;
  s.a.num_kv_heads = 1;
  s.a.sink_v = nullptr;
  expect_invalid([&] { s.attend(); }, "attend: AttendArgs::sink_v is null");
  s.a.sink_v = s.sink.get();
  s.a.tail_capacity = -1;
  expect_invalid([&] { s.attend(); }, "attend: tail_capacity -1 is negative");
  s.a.tail_capacity = s.l.group;
  s.a.host_seq_info = &s.seq;
  expect_invalid([&] { s.attend(); }, "host_seq_info and host_block_tables must be given together");
  s.a.host_seq_info = nullptr;
  s.a.max_blocks = 2;
  expect_invalid([&] { s.attend(); },
                 "attend: block_tables: bytes [0, 8) are outside the buffer of 4 bytes");
}

TEST(BackendChecks, AttendFp16NamesTheSequenceLength) {
  auto be = make_cpu_backend(CpuThreads{1});
  const int D = 64, cap = 9;
  auto q = be->allocate(2 * D * 4), out = be->allocate(2 * D * 4);
  auto k = be->allocate(std::size_t(cap) * D * 2), lens = be->allocate(4);
  const std::int32_t len = cap + 1;
  be->write(*lens, 0, &len, 4);
  const AttendFp16Args a =
      AttendFp16Args::over(1, 2, 1, D, *q, *out, *k, *k, cap, *lens, Frame::original);
  expect_invalid([&] { be->attend_fp16(a); },
                 "attend_fp16: seq_len of batch entry 0 is 10, outside [0, 10)");
  AttendFp16Args wide = a;
  wide.capacity = cap + 1;
  expect_invalid([&] { be->attend_fp16(wide); },
                 "attend_fp16: k: bytes [0, 1280) are outside the buffer of 1152 bytes");
}

TEST(BackendChecks, AttendIndicesReturnTheLongestSequenceInUnits) {
  AttendPools pools;
  pools.max_blocks = 3;
  pools.sink_capacity = pools.tail_capacity = 256;
  pools.blocks = 4;
  pools.slots = 2;
  const std::vector<SeqInfo> info = {{0, 1, 2, 129}, {1, 0, 3, 0}};
  const std::vector<std::int32_t> tables = {0, 1, -7, 2, 3, 0};
  // Entry 0: one sink tile + 2 records + two tail tiles; entry 1: 3 records.
  EXPECT_EQ(check_attend_indices(pools, 2, info.data(), tables.data(), 128), 5);
  // Ids past num_blocks are not read.
  EXPECT_EQ(check_attend_indices(pools, 1, info.data(), tables.data(), 128), 5);
}

}  // namespace
}  // namespace kvarn_cl
