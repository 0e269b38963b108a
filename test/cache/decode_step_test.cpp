// The decode step (include/kvarn_cl/decode_step.hpp) against the plain calls: the same cache bytes
// and bit-identical outputs, step after step across sink, tail and tile boundaries (with and
// without a recent window); device failures reported at finish() with the step rolled back and
// nothing lost; argument errors; and, on OpenCL, ordering with a caller's own queue through events.
#include <gtest/gtest.h>

#include <cmath>
#include <cstring>
#include <limits>

#include "cache/cache_fixture.hpp"
#include "kvarn_cl/decode_step.hpp"
#include "kvarn_cl/device.hpp"

#if KVARN_CL_WITH_OPENCL
#include <CL/cl.h>
#endif

using namespace kvarn_cl;
using namespace kvarn_cl::test;

namespace {

constexpr int kD = 64, kHk = 2, kHq = 4, kLayers = 2;

CacheConfig step_config(std::shared_ptr<Backend> be, int recent, int max_seqs = 3) {
  CacheConfig c = small_config(std::move(be), Preset::k4v2_g64, kD, kLayers, kHk, max_seqs, 1024);
  c.recent_tokens = recent;
  return c;
}

// Two caches filled alike: `plain` driven by append/attend, `stepped` by decode steps.
struct Pair {
  KVCache plain, stepped;
  std::vector<SeqId> p_ids, s_ids;
  Pair(const CacheConfig& c, const std::vector<int>& prefill) : plain(c), stepped(c) {
    for (std::size_t i = 0; i < prefill.size(); ++i) {
      p_ids.push_back(plain.add_sequence());
      s_ids.push_back(stepped.add_sequence());
    }
    int total = 0;
    for (int t : prefill) total += t;
    for (int l = 0; l < kLayers; ++l) {
      const auto k = kv_rows(total, kHk, kD, 100u + unsigned(l)),
                 v = kv_rows(total, kHk, kD, 200u + unsigned(l));
      plain.append(l, p_ids, prefill, k.data(), v.data());
      stepped.append(l, s_ids, prefill, k.data(), v.data());
    }
  }
};

void expect_same_content(KVCache& a, const std::vector<SeqId>& a_ids, KVCache& b,
                         const std::vector<SeqId>& b_ids) {
  for (int l = 0; l < kLayers; ++l)
    for (std::size_t i = 0; i < a_ids.size(); ++i) {
      SCOPED_TRACE("layer " + std::to_string(l) + ", sequence " + std::to_string(i));
      ASSERT_EQ(a.length(a_ids[i], l), b.length(b_ids[i], l));
      const SequenceSnapshot x = a.snapshot(a_ids[i], l), y = b.snapshot(b_ids[i], l);
      EXPECT_EQ(x.num_tiles, y.num_tiles);
      EXPECT_EQ(x.tail_len, y.tail_len);
      EXPECT_TRUE(x.records == y.records);
      EXPECT_TRUE(x.sink_k == y.sink_k && x.sink_v == y.sink_v);
      EXPECT_TRUE(x.tail_k == y.tail_k && x.tail_v == y.tail_v);
    }
}

std::unique_ptr<Buffer> upload(Backend& be, const std::vector<float>& x) {
  auto b = be.allocate(x.size() * 4);
  be.write(*b, 0, x.data(), x.size() * 4);
  return b;
}

// One decode step of every sequence through both caches, with the same fresh rows; the step takes
// its rows from device buffers (f32) or host memory (f32 on even steps, f16 on odd ones; the plain
// cache then gets the same f16 rows) and every output must equal the plain cache's bit for bit.
void step_both(Pair& p, Backend& be, int step, bool device_io) {
  const int S = int(p.p_ids.size());
  const std::vector<int> ones(std::size_t(S), 1);
  DecodeStep st = p.stepped.begin_step(p.s_ids);
  EXPECT_EQ(st.sequences(), p.s_ids);
  for (int l = 0; l < kLayers; ++l) {
    const unsigned seed = 1000u * unsigned(step) + 10u * unsigned(l);
    const auto k = kv_rows(S, kHk, kD, seed + 1), v = kv_rows(S, kHk, kD, seed + 2);
    const auto q = kv_rows(S, kHq, kD, seed + 3);
    std::vector<float> want(q.size()), got(q.size());
    if (device_io) {
      p.plain.append(l, p.p_ids, ones, k.data(), v.data());
      auto kb = upload(be, k), vb = upload(be, v), qb = upload(be, q);
      auto ob = be.allocate(q.size() * 4);
      st.append(l, *kb, *vb, ElementType::f32);
      st.attend(l, kHq, *qb, *ob, ElementType::f32);
      be.read(*ob, 0, got.data(), got.size() * 4);
    } else if (step % 2 == 0) {
      p.plain.append(l, p.p_ids, ones, k.data(), v.data());
      st.append(l, k.data(), v.data(), ElementType::f32);
      st.attend(l, kHq, q.data(), got.data());
    } else {
      std::vector<half_bits> kh(k.size()), vh(v.size());
      for (std::size_t i = 0; i < k.size(); ++i) {
        kh[i] = float_to_half(k[i]);
        vh[i] = float_to_half(v[i]);
      }
      p.plain.append(l, p.p_ids, ones, kh.data(), vh.data());
      st.append(l, kh.data(), vh.data(), ElementType::f16);
      st.attend(l, kHq, q.data(), got.data());
    }
    p.plain.attend(l, p.p_ids, kHq, q.data(), want.data());
    EXPECT_EQ(0, std::memcmp(want.data(), got.data(), want.size() * 4))
        << "step " << step << " layer " << l;
  }
  st.finish();
  EXPECT_TRUE(st.sequences().empty());
}

}  // namespace

