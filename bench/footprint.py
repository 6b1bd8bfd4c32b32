#!/usr/bin/env python3
"""Footprint benchmark: medic's resident memory and CPU, idle and under a realistic load.

    python3 bench/footprint.py [--minutes M] [--containers N] [--probes P] [--binary PATH]
                               [--json] [--no-build]

Runs a release build of medic (or --binary: bench/run passes the static binary that medic's
image ships, when scripts/build-images.sh medic has built it) scoped to a throwaway compose project and reads its memory
(VmRSS, and VmHWM: the peak) and CPU time (utime + stime) from /proc, in three phases:

  1. empty:   no container in scope and no probe (medic's floor);
  2. idle:    N containers in scope (busybox with a Docker healthcheck every 30 s, as compose
              stacks have), no probe; CPU over M minutes;
  3. probing: the same N containers plus P probes at a 10 s interval (half `http` GETs, half
              `tcp` connects, against a small HTTP server on 127.0.0.1 run by this script);
              CPU over M minutes.

Defaults: 100 containers, 300 probes, 5 minutes per measured phase (about 12 minutes in all).
Every container is labelled medic.bench=true and removed at the end, also on failure. Also
reports the size of the release binary, the static binary the image ships and medic's image,
when they have been built (scripts/build-images.sh medic). Needs the Docker engine and the
busybox test image (scripts/testenv.sh up).
"""
import argparse
import http.server
import json
import os
import shutil
import socketserver
import subprocess
import sys
import tempfile
import threading
import time
import urllib.request

from benchlib import ROOT, build_release, docker, remove_bench_containers, start_bench_container

TICKS = os.sysconf("SC_CLK_TCK")
MIB = 1024 * 1024


def status_kib(pid, field):
    with open(f"/proc/{pid}/status") as f:
        for line in f:
            if line.startswith(field + ":"):
                return int(line.split()[1])
    raise RuntimeError(f"{field} not in /proc/{pid}/status")


def cpu_seconds(pid):
    with open(f"/proc/{pid}/stat") as f:
        # The command name is in parentheses and may hold spaces: split after it.
        fields = f.read().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / TICKS  # utime, stime


