"""Shared helpers of the benchmark suite: paths, the machine, timing, manifests, child processes.

Nothing here imports TensorFlow at module level, so `run.py --help` and the CLI timing stay
cheap.
"""

from __future__ import annotations

import os
import platform
import statistics
import subprocess
import sys
import time
from pathlib import Path
from typing import Optional

import yaml

REPO = Path(__file__).resolve().parents[1]
SHARED_DATA = REPO.parent / "shared" / "data"  # ../shared/data, read in place, never copied
PYTHON = Path(sys.executable)
MMAUTO = PYTHON.with_name("mmauto")

# Quiet TensorFlow in this process and in every child (set before TF is imported).
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")


class Skipped(Exception):
    """A benchmark that cannot run here (no data, --quick); the message says why."""


def log(msg: str) -> None:
    print(f"[bench {time.strftime('%H:%M:%S')}] {msg}", file=sys.stderr, flush=True)


def median(xs) -> Optional[float]:
    xs = [x for x in xs if x is not None]
    return statistics.median(xs) if xs else None


def ratio_entry(value: Optional[float], goal: str, detail: dict) -> dict:
    """{"value", "goal", "met", "detail"}; goal "<= x", ">= x", "< x" or "info" (met None)."""
    met = None
    if value is not None and goal != "info":
        op, bound = goal.split()
        bound = float(bound)
        met = {"<=": value <= bound, ">=": value >= bound, "<": value < bound, ">": value > bound}[op]
    return {"value": None if value is None else round(float(value), 4), "goal": goal, "met": met, "detail": detail}


def write_manifest(path: Path, data: dict) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(yaml.safe_dump(data, sort_keys=False))
    return path


def demo_manifest(demo_dir: Path) -> dict:
    return yaml.safe_load((demo_dir / "manifest.yaml").read_text())


def _read(path: str) -> str:
    try:
        return Path(path).read_text().strip()
    except OSError:
        return ""


def machine() -> dict:
    cpu = ""
    for line in _read("/proc/cpuinfo").splitlines():
        if line.startswith("model name"):
            cpu = line.split(":", 1)[1].strip()
            break
    mem_kb = 0
    for line in _read("/proc/meminfo").splitlines():
        if line.startswith("MemTotal:"):
            mem_kb = int(line.split()[1])
    versions = {}
    for mod in ("tensorflow", "keras", "keras_hub", "keras_tuner", "numpy"):
        try:
            from importlib.metadata import version

            versions[mod] = version(mod.replace("_", "-"))
        except Exception:
            versions[mod] = None
    return {
        "nproc": os.cpu_count(),
        "ram_gb": round(mem_kb / 1024 / 1024, 1),
        "cpu": cpu or platform.processor(),
        "python": platform.python_version(),
        "platform": platform.platform(),
        **versions,
    }


def run_child(args: list, *, cwd=None, env=None, timeout=1800, stdout_path: Optional[Path] = None) -> dict:
    """Run one child process; returns exit code, wall seconds, its own peak RSS (MB, from
    wait4's rusage of exactly that child) and the tails of its output."""
    out = open(stdout_path, "w") if stdout_path else subprocess.PIPE
    t0 = time.perf_counter()
    p = subprocess.Popen([str(a) for a in args], cwd=cwd, env={**os.environ, **(env or {})},
                         stdout=out, stderr=subprocess.PIPE if stdout_path is None else out, text=True)
    if stdout_path is None:
        try:
            stdout, stderr = p.communicate(timeout=timeout)
        except subprocess.TimeoutExpired:
            p.kill()
            stdout, stderr = p.communicate()
        # communicate() reaped the child: its rusage is gone, callers that need RSS pass a file.
        return {"rc": p.returncode, "seconds": time.perf_counter() - t0, "rss_mb": None,
                "stdout": stdout, "stderr": stderr}
    deadline = time.time() + timeout
    while True:
        pid, status, usage = os.wait4(p.pid, os.WNOHANG)
        if pid:
            break
        if time.time() > deadline:
            p.kill()
            pid, status, usage = os.wait4(p.pid, 0)
            break
        time.sleep(0.05)
    seconds = time.perf_counter() - t0
    p.returncode = os.waitstatus_to_exitcode(status)
    out.close()
    text = Path(stdout_path).read_text(errors="replace")
    return {"rc": p.returncode, "seconds": seconds, "rss_mb": usage.ru_maxrss / 1024.0,
            "stdout": text, "stderr": text}