TEST(DecodeStep, MatchesPlainAppendAndAttendBitForBit) {
  for (const NamedBackend& nb : cache_test_backends()) {
    for (int recent : {0, 40}) {
      SCOPED_TRACE(nb.label + ", recent_tokens " + std::to_string(recent));
      // Lengths chosen so that the steps cross the sink's end (60 -> 64), complete tiles (the
      // first at 127 -> 128 without a window) and reach mixed tail lengths.
      Pair p(step_config(nb.backend, recent), {60, 126, 200});
      for (int step = 0; step < 70; ++step) {
        step_both(p, *nb.backend, step, step % 3 == 2);
        if (::testing::Test::HasFailure()) return;
      }
      EXPECT_GE(p.stepped.quantized_tiles(p.s_ids[2], 0), 2);  // tiles completed by steps
      expect_same_content(p.plain, p.p_ids, p.stepped, p.s_ids);
      const MemoryReport a = p.plain.memory_report(), b = p.stepped.memory_report();
      EXPECT_EQ(a.free_blocks, b.free_blocks);
      EXPECT_EQ(a.live_tokens, b.live_tokens);
      EXPECT_GT(b.workspaces, 0u);
    }
  }
}

TEST(DecodeStep, DeviceFailureIsReportedAtFinishAndRolledBack) {
  for (const NamedBackend& nb : cache_test_backends()) {
    for (int recent : {0, 40}) {
      SCOPED_TRACE(nb.label + ", recent_tokens " + std::to_string(recent));
      // Sequence 1 completes a tile on the first step (127 tokens, or 127 + 40 with the window):
      // the failing step quantizes and shifts, and the rollback must undo that too.
      const int before = 127 + recent;
      Pair p(step_config(nb.backend, recent), {30, before, 90});
      std::vector<std::vector<SequenceSnapshot>> snaps(kLayers);
      for (int l = 0; l < kLayers; ++l)
        for (SeqId id : p.s_ids) snaps[std::size_t(l)].push_back(p.stepped.snapshot(id, l));
      const std::size_t free_before = p.stepped.memory_report().free_blocks;
      {
        DecodeStep st = p.stepped.begin_step(p.s_ids);
        for (int l = 0; l < kLayers; ++l) {
          auto k = kv_rows(3, kHk, kD, 7u + unsigned(l)), v = kv_rows(3, kHk, kD, 8u + unsigned(l));
          if (l == 1)
            v[std::size_t((1 * kHk + 1) * kD + 5)] = std::numeric_limits<float>::quiet_NaN();
          st.append(l, k.data(), v.data(), ElementType::f32);
          const auto q = kv_rows(3, kHq, kD, 9);
          std::vector<float> out(q.size());
          st.attend(l, kHq, q.data(), out.data());
        }
        expect_error<NonFiniteInput>([&] { st.finish(); },
                                     "value row of sequence " + std::to_string(p.s_ids[1]) +
                                         " (batch entry 1, KV head 1) in layer 1");
        EXPECT_TRUE(st.sequences().empty());
      }
      EXPECT_EQ(p.stepped.memory_report().free_blocks, free_before);
      for (int l = 0; l < kLayers; ++l)
        for (std::size_t i = 0; i < p.s_ids.size(); ++i) {
          const SequenceSnapshot now = p.stepped.snapshot(p.s_ids[i], l);
          const SequenceSnapshot& was = snaps[std::size_t(l)][i];
          EXPECT_EQ(now.num_tiles, was.num_tiles);
          EXPECT_EQ(now.tail_len, was.tail_len);
          EXPECT_TRUE(now.records == was.records);
          EXPECT_TRUE(now.tail_k == was.tail_k && now.tail_v == was.tail_v)
              << "layer " << l << " seq " << i;
          EXPECT_TRUE(now.sink_k == was.sink_k && now.sink_v == was.sink_v);
        }
      // Nothing lost: the cache goes on exactly like one that never saw the failed step.
      for (int step = 0; step < 3; ++step) step_both(p, *nb.backend, 2 * step, false);
      expect_same_content(p.plain, p.p_ids, p.stepped, p.s_ids);
    }
  }
}

