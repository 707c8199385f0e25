"""Load test of `translator app`: starts the app on a checkpoint and drives concurrent loopback clients.

Three scenarios, each bounded in requests and in seconds:

    mixed   N clients x R requests each, mixed kinds (one sentence greedy, a few lines with beam 5,
            50 lines with beam 8, empty and over-long inputs that must be rejected);
    heavy   H maximum-size requests (1,000 lines, the largest beam) running while one other client
            sends a one-sentence request P times in a row: the latency that client sees;
    memory  M requests from N clients (one sentence or five lines, greedy or beam 5, and invalid ones);
            the server's RSS after the first --mark requests (500) and at the end.

It prints p50 / p95 / max latency, errors (failures that are not a clear rejection), rejected
requests (empty, too long, over budget, ...) and the server's RSS before and after.
Clients speak Gradio's HTTP API (POST /gradio_api/call/translate, then read the event stream),
so no gradio_client is needed. PYTHONPATH decides which translator tree serves.

    python benchmarks/load.py --checkpoint CKPT --scenario mixed --clients 20 --requests 10
    python benchmarks/load.py --checkpoint CKPT --scenario heavy --heavy 2 --probes 20
    python benchmarks/load.py --checkpoint CKPT --scenario memory --clients 8 --requests 3000
"""
from __future__ import annotations

import argparse
import json
import os
import random
import socket
import subprocess
import sys
import threading
import time
import urllib.error
import urllib.request
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

SENTENCES = ["Ein Mann fährt mit dem Fahrrad eine Straße entlang.", "Zwei Kinder spielen im Park.",
             "Eine Frau mit einem grünen Hut steht vor einem Gebäude.", "Ein brauner Hund rennt durch das Gras.",
             "Ein Mädchen liest ein Buch.", "Drei Männer arbeiten auf einer Baustelle."]
MAX_BEAM = 16
HEAVY_TEXT = "\n".join(["a"] * 1000)  # 1,999 characters: the most lines the default 2,000-character limit admits


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def rss_mb(pid: int) -> float:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    return float("nan")


class App:
    """`translator app` in a subprocess on a free loopback port."""

    def __init__(self, checkpoint: str, port: int, extra: list[str], log: Path):
        self.port = port
        self.base = f"http://127.0.0.1:{port}"
        env = {**os.environ, "OMP_NUM_THREADS": os.environ.get("OMP_NUM_THREADS", "1")}
        self.log = open(log, "w")
        self.proc = subprocess.Popen([sys.executable, "-m", "translator", "app", "--checkpoint", checkpoint,
                                      "--checkpoints_dir", "null", "--port", str(port), *extra],
                                     stdout=self.log, stderr=subprocess.STDOUT, env=env)

    def wait(self, timeout: float) -> None:
        deadline = time.time() + timeout
        while time.time() < deadline:
            if self.proc.poll() is not None:
                raise SystemExit(f"the app exited with {self.proc.returncode}; see {self.log.name}")
            try:
                urllib.request.urlopen(self.base + "/gradio_api/info", timeout=5).read()
                return
            except (urllib.error.URLError, OSError):
                time.sleep(0.5)
        raise SystemExit(f"the app did not answer within {timeout:.0f} s")

    def stop(self) -> None:
        self.proc.terminate()
        try:
            self.proc.wait(timeout=20)
        except subprocess.TimeoutExpired:
            self.proc.kill()
        self.log.close()


def call(base: str, text: str, decoder: str, beam: int, timeout: float) -> tuple[str, float, str]:
    """One /translate request: (outcome ok|rejected|error, seconds, detail)."""
    start = time.perf_counter()
    body = json.dumps({"data": [text, "", decoder, beam]}).encode()
    request = urllib.request.Request(base + "/gradio_api/call/translate", body, {"Content-Type": "application/json"})
    try:
        event_id = json.loads(urllib.request.urlopen(request, timeout=timeout).read())["event_id"]
        stream = urllib.request.urlopen(f"{base}/gradio_api/call/translate/{event_id}", timeout=timeout)
        event = ""
        for raw in stream:
            line = raw.decode("utf-8", "replace").strip()
            if line.startswith("event:"):
                event = line.split(":", 1)[1].strip()
            elif line.startswith("data:") and event in ("complete", "error"):
                data = line.split(":", 1)[1].strip()
                seconds = time.perf_counter() - start
                if event == "complete":
                    return "ok", seconds, ""
                return ("rejected" if data not in ("null", "") else "error"), seconds, data[:200]
        return "error", time.perf_counter() - start, "stream ended without a result"
    except urllib.error.HTTPError as err:  # 422: refused before queueing; 503: queue full
        detail = err.read().decode("utf-8", "replace")[:200]
        return ("rejected" if err.code in (422, 503) else "error"), time.perf_counter() - start, detail
    except (urllib.error.URLError, OSError, ValueError) as err:
        return "error", time.perf_counter() - start, str(err)[:200]


