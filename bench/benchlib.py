"""What the benchmarks share: the docker CLI, medic's release build and the bench containers.

Every container a benchmark starts is labelled medic.bench=true, so one call removes them all
at the end, also after a failure. Imported by bench/footprint.py and bench/reaction.py (their
own folder is on sys.path when they run as scripts).
"""
import os
import subprocess

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
IMAGE = os.environ.get("MEDIC_TEST_BUSYBOX_IMAGE", "medic-test/busybox:latest")
BENCH_LABEL = "medic.bench=true"


def docker(*args, check=True):
    """Runs the docker CLI and returns its stdout."""
    return subprocess.run(["docker", *args], check=check, capture_output=True, text=True).stdout


def build_release():
    """Builds target/release/medic, the binary the benchmarks run unless told otherwise."""
    subprocess.run(["cargo", "build", "--release", "-q", "-p", "medic"], cwd=ROOT, check=True)


def start_bench_container(project, service, name, *options):
    """Starts a sleeping busybox container as `service` of compose project `project`, labelled
    for clean-up and without a network; `options` are more `docker run` options (healthcheck,
    volumes)."""
    docker("run", "-d", "--name", name, "--label", BENCH_LABEL,
           "--label", f"com.docker.compose.project={project}",
           "--label", f"com.docker.compose.service={service}",
           "--network", "none", *options,
           IMAGE, "sh", "-c", "exec sleep 100000")
    return name


def remove_bench_containers():
    """Removes every container a benchmark started (labelled medic.bench=true)."""
    ids = docker("ps", "-aq", "--filter", f"label={BENCH_LABEL}").split()
    if ids:
        docker("rm", "-f", *ids, check=False)