TEST(DecodeStep, ArgumentErrorsAndOpenStepRules) {
  for (const NamedBackend& nb : cache_test_backends()) {
    SCOPED_TRACE(nb.label);
    Pair p(step_config(nb.backend, 0), {10, 20, 30});
    KVCache& c = p.stepped;
    const std::vector<float> k = kv_rows(3, kHk, kD, 1), v = kv_rows(3, kHk, kD, 2),
                             q = kv_rows(3, kHq, kD, 3);
    std::vector<float> out(q.size());
    expect_error<InvalidArgument>([&] { c.begin_step({}); }, "begin_step");
    expect_error<InvalidArgument>([&] { c.begin_step({p.s_ids[0], p.s_ids[0]}); }, "listed twice");
    expect_error<InvalidArgument>([&] { c.begin_step({p.s_ids[0], 12345}); }, "12345");
    {
      DecodeStep st = c.begin_step(p.s_ids);
      expect_error<InvalidArgument>([&] { c.begin_step(p.s_ids); }, "already open");
      expect_error<InvalidArgument>([&] { c.append(0, {p.s_ids[0]}, {1}, k.data(), v.data()); },
                                    "decode step is open");
      expect_error<InvalidArgument>([&] { c.commit(p.s_ids[0]); }, "decode step is open");
      expect_error<InvalidArgument>([&] { c.rollback(p.s_ids[0]); }, "decode step is open");
      expect_error<InvalidArgument>([&] { c.free_sequence(p.s_ids[0]); }, "decode step is open");
      expect_error<InvalidArgument>([&] { st.attend(0, kHq, q.data(), out.data()); },
                                    "has not been appended");
      expect_error<InvalidArgument>(
          [&] { st.append(kLayers, k.data(), v.data(), ElementType::f32); }, "layer");
      auto small = nb.backend->allocate(16);
      expect_error<InvalidArgument>([&] { st.append(0, *small, *small, ElementType::f32); },
                                    "holds 16 bytes");
      st.append(0, k.data(), v.data(), ElementType::f32);
      expect_error<InvalidArgument>([&] { st.append(0, k.data(), v.data(), ElementType::f32); },
                                    "already appended");
      expect_error<InvalidArgument>([&] { st.attend(0, 3, q.data(), out.data()); },
                                    "num_q_heads 3");
      st.attend(0, kHq, q.data(), out.data());  // the step stays usable after refused calls
      // Layer 1 never appended: finish refuses and rolls the step back.
      expect_error<InvalidArgument>([&] { st.finish(); }, "layer 1 was not appended");
      expect_error<InvalidArgument>([&] { st.finish(); }, "this step is finished");
    }
    EXPECT_EQ(c.length(p.s_ids[0], 0), 10);
    EXPECT_EQ(c.length(p.s_ids[0], 1), 10);
    {
      // A step dropped unfinished is rolled back.
      DecodeStep st = c.begin_step(p.s_ids);
      st.append(0, k.data(), v.data(), ElementType::f32);
      st.append(1, k.data(), v.data(), ElementType::f32);
    }
    EXPECT_EQ(c.length(p.s_ids[2], 1), 30);
    // Speculative tokens or layers of different lengths cannot step.
    c.append(0, {p.s_ids[1]}, {1}, k.data(), v.data(), AppendMode::speculative);
    expect_error<InvalidArgument>([&] { c.begin_step(p.s_ids); }, "uncommitted tokens in layer 0");
    c.commit(p.s_ids[1]);
    expect_error<InvalidArgument>([&] { c.begin_step(p.s_ids); },
                                  "holds 21 tokens in layer 0 but 20 in layer 1");
    c.append(1, {p.s_ids[1]}, {1}, k.data(), v.data());
    DecodeStep st = c.begin_step(p.s_ids);
    DecodeStep moved(std::move(st));
    expect_error<InvalidArgument>([&] { st.finish(); }, "moved from");
    for (int l = 0; l < kLayers; ++l) moved.append(l, k.data(), v.data(), ElementType::f32);
    moved.finish();
    EXPECT_EQ(c.length(p.s_ids[1], 1), 22);
    if (nb.backend->kind() != BackendKind::opencl) {
      // The CPU backend has no events to wait on.
      DecodeStep s2 = c.begin_step(p.s_ids);
      auto kb = upload(*nb.backend, k), vb = upload(*nb.backend, v);
      _cl_event* done = reinterpret_cast<_cl_event*>(1);
      expect_error<Unsupported>(
          [&] {
            s2.append(0, *kb, *vb, ElementType::f32, {{reinterpret_cast<_cl_event*>(8)}, nullptr});
          },
          "cannot wait for OpenCL events");
      s2.append(0, *kb, *vb, ElementType::f32, {{}, &done});
      EXPECT_EQ(done, nullptr);
    }
  }
}

