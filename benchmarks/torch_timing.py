"""Timing helpers shared by benchmarks/torch_sdpa_bench.py and benchmarks/torch_model_step_bench.py.

Three ways to time a CUDA workload `fn` (a Python callable that enqueues GPU work), kept apart because
they answer different questions (../shared/GPU.md, "Compare like with like"):

per call      CUDA events around ONE call on an idle GPU, synchronized after each call. The GPU waits
              for the host between the events, so the host's launch cost (Python, dispatcher, driver)
              is inside the figure. It is what a caller that launches and waits one call at a time sees.
kernel only   a GPU-side wait (torch.cuda._sleep) is queued first, then the start event, N calls and the
              end event; the host enqueues everything while the GPU still sleeps, so the GPU runs the N
              calls back to back and (end - start) / N is GPU time alone, launch cost excluded. Checked:
              the start event must still be pending after the host has queued the last call ("covered");
              otherwise the sleep is lengthened (and N lowered) and the batch measured again.
              Comparable with OpenCL event-profiling times of our kernels.
CUDA graph    the calls captured once into a CUDA graph and replayed, the way engines run decode steps;
              replays are timed like kernel-only (queued behind a GPU-side sleep).

All times are microseconds. Nothing here needs a GPU to import.

Caveat shared with our own OpenCL benchmarks: repeated calls on the same K/V find part of it in the
GPU's L2 cache (50 MB on an H100) where K/V is small (1K-4K tokens at batch 1); the model-step
benchmark gives every layer its own cache, as a model has.
"""
import datetime
import shutil
import statistics
import subprocess
import time

MAX_SLEEP_US = 2_000_000.0


