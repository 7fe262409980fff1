"""Benchmark a whole rollout against the local Vast and Slack sandboxes at several group sizes.

For each size it starts the Vast sandbox and the Slack sandbox in this process. The Vast sandbox
has one endpoint with one worker group of N workers, a tenth of them inactive, and updates N // 4
workers at a time. The real bot (`python -m bot run`, HTTP mode) runs as a child process. Alice
proposes a new MODEL_NAME, bob approves it, and the run waits until the rollout completes. It
measures from outside the bot only:

- Vast calls per poll: calls on the bot's Vast routes from the approval to the end, divided by
  the worker-list calls (`POST /get_workergroup_workers/`), read from the sandbox's counters;
- Slack calls per rollout: Web API calls recorded by the Slack sandbox from the approval on;
- CPU seconds per poll cycle: the bot's utime + stime (/proc/PID/stat) over the rollout, minus
  the rate measured while the bot sat idle before the proposal, divided by the worker-list calls;
- reporting delay: for each worker, the wall time from its last change to IDLE in the sandbox to
  the first thread reply that names it as rejoined, and to the first edit of the proposal
  message whose progress count includes it;
- peak RSS: VmHWM from /proc/PID/status when the rollout is over.

Run it from the repository root with the project's virtual environment:

    .venv/bin/python bench/rollout_bench.py --workers 10 100 1000 --poll-seconds 2 --speed 5

The simulated clock runs `--speed` times faster than the wall clock, so a poll every
`--poll-seconds` sees the changes of `speed * poll_seconds` simulated seconds. With the defaults
(5 and 2 s) that is 10 s, as many changes as the bot's default 10 s poll sees against the real Vast.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import re
import shutil
import signal
import statistics
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import bot as bot_package
from sandbox.demo import BOT_TOKEN, CHANNEL, SIGNING_SECRET, VAST_KEY, bot_environment, free_port, wait_healthy
from sandbox.slack_client import SlackDriver
from sandbox.slack_server import SlackSandbox
from sandbox.vast_server import VastSandbox

OLD_MODEL = "Qwen/Qwen3-8B"
NEW_MODEL = "Qwen/Qwen3-14B"
WORKER_LIST_ROUTE = "POST /get_workergroup_workers/"
CLOCK_TICKS = os.sysconf("SC_CLK_TCK")
SAMPLE_SECONDS = 0.2
# After the completion message, the run ends once Slack has seen no call for this long.
QUIET_SECONDS = 2.0
STARTUP_SETTLE_SECONDS = 2.0

# Targets from the project's performance requirement. The CPU target is 5% of the poll interval.
CPU_SHARE_TARGET = 0.05
DELAY_SLACK_SECONDS = 1.0
RSS_TARGET_MB = 150.0
# Slack calls that do not come from polls: the step 1 and step 2 replies, the completion reply,
# and the edits of the proposal message when the rollout starts, reaches step 2 and completes.
FIXED_SLACK_CALLS = 6
# Each poll sends at most one thread reply and one edit of the proposal message.
SLACK_CALLS_PER_POLL = 2

_REJOINED = re.compile(r"worker (\d+) rejoined")
_PROGRESS = re.compile(r"\*(\d+)/(\d+)\* on the new configuration")


# Reading the bot process ----------------------------------------------------------------------


def process_cpu_seconds(pid: int) -> float:
    """Return utime + stime of a process in seconds, from /proc/PID/stat."""
    text = Path(f"/proc/{pid}/stat").read_text()
    # The command name in field 2 may contain spaces, so split after its closing parenthesis.
    fields = text.rsplit(")", 1)[1].split()
    utime, stime = int(fields[11]), int(fields[12])
    return (utime + stime) / CLOCK_TICKS


def process_memory_mb(pid: int) -> dict[str, float]:
    """Return VmHWM (peak RSS) and VmRSS of a process in MB (10^6 bytes), from /proc/PID/status."""
    values = {}
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        name, _, rest = line.partition(":")
        if name in ("VmHWM", "VmRSS"):
            values[name] = int(rest.split()[0]) * 1024 / 1e6
    return {"peak_rss_mb": values["VmHWM"], "rss_mb": values["VmRSS"]}


def system_cpu_jiffies() -> tuple[int, int]:
    """Return (busy, total) jiffies of all cores, from the first line of /proc/stat."""
    numbers = [int(value) for value in Path("/proc/stat").read_text().splitlines()[0].split()[1:]]
    idle = numbers[3] + numbers[4]
    total = sum(numbers[:8])
    return total - idle, total


def load_average() -> list[float]:
    return [float(value) for value in Path("/proc/loadavg").read_text().split()[:3]]


def machine_info() -> dict[str, Any]:
    model = ""
    for line in Path("/proc/cpuinfo").read_text().splitlines():
        if line.startswith("model name"):
            model = line.split(":", 1)[1].strip()
            break
    return {
        "nproc": os.cpu_count(),
        "cpu_model": model,
        "python": platform.python_version(),
        "platform": platform.platform(),
        "memory_gb": os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES") / 1e9,
    }


def source_info() -> dict[str, Any]:
    """Return where the bot and sandbox code came from: its folder, git commit and uncommitted files."""
    root = Path(bot_package.__file__).resolve().parent.parent
    info: dict[str, Any] = {"path": str(root), "commit": None, "uncommitted": None}
    try:
        info["commit"] = git(root, "rev-parse", "HEAD")
        changed = git(root, "status", "--porcelain", "--", "bot", "handlers", "sandbox")
        info["uncommitted"] = changed.splitlines()
    except (OSError, subprocess.CalledProcessError):
        pass  # not a git checkout, so the commit stays unknown
    return info


def git(root: Path, *arguments: str) -> str:
    return subprocess.run(
        ["git", "-C", str(root), *arguments], capture_output=True, text=True, check=True
    ).stdout.strip()


# One run --------------------------------------------------------------------------------------


@dataclass
class Recording:
    """Raw observations of one run, taken before the sandboxes stop. `metrics` derives the results."""

    workers: int
    started_at: float = 0.0
    completed_at: float | None = None
    ended_at: float = 0.0
    idle_cpu_per_second: float = 0.0
    cpu_start: float = 0.0
    cpu_end: float = 0.0
    samples: list[tuple[float, float]] = field(default_factory=list)
    vast_calls: dict[str, int] = field(default_factory=dict)
    slack_calls: list[dict[str, Any]] = field(default_factory=list)
    rejoin_events: dict[int, float] = field(default_factory=dict)
    parent_ts: str = ""
    memory: dict[str, float] = field(default_factory=dict)
    memory_before: dict[str, float] = field(default_factory=dict)
    system_busy_share: float = 0.0
    bench_cpu_seconds: float = 0.0
    load_before: list[float] = field(default_factory=list)
    load_after: list[float] = field(default_factory=list)
    simulated_seconds: float = 0.0
    poll_log_lines: int = 0
    log_warnings: list[str] = field(default_factory=list)
    error: str = ""


def calls_snapshot(vast: VastSandbox) -> dict[str, int]:
    with vast.world.lock:
        return dict(vast.world.counters["calls"])


def run_size(workers: int, args: argparse.Namespace) -> Recording:
    """Run one rollout of `workers` workers and record what the sandboxes and /proc show."""
    recording = Recording(workers=workers)
    workdir = Path(tempfile.mkdtemp(prefix=f"rollcall-bench-{workers}-"))
    vast = VastSandbox(api_key=VAST_KEY, speed=args.speed, seed=7).start()
    slack = SlackSandbox(bot_token=BOT_TOKEN).start()
    endpoint_name = f"bench-{workers}"
    add_endpoint(vast, endpoint_name, workers)

    port = free_port()
    log_path = workdir / "bot.log"
    bot = start_bot(vast, slack, workdir, port, log_path, args)
    print(f"[{workers} workers] bot pid {bot.pid}, log {log_path}", flush=True)
    sampler = None
    try:
        wait_healthy(f"http://127.0.0.1:{port}/healthz", bot)
        if args.py_spy_dir:
            sampler = start_py_spy(bot.pid, Path(args.py_spy_dir) / f"bot-{workers}.txt")
        with SlackDriver(
            bot_url=f"http://127.0.0.1:{port}/slack/events", signing_secret=SIGNING_SECRET, slack=slack
        ) as driver:
            record_rollout(recording, bot, vast, slack, driver, endpoint_name, args)
    except Exception as error:  # a failed run is reported in the results, and the next size still runs
        recording.error = f"{type(error).__name__}: {error}"
        print(f"[{workers} workers] failed: {recording.error}. The bot's log: {log_path}", file=sys.stderr, flush=True)
    finally:
        if sampler is not None:
            # SIGINT makes py-spy stop sampling and write its output.
            sampler.send_signal(signal.SIGINT)
            sampler.wait(30)
        stop_bot(bot)
        slack.stop()
        vast.stop()

    log_lines = log_path.read_text().splitlines()
    recording.poll_log_lines = sum(1 for line in log_lines if " poll: " in line)
    recording.log_warnings = [line for line in log_lines if " WARNING " in line or " ERROR " in line]
    return recording


def add_endpoint(vast: VastSandbox, name: str, workers: int) -> None:
    vast.world.add_endpoint(
        name,
        workers=workers,
        inactive=workers // 10,
        parallel_updates=max(1, workers // 4),
        model=OLD_MODEL,
        vllm_args="--max-model-len 8192",
        image="vllm/vllm-openai",
        tag="v0.11.0",
        search="gpu_ram>=24 num_gpus=1 verified=True",
    )


def start_bot(
    vast: VastSandbox, slack: SlackSandbox, workdir: Path, port: int, log_path: Path, args: argparse.Namespace
) -> subprocess.Popen[bytes]:
    env = bot_environment(vast.url, slack.api_url, str(workdir / "rollcall.db"), port, args.poll_seconds)
    env["ROLLCALL_VAST_MIN_INTERVAL"] = str(args.vast_min_interval)
    with log_path.open("wb") as log:
        # The working directory is the run's own folder, so no .env file of the caller is read.
        return subprocess.Popen(
            [sys.executable, "-m", "bot", "run"], env=env, cwd=workdir, stdout=log, stderr=subprocess.STDOUT
        )


def stop_bot(bot: subprocess.Popen[bytes]) -> None:
    bot.terminate()
    try:
        bot.wait(30)
    except subprocess.TimeoutExpired:
        bot.kill()
        bot.wait()


def start_py_spy(pid: int, output: Path) -> subprocess.Popen[bytes]:
    """Sample every thread of the bot with py-spy (not a project dependency) into collapsed stacks."""
    executable = shutil.which("py-spy") or str(Path(sys.executable).with_name("py-spy"))
    output.parent.mkdir(parents=True, exist_ok=True)
    command = [executable, "record", "--pid", str(pid), "--rate", "200", "--format", "raw", "--output", str(output)]
    return subprocess.Popen(command, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)


def record_rollout(
    recording: Recording,
    bot: subprocess.Popen[bytes],
    vast: VastSandbox,
    slack: SlackSandbox,
    driver: SlackDriver,
    endpoint_name: str,
    args: argparse.Namespace,
) -> None:
    # Baseline: the bot's CPU rate while it has nothing to do (scheduler, outbox and HTTP threads).
    # It starts after a pause, because the bot answers /healthz before its start-up work is over.
    time.sleep(STARTUP_SETTLE_SECONDS)
    idle_start = process_cpu_seconds(bot.pid)
    time.sleep(args.idle_seconds)
    recording.idle_cpu_per_second = (process_cpu_seconds(bot.pid) - idle_start) / args.idle_seconds
    recording.memory_before = process_memory_mb(bot.pid)

    text = f'propose {endpoint_name} MODEL_NAME={NEW_MODEL} reason="benchmark"'
    driver.command("/rollout", text, user="U0ALICE", channel=CHANNEL)
    proposal = slack.wait_for(lambda s: next(iter(s.messages(CHANNEL)), None), timeout=30)
    recording.parent_ts = proposal["ts"]
    slack.wait_for(lambda s: not s.calls() or time.time() - s.calls()[-1]["time"] > 0.5, timeout=30)

    calls_before = calls_snapshot(vast)
    events_before = len(vast.world.events)
    clock_before = vast.world.clock
    busy_before, total_before = system_cpu_jiffies()
    bench_before = time.process_time()
    recording.load_before = load_average()
    recording.cpu_start = process_cpu_seconds(bot.pid)
    recording.started_at = time.time()
    recording.samples.append((recording.started_at, recording.cpu_start))
    driver.click(proposal, action_id="approve", user="U0BOB")

    deadline = time.monotonic() + args.timeout
    while time.monotonic() < deadline:
        time.sleep(SAMPLE_SECONDS)
        recording.samples.append((time.time(), process_cpu_seconds(bot.pid)))
        if bot.poll() is not None:
            raise RuntimeError(f"the bot exited with status {bot.returncode} during the rollout")
        if recording.completed_at is None and any(
            "complete:" in str(message.get("text", "")) for message in slack.thread(CHANNEL, proposal["ts"])
        ):
            recording.completed_at = time.time()
        if recording.completed_at is not None:
            calls = slack.calls()
            if calls and time.time() - calls[-1]["time"] >= QUIET_SECONDS:
                break
    else:
        raise TimeoutError(f"the rollout did not complete within {args.timeout:g} s")

    recording.cpu_end = process_cpu_seconds(bot.pid)
    recording.ended_at = time.time()
    recording.memory = process_memory_mb(bot.pid)
    recording.bench_cpu_seconds = time.process_time() - bench_before
    busy_after, total_after = system_cpu_jiffies()
    recording.system_busy_share = (busy_after - busy_before) / max(1, total_after - total_before)
    recording.load_after = load_average()
    recording.simulated_seconds = vast.world.clock - clock_before

    calls_after = calls_snapshot(vast)
    recording.vast_calls = {
        route: count - calls_before.get(route, 0)
        for route, count in calls_after.items()
        if count - calls_before.get(route, 0) > 0
    }
    recording.slack_calls = [call for call in slack.calls() if call["time"] >= recording.started_at]
    # The last change to IDLE of each worker is the one that completes its update.
    for event in vast.world.events_since(events_before):
        if event["new"] == "IDLE":
            recording.rejoin_events[int(event["worker_id"])] = float(event["wall_time"])


# Metrics --------------------------------------------------------------------------------------


def delay_stats(delays: list[float], limit: float) -> dict[str, Any]:
    if not delays:
        return {"count": 0, "median_s": None, "max_s": None, "over_limit": 0}
    return {
        "count": len(delays),
        "over_limit": sum(1 for delay in delays if delay > limit),
        "median_s": round(statistics.median(delays), 3),
        "p90_s": round(statistics.quantiles(delays, n=10)[-1], 3) if len(delays) > 1 else round(delays[0], 3),
        "max_s": round(max(delays), 3),
    }


def thread_reply_delays(recording: Recording) -> tuple[list[float], int]:
    """Return the delays from each rejoin to the first thread reply naming it, and how many were never named."""
    named_at: dict[int, float] = {}
    for call in recording.slack_calls:
        params = call["params"]
        if call["method"] != "chat.postMessage" or params.get("thread_ts") != recording.parent_ts:
            continue
        for match in _REJOINED.finditer(str(params.get("text", ""))):
            named_at.setdefault(int(match.group(1)), call["time"])
    delays = [named_at[worker] - at for worker, at in recording.rejoin_events.items() if worker in named_at]
    return delays, len(recording.rejoin_events) - len(delays)


def parent_edit_delays(recording: Recording) -> list[float]:
    """Return the delays from the k-th rejoin to the first edit of the proposal message that counts k or more."""
    edits = []
    for call in recording.slack_calls:
        if call["method"] != "chat.update" or call["params"].get("ts") != recording.parent_ts:
            continue
        match = _PROGRESS.search(json.dumps(call["params"].get("blocks")))
        if match:
            edits.append((call["time"], int(match.group(1))))
    delays = []
    for rank, at in enumerate(sorted(recording.rejoin_events.values()), start=1):
        shown = next((time_ for time_, count in edits if count >= rank), None)
        if shown is not None:
            delays.append(shown - at)
    return delays


def max_window_cpu(samples: list[tuple[float, float]], window: float) -> float:
    """Return the most CPU seconds the bot used in any stretch of `window` wall seconds."""
    best = 0.0
    end = 0
    for start_time, start_cpu in samples:
        while end < len(samples) and samples[end][0] - start_time < window:
            end += 1
        if end == len(samples):
            break
        best = max(best, samples[end][1] - start_cpu)
    return best


def metrics(recording: Recording, args: argparse.Namespace) -> dict[str, Any]:
    result: dict[str, Any] = {"workers": recording.workers}
    if recording.error:
        result["error"] = recording.error
        return result

    polls = recording.vast_calls.get(WORKER_LIST_ROUTE, 0)
    duration = recording.ended_at - recording.started_at
    cpu_total = recording.cpu_end - recording.cpu_start
    cpu_idle = recording.idle_cpu_per_second * duration
    vast_total = sum(recording.vast_calls.values())
    slack_methods: dict[str, int] = {}
    for call in recording.slack_calls:
        slack_methods[call["method"]] = slack_methods.get(call["method"], 0) + 1
    slack_calls = len(recording.slack_calls)
    reply_delays, unnamed = thread_reply_delays(recording)
    delay_limit = args.poll_seconds + DELAY_SLACK_SECONDS

    result.update(
        {
            "rollout_seconds": round((recording.completed_at or recording.ended_at) - recording.started_at, 1),
            "measured_seconds": round(duration, 1),
            "simulated_seconds": round(recording.simulated_seconds),
            "polls": polls,
            "poll_log_lines": recording.poll_log_lines,
            "bot_log_warnings": len(recording.log_warnings),
            "bot_log_warning_examples": recording.log_warnings[:5],
            "vast_calls": vast_total,
            "vast_calls_per_poll": round(vast_total / polls, 2) if polls else None,
            "vast_calls_by_route": dict(sorted(recording.vast_calls.items())),
            "slack_calls": slack_calls,
            "slack_calls_per_poll": round(slack_calls / polls, 2) if polls else None,
            "slack_calls_by_method": dict(sorted(slack_methods.items())),
            "slack_calls_bound": SLACK_CALLS_PER_POLL * polls + FIXED_SLACK_CALLS,
            "cpu_seconds_total": round(cpu_total, 3),
            "cpu_seconds_idle_baseline": round(cpu_idle, 3),
            "idle_cpu_share": round(recording.idle_cpu_per_second, 4),
            "cpu_seconds_per_poll": round((cpu_total - cpu_idle) / polls, 4) if polls else None,
            "cpu_seconds_per_poll_raw": round(cpu_total / polls, 4) if polls else None,
            "cpu_seconds_max_in_one_interval": round(max_window_cpu(recording.samples, args.poll_seconds), 3),
            "rejoined_workers": len(recording.rejoin_events),
            "thread_reply_delay": delay_stats(reply_delays, delay_limit) | {"workers_not_named": unnamed},
            "parent_edit_delay": delay_stats(parent_edit_delays(recording), delay_limit),
            "peak_rss_mb": round(recording.memory["peak_rss_mb"], 1),
            "rss_mb_at_end": round(recording.memory["rss_mb"], 1),
            "peak_rss_mb_before_rollout": round(recording.memory_before["peak_rss_mb"], 1),
            "machine_busy_share": round(recording.system_busy_share, 3),
            "bench_process_cpu_seconds": round(recording.bench_cpu_seconds, 1),
            "load_average_before": recording.load_before,
            "load_average_after": recording.load_after,
        }
    )
    result["targets"] = judge(result, args)
    return result


def judge(result: dict[str, Any], args: argparse.Namespace) -> dict[str, Any]:
    cpu_limit = CPU_SHARE_TARGET * args.poll_seconds
    delay_limit = args.poll_seconds + DELAY_SLACK_SECONDS
    reply_max = result["thread_reply_delay"]["max_s"]
    edit_max = result["parent_edit_delay"]["max_s"]
    return {
        "slack_calls_within_bound": result["slack_calls"] <= result["slack_calls_bound"],
        "thread_reply_delay_max_within_limit": reply_max is not None and reply_max <= delay_limit,
        "parent_edit_delay_max_within_limit": edit_max is not None and edit_max <= delay_limit,
        "cpu_per_poll_within_limit": (result["cpu_seconds_per_poll"] or 0) < cpu_limit,
        "peak_rss_within_limit": result["peak_rss_mb"] < RSS_TARGET_MB,
        "limits": {
            "slack_calls": f"<= {SLACK_CALLS_PER_POLL} x polls + {FIXED_SLACK_CALLS}",
            "delay_s": delay_limit,
            "cpu_seconds_per_poll": cpu_limit,
            "peak_rss_mb": RSS_TARGET_MB,
        },
    }


# Output ---------------------------------------------------------------------------------------


def verdict(ok: bool) -> str:
    return "pass" if ok else "FAIL"


def print_table(results: list[dict[str, Any]], args: argparse.Namespace) -> None:
    columns = [
        ("workers", lambda r: r["workers"]),
        ("polls", lambda r: r["polls"]),
        ("vast/poll", lambda r: r["vast_calls_per_poll"]),
        ("slack calls", lambda r: f"{r['slack_calls']} ({verdict(r['targets']['slack_calls_within_bound'])})"),
        ("cpu s/poll", lambda r: f"{r['cpu_seconds_per_poll']} ({verdict(r['targets']['cpu_per_poll_within_limit'])})"),
        ("reply delay med/max s", lambda r: delay_cell(r, "thread_reply_delay", "thread_reply_delay_max")),
        ("named", lambda r: r["thread_reply_delay"]["count"]),
        ("edit delay med/max s", lambda r: delay_cell(r, "parent_edit_delay", "parent_edit_delay_max")),
        ("peak RSS MB", lambda r: f"{r['peak_rss_mb']} ({verdict(r['targets']['peak_rss_within_limit'])})"),
        ("rollout s", lambda r: r["rollout_seconds"]),
    ]
    rows = [[name for name, _ in columns]]
    for result in results:
        if "error" in result:
            rows.append([str(result["workers"]), f"error: {result['error']}"] + [""] * (len(columns) - 2))
            continue
        rows.append([str(cell(result)) for _, cell in columns])
    widths = [max(len(row[index]) for row in rows) for index in range(len(columns))]
    print()
    print(
        f"poll interval {args.poll_seconds:g} s, simulation speed {args.speed:g}x, "
        f"ROLLCALL_VAST_MIN_INTERVAL={args.vast_min_interval:g}; delay limit "
        f"{args.poll_seconds + DELAY_SLACK_SECONDS:g} s, CPU limit {CPU_SHARE_TARGET * args.poll_seconds:g} s per poll"
    )
    for row in rows:
        print("  ".join(text.rjust(width) for text, width in zip(row, widths, strict=True)))


def delay_cell(result: dict[str, Any], name: str, target: str) -> str:
    stats = result[name]
    if not stats["count"]:
        return "none (FAIL)"
    ok = result["targets"][f"{target}_within_limit"]
    return f"{stats['median_s']}/{stats['max_s']} ({verdict(ok)})"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--workers", type=int, nargs="+", default=[10, 100, 1000], help="group sizes to run")
    parser.add_argument("--poll-seconds", type=float, default=2.0, help="ROLLCALL_POLL_SECONDS (default 2)")
    parser.add_argument(
        "--speed", type=float, default=5.0, help="simulated Vast seconds per wall-clock second (default 5)"
    )
    parser.add_argument(
        "--vast-min-interval",
        type=float,
        default=0.0,
        help="ROLLCALL_VAST_MIN_INTERVAL: seconds between two calls of one Vast route (default 0, the bot's is 2)",
    )
    parser.add_argument(
        "--idle-seconds", type=float, default=10.0, help="seconds of idle CPU baseline before each rollout"
    )
    parser.add_argument("--timeout", type=float, default=600.0, help="seconds to wait for each rollout")
    parser.add_argument("--out", default="bench/results/latest.json", help="JSON results file")
    parser.add_argument(
        "--py-spy-dir",
        help="sample the bot with py-spy (installed separately) into DIR/bot-N.txt, as collapsed stacks",
    )
    parser.add_argument("--check", action="store_true", help="exit with status 1 when a target fails")
    args = parser.parse_args(argv)

    started = time.time()
    # Read before the runs: the child bot processes import the same folder, found the same way.
    source = source_info()
    results = []
    for workers in args.workers:
        result = metrics(run_size(workers, args), args)
        results.append(result)
        print(f"[{workers} workers] {json.dumps(result)}", flush=True)
    report = {
        "started_at": time.strftime("%Y-%m-%dT%H:%M:%S%z", time.localtime(started)),
        "command": " ".join([Path(sys.executable).name, *sys.argv]),
        "machine": machine_info(),
        "source": source,
        "settings": {
            "poll_seconds": args.poll_seconds,
            "speed": args.speed,
            "vast_min_interval": args.vast_min_interval,
            "idle_seconds": args.idle_seconds,
            "sampled_with_py_spy": bool(args.py_spy_dir),
            "inactive_share": 0.1,
            "parallel_updates": "workers // 4",
        },
        "runs": results,
    }
    out = Path(args.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(report, indent=2) + "\n")
    print_table(results, args)
    print(f"\nResults written to {out}")
    failed = any("error" in result for result in results)
    missed = any(
        not ok
        for result in results
        if "targets" in result
        for name, ok in result["targets"].items()
        if name != "limits"
    )
    return 1 if failed or (args.check and missed) else 0


if __name__ == "__main__":
    raise SystemExit(main())
