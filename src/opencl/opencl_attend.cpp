// Decode attention on the OpenCL device: the fused path straight from the records (SPEC §4) and
// plain fp16 attention (baseline / materialize path). Each call launches, for the whole batch of
// one layer, the split kernel (one work-group per context split, KV head, block of query heads and
// sequence). With one split it stores the output itself (normalized, rotated back, f32 or f16);
// with more, the log-sum-exp merge of the splits runs in the same launch (the last split of each
// group's rows) or, where that group's share would be long, as a second launch
// (attention_program.hpp, AttendMerge).
// The fused kernel: kernels/attention_mma.cl on devices with matrix units (nvidia_mma_sync.hpp),
// else kernels/attention.cl, or kernels/attention_short.cl where few tiles per compute unit make
// the launch latency-bound.
//
// Index data (seq_info, block tables, seq_lens) is validated before the launch, as the CPU backend
// does: a bad slot, length or block id is an InvalidArgument naming the batch entry, never an
// out-of-bounds device read. It is read from the caller's host copies when given (the cache's
// decode path: no device round trip), else read back from the buffers.
#include <algorithm>
#include <string>
#include <utility>
#include <vector>

#include "kvarn_cl/error.hpp"
#include "opencl/attention_program.hpp"
#include "opencl/cl_error.hpp"
#include "opencl/opencl_backend.hpp"

