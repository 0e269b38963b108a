// The decode step through the C API: the same outputs and cache content as the plain C calls,
// device failures returned by kvarn_cl_step_finish with the step rolled back, argument errors as
// status codes naming the argument, and (OpenCL builds) the cl_mem/cl_event entry points.
#include <gtest/gtest.h>

#include <cmath>
#include <cstring>
#include <limits>
#include <string>
#include <vector>

#include "common/test_support.hpp"
#include "kvarn_cl/kvarn_cl.h"

#if KVARN_CL_WITH_OPENCL
#include <CL/cl.h>
#endif

namespace {

using kvarn_cl::test::gaussian_rows;

std::string last_error() { return kvarn_cl_last_error(); }

struct CCache {
  kvarn_cl_cache* cache = nullptr;
  std::vector<uint64_t> ids;
  CCache(kvarn_cl_backend* be, int seqs) {
    kvarn_cl_cache_config c;
    kvarn_cl_cache_config_init(&c);
    c.preset = KVARN_CL_K4V2_G64;
    c.head_dim = 64;
    c.num_layers = 2;
    c.num_kv_heads = 2;
    c.max_sequences = seqs;
    c.max_tokens_per_sequence = 512;
    EXPECT_EQ(kvarn_cl_cache_create(be, &c, &cache), KVARN_CL_OK) << last_error();
    for (int i = 0; i < seqs; ++i) {
      uint64_t id = 0;
      EXPECT_EQ(kvarn_cl_cache_add_sequence(cache, &id), KVARN_CL_OK);
      ids.push_back(id);
    }
  }
  ~CCache() { kvarn_cl_cache_destroy(cache); }
};

void run_steps(kvarn_cl_backend* be) {
  const int S = 2, Hk = 2, Hq = 4, D = 64;
  CCache plain(be, S), stepped(be, S);
  const std::vector<int> prefill = {70, 125};
  const auto k0 = gaussian_rows(std::size_t(195 * Hk), D, 5),
             v0 = gaussian_rows(std::size_t(195 * Hk), D, 6);
  for (CCache* c : {&plain, &stepped})
    for (int l = 0; l < 2; ++l)
      ASSERT_EQ(kvarn_cl_cache_append(c->cache, l, 2, c->ids.data(), prefill.data(), k0.data(),
                                      v0.data(), KVARN_CL_F32, 0),
                KVARN_CL_OK)
          << last_error();
  const int ones[2] = {1, 1};
  for (int step = 0; step < 6; ++step) {
    kvarn_cl_step* st = nullptr;
    ASSERT_EQ(kvarn_cl_cache_begin_step(stepped.cache, 2, stepped.ids.data(), &st), KVARN_CL_OK)
        << last_error();
    for (int l = 0; l < 2; ++l) {
      const auto k =
          gaussian_rows(std::size_t(S * Hk), D, 100u + 10u * unsigned(step) + unsigned(l));
      const auto v =
          gaussian_rows(std::size_t(S * Hk), D, 200u + 10u * unsigned(step) + unsigned(l));
      const auto q =
          gaussian_rows(std::size_t(S * Hq), D, 300u + 10u * unsigned(step) + unsigned(l));
      std::vector<float> want(q.size()), got(q.size());
      ASSERT_EQ(kvarn_cl_cache_append(plain.cache, l, 2, plain.ids.data(), ones, k.data(), v.data(),
                                      KVARN_CL_F32, 0),
                KVARN_CL_OK);
      ASSERT_EQ(kvarn_cl_cache_attend(plain.cache, l, 2, plain.ids.data(), Hq, q.data(),
                                      want.data(), KVARN_CL_F32, 0.0f, KVARN_CL_ATTEND_FUSED),
                KVARN_CL_OK);
      ASSERT_EQ(kvarn_cl_step_append(st, l, k.data(), v.data(), KVARN_CL_F32), KVARN_CL_OK)
          << last_error();
      ASSERT_EQ(kvarn_cl_step_attend(st, l, Hq, q.data(), got.data(), KVARN_CL_F32, 0.0f),
                KVARN_CL_OK)
          << last_error();
      EXPECT_EQ(0, std::memcmp(want.data(), got.data(), want.size() * 4))
          << "step " << step << " layer " << l;
      std::vector<uint16_t> half(q.size());
      ASSERT_EQ(kvarn_cl_step_attend(st, l, Hq, q.data(), half.data(), KVARN_CL_F16, 0.0f),
                KVARN_CL_OK);
      EXPECT_NEAR(kvarn_cl::half_to_float(half[5]), got[5], 2e-3f * (1.0f + std::fabs(got[5])));
    }
    ASSERT_EQ(kvarn_cl_step_finish(st), KVARN_CL_OK) << last_error();
  }
  int len = 0;
  ASSERT_EQ(kvarn_cl_cache_length(stepped.cache, stepped.ids[1], 1, &len), KVARN_CL_OK);
  EXPECT_EQ(len, 131);  // 125 + 6: the last steps completed a tile

  // A NaN key: finish returns the failure and the step is rolled back.
  kvarn_cl_step* st = nullptr;
  ASSERT_EQ(kvarn_cl_cache_begin_step(stepped.cache, 2, stepped.ids.data(), &st), KVARN_CL_OK);
  auto k = gaussian_rows(std::size_t(S * Hk), D, 1), v = gaussian_rows(std::size_t(S * Hk), D, 2);
  k[3] = std::numeric_limits<float>::infinity();
  for (int l = 0; l < 2; ++l)
    ASSERT_EQ(kvarn_cl_step_append(st, l, k.data(), v.data(), KVARN_CL_F32), KVARN_CL_OK);
  EXPECT_EQ(kvarn_cl_step_finish(st), KVARN_CL_NON_FINITE_INPUT);
  EXPECT_NE(last_error().find("key row of sequence " + std::to_string(stepped.ids[0])),
            std::string::npos)
      << last_error();
  ASSERT_EQ(kvarn_cl_cache_length(stepped.cache, stepped.ids[1], 1, &len), KVARN_CL_OK);
  EXPECT_EQ(len, 131);

  // Argument errors name the argument; an abandoned step is rolled back.
  EXPECT_EQ(kvarn_cl_cache_begin_step(stepped.cache, 2, nullptr, &st), KVARN_CL_INVALID_ARGUMENT);
  EXPECT_NE(last_error().find("seq_ids"), std::string::npos) << last_error();
  EXPECT_EQ(st, nullptr);
  ASSERT_EQ(kvarn_cl_cache_begin_step(stepped.cache, 2, stepped.ids.data(), &st), KVARN_CL_OK);
  EXPECT_EQ(kvarn_cl_step_append(st, 0, k.data(), v.data(), static_cast<kvarn_cl_element_type>(7)),
            KVARN_CL_INVALID_ARGUMENT);
  EXPECT_NE(last_error().find("elem_type 7"), std::string::npos) << last_error();
  EXPECT_EQ(kvarn_cl_cache_append(stepped.cache, 0, 2, stepped.ids.data(), ones, k.data(), v.data(),
                                  KVARN_CL_F32, 0),
            KVARN_CL_INVALID_ARGUMENT);
  EXPECT_NE(last_error().find("decode step is open"), std::string::npos) << last_error();
  EXPECT_EQ(kvarn_cl_step_append(st, 0, gaussian_rows(4, D, 9).data(), v.data(), KVARN_CL_F32),
            KVARN_CL_OK);
  kvarn_cl_step_abandon(st);
  ASSERT_EQ(kvarn_cl_cache_length(stepped.cache, stepped.ids[0], 0, &len), KVARN_CL_OK);
  EXPECT_EQ(len, 76);
  EXPECT_EQ(kvarn_cl_step_finish(nullptr), KVARN_CL_INVALID_ARGUMENT);
}

TEST(CApiStep, CpuBackend) {
  kvarn_cl_backend* be = nullptr;
  ASSERT_EQ(kvarn_cl_backend_create(KVARN_CL_BACKEND_CPU, 2, &be), KVARN_CL_OK);
  run_steps(be);
  kvarn_cl_backend_destroy(be);
}

#if KVARN_CL_WITH_OPENCL
// On an engine's own context and queue (kvarn_cl_backend_create_on_queue), with cl_mem inputs and
// events: the append waits for the engine's write, the engine's read waits for the attend.
TEST(CApiStep, OpenCLOnTheCallersQueueWithEvents) {
  cl_platform_id platform = nullptr;
  cl_device_id device = nullptr;
  cl_uint n = 0;
  if (clGetPlatformIDs(1, &platform, &n) != CL_SUCCESS || n == 0 ||
      clGetDeviceIDs(platform, CL_DEVICE_TYPE_ALL, 1, &device, &n) != CL_SUCCESS || n == 0)
    GTEST_SKIP() << "no OpenCL device";
  cl_int err = CL_SUCCESS;
  cl_context ctx = clCreateContext(nullptr, 1, &device, nullptr, nullptr, &err);
  ASSERT_EQ(err, CL_SUCCESS);
  cl_command_queue queue = clCreateCommandQueue(ctx, device, 0, &err);
  ASSERT_EQ(err, CL_SUCCESS);
  kvarn_cl_backend* be = nullptr;
  ASSERT_EQ(kvarn_cl_backend_create_on_queue(ctx, device, queue, &be), KVARN_CL_OK) << last_error();
  {
    const int S = 2, Hk = 2, Hq = 4, D = 64;
    CCache c(be, S), ref(be, S);
    const std::vector<int> prefill = {40, 80};
    const auto k0 = gaussian_rows(std::size_t(120 * Hk), D, 5),
               v0 = gaussian_rows(std::size_t(120 * Hk), D, 6);
    for (CCache* x : {&c, &ref})
      for (int l = 0; l < 2; ++l)
        ASSERT_EQ(kvarn_cl_cache_append(x->cache, l, 2, x->ids.data(), prefill.data(), k0.data(),
                                        v0.data(), KVARN_CL_F32, 0),
                  KVARN_CL_OK);
    const auto k = gaussian_rows(std::size_t(S * Hk), D, 11),
               v = gaussian_rows(std::size_t(S * Hk), D, 12);
    const auto q = gaussian_rows(std::size_t(S * Hq), D, 13);
    cl_mem kb = clCreateBuffer(ctx, CL_MEM_READ_WRITE, k.size() * 4, nullptr, &err);
    cl_mem vb = clCreateBuffer(ctx, CL_MEM_READ_WRITE, v.size() * 4, nullptr, &err);
    cl_mem qb = clCreateBuffer(ctx, CL_MEM_READ_WRITE | CL_MEM_COPY_HOST_PTR, q.size() * 4,
                               const_cast<float*>(q.data()), &err);
    cl_mem ob = clCreateBuffer(ctx, CL_MEM_READ_WRITE, q.size() * 4, nullptr, &err);
    ASSERT_EQ(err, CL_SUCCESS);
    cl_event gate = clCreateUserEvent(ctx, &err), written[2] = {nullptr, nullptr};
    // A second queue of the engine: its writes wait for the gate.
    cl_command_queue engine = clCreateCommandQueue(ctx, device, 0, &err);
    ASSERT_EQ(clEnqueueWriteBuffer(engine, kb, CL_FALSE, 0, k.size() * 4, k.data(), 1, &gate,
                                   &written[0]),
              CL_SUCCESS);
    ASSERT_EQ(clEnqueueWriteBuffer(engine, vb, CL_FALSE, 0, v.size() * 4, v.data(), 1, &gate,
                                   &written[1]),
              CL_SUCCESS);
    clFlush(engine);
    kvarn_cl_step* st = nullptr;
    ASSERT_EQ(kvarn_cl_cache_begin_step(c.cache, 2, c.ids.data(), &st), KVARN_CL_OK);
    cl_event appended = nullptr, attended = nullptr;
    ASSERT_EQ(kvarn_cl_step_append_cl(st, 0, kb, vb, KVARN_CL_F32, 2, written, &appended),
              KVARN_CL_OK)
        << last_error();
    ASSERT_EQ(kvarn_cl_step_attend_cl(st, 0, Hq, qb, ob, KVARN_CL_F32, 0.0f, 0, nullptr, &attended),
              KVARN_CL_OK)
        << last_error();
    clSetUserEventStatus(gate, CL_COMPLETE);
    std::vector<float> got(q.size()), want(q.size());
    ASSERT_EQ(clEnqueueReadBuffer(engine, ob, CL_TRUE, 0, got.size() * 4, got.data(), 1, &attended,
                                  nullptr),
              CL_SUCCESS);
    ASSERT_EQ(kvarn_cl_step_append_cl(st, 1, kb, vb, KVARN_CL_F32, 0, nullptr, nullptr),
              KVARN_CL_OK);
    ASSERT_EQ(kvarn_cl_step_finish(st), KVARN_CL_OK) << last_error();
    const int ones[2] = {1, 1};
    ASSERT_EQ(kvarn_cl_cache_append(ref.cache, 0, 2, ref.ids.data(), ones, k.data(), v.data(),
                                    KVARN_CL_F32, 0),
              KVARN_CL_OK);
    ASSERT_EQ(kvarn_cl_cache_attend(ref.cache, 0, 2, ref.ids.data(), Hq, q.data(), want.data(),
                                    KVARN_CL_F32, 0.0f, KVARN_CL_ATTEND_FUSED),
              KVARN_CL_OK);
    EXPECT_EQ(0, std::memcmp(want.data(), got.data(), want.size() * 4));
    for (cl_event e : {gate, written[0], written[1], appended, attended}) clReleaseEvent(e);
    for (cl_mem m : {kb, vb, qb, ob}) clReleaseMemObject(m);
    clReleaseCommandQueue(engine);
  }
  kvarn_cl_backend_destroy(be);
  clReleaseCommandQueue(queue);
  clReleaseContext(ctx);
}
#endif

}  // namespace