class Quiet(http.server.BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"

    def do_GET(self):
        self.send_response(200)
        self.send_header("content-length", "2")
        self.end_headers()
        self.wfile.write(b"ok")

    def log_message(self, *args):
        pass


class Server(socketserver.ThreadingMixIn, http.server.HTTPServer):
    daemon_threads = True


def free_port():
    import socket
    s = socket.socket()
    s.bind(("127.0.0.1", 0))
    port = s.getsockname()[1]
    s.close()
    return port


def wait_http(url, timeout=30):
    end = time.time() + timeout
    while time.time() < end:
        try:
            with urllib.request.urlopen(url, timeout=2) as r:
                return json.load(r) if "detailed" in url else r.status
        except Exception:
            time.sleep(0.2)
    sys.exit(f"{url} did not answer within {timeout} s")


def detailed(port):
    with urllib.request.urlopen(f"http://127.0.0.1:{port}/health/detailed", timeout=5) as r:
        return json.load(r)


class Medic:
    def __init__(self, binary, work, project, config, name):
        self.port = free_port()
        env = dict(os.environ, MEDIC_PROJECT=project, MEDIC_DATA_DIR=f"{work}/{name}",
                   MEDIC_LISTEN=f"127.0.0.1:{self.port}", MEDIC_CONFIG=config,
                   MEDIC_LOG="warn")
        self.log = open(f"{work}/{name}.log", "w")
        self.proc = subprocess.Popen([binary, "run"], env=env,
                                     stderr=self.log, stdout=self.log)
        wait_http(f"http://127.0.0.1:{self.port}/health")

    def measure(self, seconds):
        """RSS now, peak RSS and CPU share over `seconds`."""
        c0, t0 = cpu_seconds(self.proc.pid), time.monotonic()
        time.sleep(seconds)
        c1, t1 = cpu_seconds(self.proc.pid), time.monotonic()
        if self.proc.poll() is not None:
            sys.exit(f"medic exited during the measurement; see {self.log.name}")
        return {
            "rss_mib": status_kib(self.proc.pid, "VmRSS") / 1024,
            # Anonymous: medic's own heap, stacks and relocated data. File: pages of medic's
            # binary (its code) mapped from the page cache, shared and reclaimable.
            "anon_mib": status_kib(self.proc.pid, "RssAnon") / 1024,
            "file_mib": status_kib(self.proc.pid, "RssFile") / 1024,
            "peak_rss_mib": status_kib(self.proc.pid, "VmHWM") / 1024,
            "cpu_percent": 100 * (c1 - c0) / (t1 - t0),
            "seconds": round(t1 - t0),
        }

    def stop(self):
        self.proc.terminate()
        try:
            self.proc.wait(10)
        except subprocess.TimeoutExpired:
            self.proc.kill()


def start_containers(project, count):
    names = []
    for i in range(count):
        names.append(start_bench_container(project, f"c{i:03d}", f"{project}-c{i:03d}",
                                           "--health-cmd", "true", "--health-interval", "30s"))
    return names


def write_config(path, probes, port):
    with open(path, "w") as f:
        f.write("probes:\n")
        for i in range(probes):
            if i % 2:
                f.write(f"  p{i:03d}:\n    type: tcp\n    host: 127.0.0.1\n    port: {port}\n")
            else:
                f.write(f"  p{i:03d}:\n    type: http\n    url: http://127.0.0.1:{port}/\n")
            f.write("    interval: 10s\n    timeout: 5s\n")


def sizes():
    out = {}
    for label, path in (("release binary", "target/release/medic"),
                        ("static binary (in the image)", "target/static/x86_64-unknown-linux-gnu/release/medic")):
        full = os.path.join(ROOT, path)
        if os.path.exists(full):
            out[label] = os.path.getsize(full) / 1e6
    size = docker("image", "inspect", "-f", "{{.Size}}", "medic:latest", check=False).strip()
    if size.isdigit():
        out["image medic:latest"] = int(size) / 1e6
    return out


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--minutes", type=float, default=5)
    parser.add_argument("--containers", type=int, default=100)
    parser.add_argument("--probes", type=int, default=300)
    parser.add_argument("--binary", default=f"{ROOT}/target/release/medic")
    parser.add_argument("--json", action="store_true", help="print one JSON object, no table")
    parser.add_argument("--no-build", action="store_true", help="use target/release/medic as is")
    args = parser.parse_args()
    if not args.no_build and args.binary == f"{ROOT}/target/release/medic":
        build_release()

    seconds = args.minutes * 60
    project = f"medicfoot{os.getpid()}"
    work = tempfile.mkdtemp(prefix="medic-footprint-")
    target = Server(("127.0.0.1", 0), Quiet)
    threading.Thread(target=target.serve_forever, daemon=True).start()
    medic = None
    phases = []
    try:
        empty_cfg = f"{work}/empty.yaml"
        open(empty_cfg, "w").write("probes: {}\n")
        medic = Medic(args.binary, work, project, empty_cfg, "empty")
        phases.append(("empty: nothing in scope, no probe", 0, 0, medic.measure(min(30, seconds))))
        medic.stop()

        start_containers(project, args.containers)
        medic = Medic(args.binary, work, project, empty_cfg, "idle")
        end = time.time() + 60
        while len(detailed(medic.port)["components"]) < args.containers:
            if time.time() > end:
                sys.exit("medic did not list every bench container within 60 s")
            time.sleep(0.5)
        phases.append((f"idle: {args.containers} containers, no probe", args.containers, 0,
                       medic.measure(seconds)))
        medic.stop()

        cfg = f"{work}/probes.yaml"
        write_config(cfg, args.probes, target.server_address[1])
        medic = Medic(args.binary, work, project, cfg, "probing")
        time.sleep(15)  # every probe has run once (first runs spread over 1 s of each 10 s)
        got = detailed(medic.port)
        failing = [n for n, c in got["components"].items() if c.get("status") not in ("healthy", "ok")]
        result = medic.measure(seconds)
        result["runs_per_s"] = args.probes / 10
        result["components_not_healthy"] = len(failing)
        phases.append((f"probing: {args.containers} containers, {args.probes} probes every 10 s",
                       args.containers, args.probes, result))
        medic.stop()
        medic = None
    finally:
        if medic:
            medic.stop()
        target.shutdown()
        remove_bench_containers()
        shutil.rmtree(work, ignore_errors=True)

    built = sizes()
    if args.json:
        print(json.dumps({"binary": os.path.relpath(args.binary, ROOT), "phases": [{"phase": p, "containers": c, "probes": n, **m}
                                     for p, c, n, m in phases],
                          "sizes_mb": built}))
        return
    print(f"\nmedic footprint of {os.path.relpath(args.binary, ROOT)} ({os.cpu_count()} cores, engine "
          f"{docker('version', '-f', '{{.Server.Version}}').strip()})\n")
    print("| phase | RSS MiB | of which anonymous | of which the binary's code | peak RSS MiB | CPU % of a core | over s |")
    print("|---|---|---|---|---|---|---|")
    for p, _, _, m in phases:
        print(f"| {p} | {m['rss_mib']:.1f} | {m['anon_mib']:.1f} | {m['file_mib']:.1f} | "
              f"{m['peak_rss_mib']:.1f} | {m['cpu_percent']:.2f} | {m['seconds']} |")
    print()
    for label, mb in built.items():
        print(f"{label}: {mb:.1f} MB")


if __name__ == "__main__":
    main()