#if KVARN_CL_WITH_OPENCL
// An engine's own queue writes the step's input after a user event fires; the step's append waits
// for the write's event, and the engine's read of the output waits for the attend's `done` event.
// Both queues are on the backend's context; without the events the append would read the buffer
// before the write (zeros) and the read would race the attention.
TEST(DecodeStep, OrdersWithTheCallersQueueThroughEvents) {
  for (const NamedBackend& nb : cache_test_backends()) {
    if (nb.backend->kind() != BackendKind::opencl) continue;
    Backend& be = *nb.backend;
    Pair p(step_config(nb.backend, 0), {50, 70, 140});
    const int S = 3;
    const auto k = kv_rows(S, kHk, kD, 41), v = kv_rows(S, kHk, kD, 42),
               q = kv_rows(S, kHq, kD, 43);
    auto kb = be.allocate(k.size() * 4), vb = be.allocate(v.size() * 4), qb = upload(be, q);
    auto ob = be.allocate(q.size() * 4);
    const std::vector<float> zeros(k.size(), 0.0f);
    be.write(*kb, 0, zeros.data(), zeros.size() * 4);
    cl_mem kmem = opencl_mem(*kb), vmem = opencl_mem(*vb), omem = opencl_mem(*ob);
    cl_context ctx = nullptr;
    ASSERT_EQ(CL_SUCCESS, clGetMemObjectInfo(kmem, CL_MEM_CONTEXT, sizeof ctx, &ctx, nullptr));
    cl_device_id dev = nullptr;
    ASSERT_EQ(CL_SUCCESS, clGetContextInfo(ctx, CL_CONTEXT_DEVICES, sizeof dev, &dev, nullptr));
    cl_int err = CL_SUCCESS;
    cl_command_queue engine = clCreateCommandQueue(ctx, dev, 0, &err);
    ASSERT_EQ(CL_SUCCESS, err);
    cl_event gate = clCreateUserEvent(ctx, &err);
    ASSERT_EQ(CL_SUCCESS, err);
    cl_event written[2] = {nullptr, nullptr};
    ASSERT_EQ(CL_SUCCESS, clEnqueueWriteBuffer(engine, kmem, CL_FALSE, 0, k.size() * 4, k.data(), 1,
                                               &gate, &written[0]));
    ASSERT_EQ(CL_SUCCESS, clEnqueueWriteBuffer(engine, vmem, CL_FALSE, 0, v.size() * 4, v.data(), 1,
                                               &gate, &written[1]));
    clFlush(engine);

    std::vector<float> want(q.size()), got(q.size(), -1.0f);
    DecodeStep st = p.stepped.begin_step(p.s_ids);
    cl_event appended = nullptr, attended = nullptr;
    st.append(0, *kb, *vb, ElementType::f32, {{written[0], written[1]}, &appended});
    ASSERT_NE(appended, nullptr);
    cl_int status = CL_COMPLETE;
    ASSERT_EQ(CL_SUCCESS, clGetEventInfo(appended, CL_EVENT_COMMAND_EXECUTION_STATUS, sizeof status,
                                         &status, nullptr));
    EXPECT_NE(status, CL_COMPLETE) << "the append ran before the engine's write it waits for";
    st.attend(0, kHq, *qb, *ob, ElementType::f32, 0.0f, {{}, &attended});
    ASSERT_EQ(CL_SUCCESS, clSetUserEventStatus(gate, CL_COMPLETE));
    cl_event read_done = nullptr;
    ASSERT_EQ(CL_SUCCESS, clEnqueueReadBuffer(engine, omem, CL_FALSE, 0, got.size() * 4, got.data(),
                                              1, &attended, &read_done));
    ASSERT_EQ(CL_SUCCESS, clWaitForEvents(1, &read_done));
    st.append(1, *kb, *vb, ElementType::f32);
    st.finish();

    p.plain.append(0, p.p_ids, {1, 1, 1}, k.data(), v.data());
    p.plain.attend(0, p.p_ids, kHq, q.data(), want.data());
    EXPECT_EQ(0, std::memcmp(want.data(), got.data(), want.size() * 4));
    for (cl_event e : {gate, written[0], written[1], appended, attended, read_done})
      clReleaseEvent(e);
    clReleaseCommandQueue(engine);
  }
}
#endif
