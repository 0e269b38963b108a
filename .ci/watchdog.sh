#!/usr/bin/env bash
# .ci/watchdog.sh LIMIT COMMAND...: runs COMMAND and returns its exit status; if it is still
# running after LIMIT seconds, prints what every thread of it and of every process it started is
# doing (the kernel wait channel, and the stack where gdb is installed and may attach), kills them
# all and returns 124, as timeout(1) does.
#
# Why: a command that hangs in CI otherwise sits until CI's 90 minutes run out, and the log then
# says nothing about where (2026-12-07: test_opencl on Intel's OpenCL runtime, docs/PORTABILITY.md).
# CI gives each command that runs outside ctest (whose --timeout covers its tests) a limit of a
# few times its time on the 2-core dev VM. Needs pgrep (procps) and, for the stacks, gdb: CI
# installs both.
set -uo pipefail
limit=${1:?usage: .ci/watchdog.sh LIMIT_SECONDS COMMAND...}
shift

# Process $1 and its descendants, parents first.
tree() {
  local child
  echo "$1"
  for child in $(pgrep -P "$1"); do tree "$child"; done
}

# What each thread of process $1 is doing.
stacks() {
  local pid=$1 t
  echo "--- process $pid: $(tr '\0' ' ' < /proc/"$pid"/cmdline 2> /dev/null | cut -c1-200)"
  for t in /proc/"$pid"/task/*; do
    echo "thread ${t##*/} ($(cat "$t/comm" 2> /dev/null)):" \
         "waiting in $(cat "$t/wchan" 2> /dev/null)"
  done
  if command -v gdb > /dev/null; then
    timeout 120 gdb -batch -nx -p "$pid" -ex 'thread apply all bt 40' 2>&1 |
      grep -E '^(Thread |#)' | head -n 400
  fi
}

"$@" &
pid=$!
(
  # Polls rather than sleeping LIMIT seconds at once, so that this subshell ends within a second
  # of the command and leaves no sleeping child holding CI's output open. Exit status 3: it killed.
  waited=0
  while kill -0 "$pid" 2> /dev/null; do
    if [ "$waited" -ge "$limit" ]; then
      echo "watchdog: '$*' still running after ${limit} s: hung; its processes and threads:" >&2
      procs=$(tree "$pid")
      for p in $procs; do stacks "$p" >&2; done
      # Their children listed anew too: one may have started another since the listing.
      kill -KILL $procs $(for p in $procs; do pgrep -P "$p"; done) 2> /dev/null
      exit 3
    fi
    sleep 1
    waited=$((waited + 1))
  done
  exit 0
) &
watcher=$!
wait "$pid"
rc=$?
wait "$watcher"
if [ $? -eq 3 ]; then
  echo "watchdog: '$*' was killed after ${limit} s" >&2
  exit 124
fi
exit "$rc"