def mixed_request(rng: random.Random) -> tuple[str, str, int]:
    kind = rng.random()
    if kind < 0.45:
        return rng.choice(SENTENCES), "greedy", 5
    if kind < 0.70:
        return "\n".join(rng.choice(SENTENCES) for _ in range(5)), "beam", 5
    if kind < 0.85:
        return "\n".join(rng.choice(SENTENCES) for _ in range(50)), "beam", 8
    if kind < 0.93:
        return "   ", "greedy", 5  # empty: must be rejected
    return "x" * 50_000, "greedy", 5  # over the character limit: must be rejected


def memory_request(rng: random.Random) -> tuple[str, str, int]:
    """The memory run's mix: cheaper than `mixed_request` (2,000 of them must fit in minutes), same kinds."""
    kind = rng.random()
    if kind < 0.5:
        return rng.choice(SENTENCES), "greedy", 5
    if kind < 0.7:
        return "\n".join(rng.choice(SENTENCES) for _ in range(5)), "greedy", 5
    if kind < 0.85:
        return rng.choice(SENTENCES), "beam", 5
    return ("   " if kind < 0.92 else "x" * 50_000), "greedy", 5


def summary(name: str, results: list[tuple[str, float, str]]) -> dict:
    ok = sorted(s for outcome, s, _ in results if outcome == "ok")
    every = sorted(s for _, s, _ in results)

    def pct(values: list[float], q: float) -> float:
        return values[min(len(values) - 1, int(round(q * (len(values) - 1))))] if values else float("nan")

    row = {"scenario": name, "requests": len(results), "ok": len(ok),
           "rejected": sum(o == "rejected" for o, _, _ in results), "errors": sum(o == "error" for o, _, _ in results),
           "p50_s": pct(every, 0.5), "p95_s": pct(every, 0.95), "max_s": every[-1] if every else float("nan"),
           "ok_p50_s": pct(ok, 0.5), "ok_p95_s": pct(ok, 0.95)}
    print(f"{name}: {row['requests']} requests, {row['ok']} ok, {row['rejected']} rejected, {row['errors']} errors; "
          f"latency p50 {row['p50_s']:.2f} s, p95 {row['p95_s']:.2f} s, max {row['max_s']:.2f} s "
          f"(answered: p50 {row['ok_p50_s']:.2f} s, p95 {row['ok_p95_s']:.2f} s)", flush=True)
    errors = [d for o, _, d in results if o == "error"]
    if errors:
        print(f"  first error: {errors[0]}", flush=True)
    return row


def run_mixed(app: App, clients: int, requests: int, timeout: float, seed: int) -> dict:
    def client(k: int) -> list:
        rng = random.Random(seed * 1000 + k)
        return [call(app.base, *mixed_request(rng), timeout) for _ in range(requests)]

    with ThreadPoolExecutor(clients) as pool:
        results = [r for part in pool.map(client, range(clients)) for r in part]
    return summary(f"mixed {clients}x{requests}", results)


