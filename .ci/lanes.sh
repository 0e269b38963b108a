#!/usr/bin/env bash
# .ci/lanes.sh LOG_DIR LANE...: runs each LANE (a bash command line, run with -euo pipefail, so
# a lane stops at its first failing command) side by side, one process per lane, with its output
# in LOG_DIR/lane<N>.log; when all have ended, prints each lane's log in order and fails if any
# lane failed, naming it.
#
# Why: CI's machine has 2 cores, and the suites that run one process at a time (a test binary on
# Intel's runtime or under a device-limit profile on PoCL) spend most of their time in a vendor's
# single-threaded kernel compiler, so two lanes take about half the time of one (measured on the
# 2-core dev VM, .ci/run says where). Each command in a lane keeps its own watchdog, so a hang
# still fails in minutes with its stacks in that lane's log.
set -uo pipefail
logs=${1:?usage: .ci/lanes.sh LOG_DIR LANE...}
shift
mkdir -p "$logs"
pids=()
n=0
lanes=("$@")
for lane in "${lanes[@]}"; do
  n=$((n + 1))
  bash -c "set -euo pipefail; $lane" > "$logs/lane$n.log" 2>&1 &
  pids+=($!)
done
fail=0
n=0
for pid in "${pids[@]}"; do
  wait "$pid"
  rc=$?
  lane=${lanes[n]}
  n=$((n + 1))
  echo "--- lane $n (exit $rc): ${lane:0:300}"
  cat "$logs/lane$n.log"
  if [ "$rc" != 0 ]; then
    echo "lanes.sh: lane $n failed with exit status $rc" >&2
    fail=1
  fi
done
exit $fail