namespace kvarn_cl::opencl {

cl::Buffer& OpenCLBackend::attend_workspace(std::size_t bytes) {
  if (bytes > attend_ws_bytes_) {
    attend_ws_ = cl_call(
        "attend: allocating " + std::to_string(bytes) + " bytes of split partials",
        [&] { return cl::Buffer(context(), CL_MEM_READ_WRITE, bytes); }, ClContext::allocation);
    attend_ws_bytes_ = bytes;
  }
  return attend_ws_;
}

cl::Buffer& OpenCLBackend::attend_tickets(std::size_t count) {
  if (count > attend_tickets_count_) {
    const std::size_t bytes = count * sizeof(cl_int);
    attend_tickets_ = cl_call(
        "attend: allocating " + std::to_string(bytes) + " bytes of merge tickets",
        [&] { return cl::Buffer(context(), CL_MEM_READ_WRITE, bytes); }, ClContext::allocation);
    // Zero once, in queue order before the first launch that uses them; the kernels leave every
    // ticket at zero again (the last split of a group resets its own).
    const cl_int zero = 0;
    cl_call("attend: zeroing the merge tickets",
            [&] { queue_.enqueueFillBuffer(attend_tickets_, zero, 0, bytes); });
    attend_tickets_count_ = count;
  }
  return attend_tickets_;
}

OpenCLBackend::AttendPrograms OpenCLBackend::make_attend_programs(Program program,
                                                                  std::size_t split_index,
                                                                  const ProgramArgs& args,
                                                                  bool legacy_direct,
                                                                  const char* call) {
  const ProgramSpec spec = program_spec(program, args, *runtime_);
  const std::vector<KernelDef>& kernels = program_def(program).kernels;
  std::size_t merge_index = 0;
  while (merge_index < kernels.size() && kernels[merge_index].name != "kvarn_attend_merge")
    ++merge_index;
  cl::Kernel& split = kernel(spec, kernels.at(split_index).name);
  cl::Kernel& merge = kernel(spec, kernels.at(merge_index).name);
  std::string what = std::string(call) + ": launching " + kernels.at(split_index).name;
  const cl_uint num_args = cl_call(what + ": reading the argument count of the split kernel",
                                   [&] { return split.getInfo<CL_KERNEL_NUM_ARGS>(); });
  return {&split,
          &merge,
          kernel_work_group(program, split_index, args, caps()),
          kernel_work_group(program, merge_index, args, caps()),
          args.heads_per_group,
          legacy_direct,
          num_args - 6,
          std::move(what)};
}

void OpenCLBackend::launch_attend(const AttendPrograms& p, std::size_t groups_y, std::size_t S,
                                  int splits, std::size_t rows, int head_dim, bool rotate_back,
                                  ElementType out_type, Buffer& out) {
  const char* what = p.what.c_str();
  // How the launch ends (attention_program.hpp, AttendMerge): one split stores the output from the
  // split kernel; more splits merge in the kernel (the last split of each group's rows) or in a
  // second launch. AttendMerge::legacy reproduces the path before the one-launch change.
  AttendMerge mode = attend_merge_override_;
  if (mode == AttendMerge::automatic)
    mode = attend_merges_in_kernel(splits) ? AttendMerge::in_kernel : AttendMerge::separate_launch;
  const bool direct = mode == AttendMerge::legacy ? splits == 1 && p.legacy_direct : splits == 1;
  const bool merge_launch = !direct && mode != AttendMerge::in_kernel;
  const bool merge_here = !direct && mode == AttendMerge::in_kernel;
  // The kernels' `finish` argument (kernels/attention_merge.cl AT_FINISH_*).
  const cl_int finish = direct ? 2 : merge_here ? 1 : 0;
  const std::size_t parts = rows * std::size_t(splits);
  cl::Buffer& ws = attend_workspace(direct ? sizeof(float)
                                           : parts * (2 + std::size_t(head_dim)) * sizeof(float));
  cl::Buffer& tickets = attend_tickets(merge_here ? groups_y * S : 1);
  cl::Kernel& split = *p.split;
  const cl_int out_f16 = out_type == ElementType::f16 ? 1 : 0;
  cl_call(what, [&] {
    cl_uint arg = p.first_output_arg;
    split.setArg(arg++, out_f16);
    split.setArg(arg++, cl_buffer(out, "out"));
    split.setArg(arg++, ws);
    split.setArg(arg++, cl_ulong(parts));
    split.setArg(arg++, tickets);
    split.setArg(arg, finish);
    if (merge_launch) {
      p.merge->setArg(0, ws);
      p.merge->setArg(1, cl_ulong(parts));
      p.merge->setArg(2, cl_int(splits));
      p.merge->setArg(3, cl_int(rotate_back ? 1 : 0));
      p.merge->setArg(4, out_f16);
      p.merge->setArg(5, cl_buffer(out, "out"));
    }
  });
  launch(split, cl::NDRange(std::size_t(splits) * p.work_group, groups_y, S),
         cl::NDRange(p.work_group, 1, 1), what);
  attend_split_event_ = last_event_;
  if (merge_launch)
    launch(*p.merge, cl::NDRange(p.merge_work_group, rows), cl::NDRange(p.merge_work_group, 1),
           what);
  last_attend_splits_ = splits;
  last_attend_merge_ = direct       ? AttendMerge::automatic
                       : merge_here ? AttendMerge::in_kernel
                                    : AttendMerge::separate_launch;
}

AttendKernel OpenCLBackend::attend_kernel_for(const CodecParams& params,
                                              std::size_t groups_portable, int max_units,
                                              int hpw_portable) {
  if (attend_kernel_override_ != AttendKernel::automatic) return attend_kernel_override_;
  // A kernel that needs a capability is chosen where the device has it (attention_program.hpp).
  if (runtime_->nvidia_mma_sync().available) return AttendKernel::nvidia_mma_sync;
  // Few tiles per compute unit: the short-context kernel (all 128 items of a group on one tile);
  // otherwise attention.cl's tile slots (attention_program.hpp says where the crossover is),
  // where they fit the device's local memory (not k2v2 at D 256 below 18 KiB).
  return attend_prefers_short_kernel(groups_portable, max_units, hpw_portable,
                                     caps().compute_units) ||
                 !attend_tile_slots_fit(params, caps())
             ? AttendKernel::short_context
             : AttendKernel::tile_slots;
}

OpenCLBackend::AttendPrograms& OpenCLBackend::attend_programs(AttendKernel kind,
                                                              const CodecParams& params, int hpw,
                                                              bool accumulators_local) {
  // Looked up by a small key on every call; the program spec (option strings) is made only once.
  const AttendProgramKey key{int(kind), int(params.preset), params.head_dim, hpw,
                             accumulators_local ? 1 : 0};
  auto it = attend_programs_.find(key);
  if (it != attend_programs_.end()) return it->second;
  const AttendDescriptor& d = attend_descriptor(kind);
  ProgramArgs args;
  args.params = params;
  args.heads_per_group = hpw;
  args.accumulators_local = accumulators_local;
  return attend_programs_
      .emplace(key, make_attend_programs(d.program, d.split_kernel, args,
                                         attend_legacy_direct_store(kind), "attend"))
      .first->second;
}

OpenCLBackend::AttendPrograms& OpenCLBackend::attend_fp16_programs(int head_dim, int hpw) {
  const std::array<int, 2> key{head_dim, hpw};
  auto it = attend_fp16_programs_.find(key);
  if (it != attend_fp16_programs_.end()) return it->second;
  ProgramArgs args;
  args.params.head_dim = head_dim;
  args.heads_per_group = hpw;
  return attend_fp16_programs_
      .emplace(key, make_attend_programs(Program::attend_fp16, 0, args, false, "attend_fp16"))
      .first->second;
}

void OpenCLBackend::attend(const AttendArgs& a) {
  const std::lock_guard<std::recursive_mutex> lock(call_mutex_);  // see opencl_backend.hpp
  const AttendPools pools = check_attend(a);
  const RecordLayout L = RecordLayout::make(a.params);
  const std::size_t S = std::size_t(a.num_seqs);
  const std::size_t Hq = std::size_t(a.num_q_heads), Hk = std::size_t(a.num_kv_heads);
  if (S == 0) return;

  // Validate the index data (src/backend_api/checks.hpp, as the CPU backend) and size the launch from
  // it: from the caller's host copies when given, else read back (a blocking round trip).
  const SeqInfo* info = a.host_seq_info;
  const std::int32_t* tables = a.host_block_tables;
  if (info == nullptr) {
    attend_info_rb_.resize(S);
    attend_tables_rb_.resize(S * std::size_t(a.max_blocks));
    read(*a.seq_info, 0, attend_info_rb_.data(), attend_info_rb_.size() * sizeof(SeqInfo));
    if (!attend_tables_rb_.empty())
      read(*a.block_tables, 0, attend_tables_rb_.data(), attend_tables_rb_.size() * 4);
    info = attend_info_rb_.data();
    tables = attend_tables_rb_.data();
  }
  const int max_units = check_attend_indices(pools, a.num_seqs, info, tables, L.group);

  const int R = a.num_q_heads / a.num_kv_heads;
  const int hpw_portable = attend_heads_per_group(R);
  const AttendKernel kind =
      attend_kernel_for(a.params, S * Hk * std::size_t(R / hpw_portable), max_units, hpw_portable);
  const AttendDescriptor& desc = attend_descriptor(kind);
  const int hpw = desc.heads_per_group(R);
  const std::size_t groups = S * Hk * std::size_t(R / hpw);
  int splits = attend_splits_override_ > 0 ? attend_splits_override_
                                           : desc.splits(a.params, groups, max_units, caps());
  splits = std::max(1, std::min(splits, std::max(1, max_units)));

  // attention.cl's V accumulators: local memory for long splits, where they fit (per launch,
  // attention_program.hpp); the key then names the build that really runs.
  bool accumulators_local = false;
  if (kind == AttendKernel::tile_slots) {
    const TileSlotAccumulators where =
        tile_slot_accumulators_override_ != TileSlotAccumulators::automatic
            ? tile_slot_accumulators_override_
        : attend_tile_slots_prefers_local_accumulators(attend_tile_slots_steps_per_split(
              max_units, splits, attend_units_per_step(a.params, caps())))
            ? TileSlotAccumulators::local
            : TileSlotAccumulators::registers;
    ProgramArgs asked;
    asked.params = a.params;
    asked.heads_per_group = hpw;
    asked.accumulators_local = where == TileSlotAccumulators::local;
    accumulators_local = attend_tile_slots_accumulators_local(asked, caps());
    last_tile_slot_accumulators_ =
        accumulators_local ? TileSlotAccumulators::local : TileSlotAccumulators::registers;
  }
  AttendPrograms& prog = attend_programs(kind, a.params, hpw, accumulators_local);
  cl::Kernel& k = *prog.split;
  cl_call("attend: setting kernel arguments", [&] {
    k.setArg(0, cl_buffer(*a.q, "attend: q"));
    k.setArg(1, cl_buffer(*a.records, "attend: records"));
    k.setArg(2, cl_buffer(*a.block_tables, "attend: block_tables"));
    k.setArg(3, cl_int(a.max_blocks));
    k.setArg(4, cl_buffer(*a.sink, "attend: sink"));
    k.setArg(5, cl_buffer(*a.tail, "attend: tail"));
    k.setArg(6, cl_buffer(*a.sink_v, "attend: sink_v"));
    k.setArg(7, cl_buffer(*a.tail_v, "attend: tail_v"));
    k.setArg(8, cl_int(a.sink_capacity));
    k.setArg(9, cl_int(a.tail_capacity));
    k.setArg(10, cl_buffer(*a.seq_info, "attend: seq_info"));
    k.setArg(11, cl_int(a.num_kv_heads));
    k.setArg(12, cl_int(R));
    k.setArg(13, cl_int(splits));
    k.setArg(14, cl_float(a.scale));
  });
  last_attend_kernel_ = kind;
  launch_attend(prog, Hk * std::size_t(R / hpw), S, splits, S * Hq, L.head_dim, true, a.out_type,
                *a.out);
}

void OpenCLBackend::attend_fp16(const AttendFp16Args& a) {
  const std::lock_guard<std::recursive_mutex> lock(call_mutex_);  // see opencl_backend.hpp
  check_attend_fp16(a);
  const std::size_t S = std::size_t(a.num_seqs);
  const std::size_t Hq = std::size_t(a.num_q_heads), Hk = std::size_t(a.num_kv_heads);
  if (S == 0) return;

  const std::int32_t* lens = a.host_seq_lens;
  if (lens == nullptr) {
    attend_tables_rb_.resize(S);
    read(*a.seq_lens, 0, attend_tables_rb_.data(), S * 4);
    lens = attend_tables_rb_.data();
  }
  constexpr int kUnit = 128;  // rows per unit (the fp16 program: KV_G of its geometry)
  const int max_units = (check_seq_lens(a.num_seqs, lens, a.capacity) + kUnit - 1) / kUnit;

  const int R = a.num_q_heads / a.num_kv_heads;
  const int hpw = attend_fp16_heads_per_group(R, a.head_dim);
  const std::size_t groups = S * Hk * std::size_t(R / hpw);
  int splits = attend_splits_override_ > 0
                   ? attend_splits_override_
                   : attend_fp16_splits(groups, max_units, caps().compute_units);
  splits = std::max(1, std::min(splits, std::max(1, max_units)));
  const bool rotated = a.kv_frame == Frame::rotated;

  AttendPrograms& prog = attend_fp16_programs(a.head_dim, hpw);
  cl::Kernel& k = *prog.split;
  cl_call("attend_fp16: setting kernel arguments", [&] {
    k.setArg(0, cl_buffer(*a.q, "attend_fp16: q"));
    k.setArg(1, cl_buffer(*a.k, "attend_fp16: k"));
    k.setArg(2, cl_buffer(*a.v, "attend_fp16: v"));
    k.setArg(3, cl_int(a.capacity));
    k.setArg(4, cl_buffer(*a.seq_lens, "attend_fp16: seq_lens"));
    k.setArg(5, cl_int(a.num_kv_heads));
    k.setArg(6, cl_int(R));
    k.setArg(7, cl_int(splits));
    k.setArg(8, cl_float(a.scale));
    k.setArg(9, cl_int(rotated ? 1 : 0));
  });
  launch_attend(prog, Hk * std::size_t(R / hpw), S, splits, S * Hq, a.head_dim, rotated, a.out_type,
                *a.out);
}

}  // namespace kvarn_cl::opencl