def run_heavy(app: App, heavy: int, probes: int, timeout: float) -> dict:
    heavy_results: list = []
    heavy_ends: list[float] = []
    t0 = time.perf_counter()

    def one_heavy() -> None:
        heavy_results.append(call(app.base, HEAVY_TEXT, "beam", MAX_BEAM, timeout))
        heavy_ends.append(time.perf_counter() - t0)

    threads = [threading.Thread(target=one_heavy) for _ in range(heavy)]
    for t in threads:
        t.start()
    time.sleep(2.0)  # let the heavy requests start decoding
    probe_results, probe_starts = [], []
    for i in range(probes):
        probe_starts.append(time.perf_counter() - t0)
        probe_results.append(call(app.base, SENTENCES[i % len(SENTENCES)], "greedy", 5, timeout))
        time.sleep(0.2)
    for t in threads:
        t.join(timeout)
    first_end = min(heavy_ends, default=float("inf"))
    during = [r for r, start in zip(probe_results, probe_starts) if start + r[1] <= first_end]
    print(f"  {len(during)} of {probes} one-sentence requests were answered while both heavy requests still ran "
          f"(the first heavy request ended after {first_end:.0f} s)", flush=True)
    for outcome, seconds, detail in heavy_results:
        print(f"  heavy request: {outcome} after {seconds:.1f} s {detail[:120]}", flush=True)
    row = summary(f"one-sentence requests while {heavy} maximum-size requests run", probe_results)
    row["heavy"] = [{"outcome": o, "seconds": s, "detail": d} for o, s, d in heavy_results]
    row["answered_during_heavy"] = len(during)
    return row


def run_memory(app: App, clients: int, requests: int, timeout: float, seed: int, mark: int = 500) -> dict:
    done = [0]
    lock = threading.Lock()
    marks: dict[str, float] = {}
    per_client = requests // clients

    def client(k: int) -> list:
        rng = random.Random(seed * 7919 + k)
        out = []
        for _ in range(per_client):
            out.append(call(app.base, *memory_request(rng), timeout))
            with lock:
                done[0] += 1
                if done[0] == mark:
                    marks["at_mark_mb"] = rss_mb(app.proc.pid)
        return out

    with ThreadPoolExecutor(clients) as pool:
        results = [r for part in pool.map(client, range(clients)) for r in part]
    marks["end_mb"] = rss_mb(app.proc.pid)
    row = summary(f"memory {clients} clients x {per_client}", results)
    growth = 100 * (marks["end_mb"] / marks["at_mark_mb"] - 1) if "at_mark_mb" in marks else float("nan")
    print(f"  RSS at request {mark} {marks.get('at_mark_mb', float('nan')):.0f} MB, at request {len(results)} "
          f"{marks['end_mb']:.0f} MB ({growth:+.1f}%)", flush=True)
    return {**row, **marks, "mark": mark, "growth_percent": growth}


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--checkpoint", required=True)
    parser.add_argument("--scenario", choices=("mixed", "heavy", "memory"), action="append",
                        help="repeat for several; default: mixed and heavy")
    parser.add_argument("--clients", type=int, default=20)
    parser.add_argument("--requests", type=int, default=10, help="per client (mixed); in all (memory)")
    parser.add_argument("--heavy", type=int, default=2)
    parser.add_argument("--probes", type=int, default=20)
    parser.add_argument("--timeout", type=float, default=300, help="seconds one request may take")
    parser.add_argument("--startup_timeout", type=float, default=300)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--mark", type=int, default=500, help="memory: the request after which RSS is the baseline")
    parser.add_argument("--json", help="write the figures here")
    parser.add_argument("--log", default="load-app.log", help="the app's output")
    parser.add_argument("app_args", nargs="*", help="after --: more `translator app` options")
    args = parser.parse_args(argv)
    app = App(args.checkpoint, free_port(), args.app_args, Path(args.log))
    rows = []
    try:
        app.wait(args.startup_timeout)
        call(app.base, SENTENCES[0], "greedy", 5, args.timeout)  # load the model before measuring
        rss_before = rss_mb(app.proc.pid)
        print(f"app up on {app.base}, RSS {rss_before:.0f} MB; PYTHONPATH={os.environ.get('PYTHONPATH', '')}",
              flush=True)
        for scenario in args.scenario or ["mixed", "heavy"]:
            if scenario == "mixed":
                rows.append(run_mixed(app, args.clients, args.requests, args.timeout, args.seed))
            elif scenario == "heavy":
                rows.append(run_heavy(app, args.heavy, args.probes, args.timeout))
            else:
                rows.append(run_memory(app, args.clients, args.requests, args.timeout, args.seed, args.mark))
        rss_after = rss_mb(app.proc.pid)
        print(f"RSS before {rss_before:.0f} MB, after {rss_after:.0f} MB", flush=True)
    finally:
        app.stop()
    if args.json:
        Path(args.json).write_text(json.dumps({"checkpoint": args.checkpoint, "rss_before_mb": rss_before,
                                               "rss_after_mb": rss_after, "rows": rows}, indent=1))


if __name__ == "__main__":
    main()