def now_utc() -> str:
    return datetime.datetime.now(datetime.timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ")


def driver_version() -> str:
    """NVIDIA driver version from nvidia-smi, or '?' where it is not available."""
    if not shutil.which("nvidia-smi"):
        return "?"
    try:
        r = subprocess.run(["nvidia-smi", "--query-gpu=driver_version", "--format=csv,noheader"],
                           capture_output=True, text=True, timeout=20)
        return r.stdout.strip().splitlines()[0] if r.returncode == 0 and r.stdout.strip() else "?"
    except Exception:  # noqa: BLE001 - a missing driver version must not stop a benchmark
        return "?"


class CudaTimer:
    """Times callables on the current CUDA device three ways (see the module's doc)."""

    def __init__(self, torch):
        self.torch = torch
        self.has_sleep = hasattr(torch.cuda, "_sleep")
        self.cycles_per_us = self._calibrate_sleep() if self.has_sleep else None

    def _event(self):
        return self.torch.cuda.Event(enable_timing=True)

    def _calibrate_sleep(self) -> float:
        """GPU clock cycles of torch.cuda._sleep per microsecond, measured with events."""
        torch = self.torch
        torch.cuda._sleep(1000)
        torch.cuda.synchronize()
        rates = []
        for cycles in (2_000_000, 4_000_000, 4_000_000):
            a, b = self._event(), self._event()
            a.record()
            torch.cuda._sleep(cycles)
            b.record()
            b.synchronize()
            rates.append(cycles / (a.elapsed_time(b) * 1e3))
        return max(100.0, statistics.median(rates))

    def sleep_us(self, us: float) -> None:
        self.torch.cuda._sleep(int(us * self.cycles_per_us))

    def per_call(self, fn, n: int = 50) -> float:
        """Median over n of CUDA events around one call, GPU idle before each (launch cost included)."""
        torch = self.torch
        torch.cuda.synchronize()
        times = []
        for _ in range(n):
            a, b = self._event(), self._event()
            a.record()
            fn()
            b.record()
            b.synchronize()
            times.append(a.elapsed_time(b) * 1e3)
        return statistics.median(times)

    def wall(self, fn, n: int = 20) -> float:
        """Median over n of host wall time of fn() followed by torch.cuda.synchronize()."""
        torch = self.torch
        torch.cuda.synchronize()
        times = []
        for _ in range(n):
            t0 = time.perf_counter()
            fn()
            torch.cuda.synchronize()
            times.append((time.perf_counter() - t0) * 1e6)
        return statistics.median(times)

    def queued(self, fn, n: int, reps: int = 5, host_us_per_call: float = 100.0):
        """Kernel-only time per call: n calls queued behind a GPU-side sleep, events around the n calls.

        Returns (median over reps of time / n in µs, dict of how it was measured) or (None, dict) when no
        repetition was covered (the GPU reached the start event before the host had queued every call).
        host_us_per_call is a first guess of the host's enqueue time per call; it is replaced by the
        measured enqueue time after the first repetition."""
        torch = self.torch
        info = {"calls_per_batch": n, "reps": 0, "uncovered_reps": 0, "sleep_us": None}
        if not self.has_sleep:
            info["error"] = "torch.cuda._sleep not available"
            return None, info
        torch.cuda.synchronize()
        results = []
        enqueue_per_call = []
        host_us = host_us_per_call * n
        tries = 0
        while len(results) < reps and tries < reps + 6:
            tries += 1
            # Twice the host's enqueue time of the batch, at most 2 s (a call that blocks the host,
            # e.g. one that synchronizes, can never be covered: give up rather than sleep for ever).
            sleep = min(2.0 * host_us + 2000.0, MAX_SLEEP_US)
            a, b = self._event(), self._event()
            t0 = time.perf_counter()
            self.sleep_us(sleep)
            a.record()
            for _ in range(n):
                fn()
            b.record()
            enqueue_us = (time.perf_counter() - t0) * 1e6
            covered = not a.query()  # start event still pending: the GPU was asleep until all were queued
            b.synchronize()
            host_us = max(host_us, enqueue_us)
            enqueue_per_call.append(enqueue_us / n)
            info["sleep_us"] = round(sleep, 1)
            if covered:
                results.append(a.elapsed_time(b) * 1e3 / n)
            else:
                info["uncovered_reps"] += 1
                if sleep >= MAX_SLEEP_US and n == 1:
                    break
                # Either the sleep was short (host_us has grown now) or the launch queue filled up
                # and blocked the host: queue fewer calls.
                if info["uncovered_reps"] >= 2 and n > 1:
                    n = max(1, n // 2)
                    info["calls_per_batch"] = n
        info["reps"] = len(results)
        # Measured host time to enqueue one call (sleep launch included, spread over the calls).
        info["host_enqueue_us_per_call"] = round(statistics.median(enqueue_per_call), 2) if enqueue_per_call else None
        return (statistics.median(results) if results else None), info

    def graph(self, fn, calls_in_graph: int, replays: int = 5, reps: int = 5):
        """Time per call of a CUDA graph holding calls_in_graph calls of fn, replayed behind a GPU-side
        sleep (replays graph launches per timed batch, median of reps batches). Also the host wall
        time of one replay + synchronize. Returns (graph_us_per_call, wall_us_per_replay, info); the
        times are None (and info['error'] says why) where capture fails."""
        torch = self.torch
        info = {"calls_in_graph": calls_in_graph, "replays_per_batch": replays}
        g = None
        try:
            s = torch.cuda.Stream()
            s.wait_stream(torch.cuda.current_stream())
            with torch.cuda.stream(s):  # warm-up on a side stream, as torch.cuda.graphs recommends
                for _ in range(3):
                    fn()
            torch.cuda.current_stream().wait_stream(s)
            torch.cuda.synchronize()
            g = torch.cuda.CUDAGraph()
            with torch.cuda.graph(g):
                for _ in range(calls_in_graph):
                    fn()
            g.replay()
            torch.cuda.synchronize()
            wall = self.wall(g.replay, n=max(5, reps * 2))
            times = []
            for _ in range(reps):
                a, b = self._event(), self._event()
                if self.has_sleep:
                    self.sleep_us(500.0 + 50.0 * replays)
                a.record()
                for _ in range(replays):
                    g.replay()
                b.record()
                b.synchronize()
                times.append(a.elapsed_time(b) * 1e3 / (replays * calls_in_graph))
            info["queued_behind_sleep"] = self.has_sleep
            return statistics.median(times), wall, info
        except Exception as e:  # noqa: BLE001 - report, do not stop the whole benchmark
            info["error"] = (f"{type(e).__name__}: {e}".splitlines() or ["?"])[0][:300]
            try:
                torch.cuda.synchronize()
            except Exception:  # noqa: BLE001
                pass
            return None, None, info
        finally:
            if g is not None:
                try:
                    g.reset()
                except Exception:  # noqa: BLE001
                    pass
            del g
