#!/usr/bin/env python3
"""Reaction benchmark: time from Docker's `health_status: unhealthy` event to medic's restart.

Both instants come from the engine's own event stream (the restart shows as the `kill` event
the engine emits when it acts on medic's restart call), so the figure is measured outside medic.

    python3 bench/reaction.py [--sequential N] [--burst M] [--json] [--no-build]

Starts a release build of medic scoped to a throwaway compose project, runs N containers that
turn unhealthy one after another (p50/p99 over N events), then M containers that turn unhealthy
at once through one shared health file (time until all M restarts were issued). Everything it
creates is labelled medic.bench=true and removed at the end. Needs the Docker engine and
the busybox test image (scripts/testenv.sh up).
"""
import argparse
import json
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import threading
import time

from benchlib import ROOT, build_release, docker, remove_bench_containers, start_bench_container


class Events:
    """Follows the engine's events for the bench containers from now on."""

    def __init__(self, project):
        self.proc = subprocess.Popen(
            ["docker", "events", "--filter", f"label=com.docker.compose.project={project}",
             "--format", "{{json .}}"],
            stdout=subprocess.PIPE, text=True)
        self.unhealthy = {}
        self.kill = {}
        self.lock = threading.Lock()
        threading.Thread(target=self._read, daemon=True).start()
        time.sleep(0.3)

    def _read(self):
        for line in self.proc.stdout:
            e = json.loads(line)
            name = e.get("Actor", {}).get("Attributes", {}).get("name", "")
            action = e.get("Action") or e.get("status", "")
            with self.lock:
                if action == "health_status: unhealthy" and name not in self.unhealthy:
                    self.unhealthy[name] = e["timeNano"]
                elif action == "kill" and name in self.unhealthy and name not in self.kill:
                    self.kill[name] = e["timeNano"]

    def wait(self, names, timeout):
        end = time.time() + timeout
        while time.time() < end:
            with self.lock:
                if all(n in self.kill for n in names):
                    return True
            time.sleep(0.1)
        return False

    def stop(self):
        self.proc.kill()


def start_containers(project, prefix, count, health_dir, interval="1s"):
    names = []
    for i in range(count):
        names.append(start_bench_container(
            project, f"{prefix}{i}", f"{project}-{prefix}{i}", "-v", f"{health_dir}:/hc",
            "--health-cmd", "test -f /hc/ok", "--health-interval", interval,
            "--health-retries", "1", "--health-timeout", "5s"))
    return names


def wait_healthy(names, timeout=120):
    end = time.time() + timeout
    while time.time() < end:
        out = docker("inspect", "-f", "{{.State.Health.Status}}", *names)
        if all(s == "healthy" for s in out.split()):
            return
        time.sleep(0.5)
    sys.exit("bench containers did not become healthy")


def percentile(values, p):
    values = sorted(values)
    k = (len(values) - 1) * p / 100
    f = int(k)
    c = min(f + 1, len(values) - 1)
    return values[f] + (values[c] - values[f]) * (k - f)


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sequential", type=int, default=60)
    parser.add_argument("--burst", type=int, default=50)
    parser.add_argument("--json", action="store_true", help="print one JSON object, no table")
    parser.add_argument("--no-build", action="store_true", help="use target/release/medic as is")
    args = parser.parse_args()

    if not args.no_build:
        build_release()
    project = f"medicbench{os.getpid()}"
    work = tempfile.mkdtemp(prefix="medic-bench-")
    medic = None
    events = Events(project)
    try:
        env = dict(os.environ, MEDIC_PROJECT=project, MEDIC_DATA_DIR=f"{work}/data",
                   MEDIC_LISTEN="127.0.0.1:0", MEDIC_RESTART_GRACE="1s",
                   MEDIC_STOP_TIMEOUT="1s", MEDIC_RECONCILE_INTERVAL="30s",
                   MEDIC_LOG="warn")
        medic = subprocess.Popen([f"{ROOT}/target/release/medic", "run"], env=env,
                                 stderr=open(f"{work}/medic.log", "w"))

        results = []
        if args.sequential:
            seq_names = []
            for i in range(args.sequential):
                d = f"{work}/seq{i}"
                os.makedirs(d)
                open(f"{d}/ok", "w").close()
                # A check every 5 s: 60 containers checking every second would make the engine
                # (not medic) the bottleneck on 2 cores. The interval only delays when a
                # container turns unhealthy, not the reaction measured from that event.
                seq_names += start_containers(project, f"seq{i}x", 1, d, "5s")
            wait_healthy(seq_names)
            for i, name in enumerate(seq_names):
                os.remove(f"{work}/seq{i}/ok")
                time.sleep(0.4)
            if not events.wait(seq_names, 90):
                sys.exit("not every sequential container was restarted")
            ms = [(events.kill[n] - events.unhealthy[n]) / 1e6 for n in seq_names]
            results.append(("one at a time", len(ms), statistics.median(ms),
                            percentile(ms, 99), max(ms)))

        if args.burst:
            d = f"{work}/burst"
            os.makedirs(d)
            open(f"{d}/ok", "w").close()
            burst_names = start_containers(project, "burst", args.burst, d)
            wait_healthy(burst_names)
            os.remove(f"{d}/ok")
            if not events.wait(burst_names, 60):
                sys.exit("not every burst container was restarted")
            ms = [(events.kill[n] - events.unhealthy[n]) / 1e6 for n in burst_names]
            first = min(events.unhealthy[n] for n in burst_names)
            last_unhealthy = max(events.unhealthy[n] for n in burst_names)
            last_kill = max(events.kill[n] for n in burst_names)
            results.append((f"{args.burst} at once", len(ms), statistics.median(ms),
                            percentile(ms, 99), max(ms)))
            burst_span = ((last_kill - first) / 1e6, (last_kill - last_unhealthy) / 1e6)

        if args.json:
            out = {"engine": docker("version", "-f", "{{.Server.Version}}").strip(),
                   "cases": [{"case": c, "events": n, "p50_ms": p50, "p99_ms": p99, "max_ms": mx}
                             for c, n, p50, p99, mx in results]}
            if args.burst:
                out["burst_all_issued_after_first_ms"] = burst_span[0]
                out["burst_all_issued_after_last_ms"] = burst_span[1]
            print(json.dumps(out))
            return
        print(f"\nmedic reaction: Docker 'health_status: unhealthy' -> restart issued "
              f"(engine {docker('version', '-f', '{{.Server.Version}}').strip()}, "
              f"{os.cpu_count()} cores)\n")
        print(f"| case | events | p50 ms | p99 ms | max ms |")
        print(f"|---|---|---|---|---|")
        for case, n, p50, p99, mx in results:
            print(f"| {case} | {n} | {p50:.1f} | {p99:.1f} | {mx:.1f} |")
        if args.burst:
            print(f"\n{args.burst} at once: all restarts issued {burst_span[0]:.0f} ms after the first "
                  f"container turned unhealthy, {burst_span[1]:.0f} ms after the last one did.")
    finally:
        events.stop()
        if medic:
            medic.terminate()
            medic.wait()
        remove_bench_containers()
        shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    main()
