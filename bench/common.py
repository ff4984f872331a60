"""Shared helpers of the benchmark suite: paths, the machine, timing, manifests, child processes.

Nothing here imports TensorFlow at module level, so `run.py --help` and the CLI timing stay
cheap.
"""

from __future__ import annotations

import json
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
SHARED_DATA = Path(os.environ.get("MMAUTO_BENCH_DATA") or REPO.parent / "shared" / "data")  # read in place, never copied


def _library_root() -> Path:
    """The checkout whose mmauto this Python imports (a clean clone's venv may run this suite)."""
    import importlib.util

    spec = importlib.util.find_spec("mmauto")
    return Path(spec.origin).resolve().parents[1] if spec and spec.origin else REPO


LIBRARY = _library_root()
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


def library_fingerprint() -> str:
    """A hash of the imported mmauto's source (mmauto/, cli/, recipes/), to notice edits made during a run."""
    import hashlib

    h = hashlib.sha1()
    for folder in ("mmauto", "cli", "recipes"):
        for f in sorted((LIBRARY / folder).rglob("*")):
            if f.suffix in (".py", ".yaml") and "__pycache__" not in f.parts:
                h.update(str(f.relative_to(LIBRARY)).encode())
                h.update(f.read_bytes())
    return h.hexdigest()[:12]


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
    def git(*args):
        try:
            return subprocess.run(["git", *args], cwd=LIBRARY, capture_output=True, text=True, timeout=10).stdout.strip()
        except Exception:
            return ""

    dirty = [line[3:] for line in git("status", "--porcelain").splitlines()
             if line[3:].startswith(("mmauto/", "cli/", "recipes/", "pyproject.toml"))]
    return {
        "git_commit": git("rev-parse", "--short", "HEAD"),
        "library_fingerprint": library_fingerprint(),
        "git_uncommitted_library_files": dirty,
        "nproc": os.cpu_count(),
        "ram_gb": round(mem_kb / 1024 / 1024, 1),
        "cpu": cpu or platform.processor(),
        "python": platform.python_version(),
        "platform": platform.platform(),
        **versions,
    }


def run_child(args: list, *, cwd=None, env=None, timeout=1800) -> dict:
    """Run one child process; returns exit code, wall seconds and the tails of its output."""
    t0 = time.perf_counter()
    try:
        p = subprocess.run([str(a) for a in args], cwd=cwd, env={**os.environ, **(env or {})}, capture_output=True,
                           text=True, timeout=timeout)
        rc, stdout, stderr = p.returncode, p.stdout, p.stderr
    except subprocess.TimeoutExpired as exc:
        rc, stdout, stderr = -9, str(exc.stdout or ""), f"timed out after {timeout}s"
    return {"rc": rc, "seconds": time.perf_counter() - t0, "stdout": stdout, "stderr": stderr}


# A small process that starts the measured command and reports that command's own peak RSS
# (wait4's rusage). It matters: on Linux a child's ru_maxrss starts from the RSS of the process
# it was forked from (the high-water mark is carried over at exec), so measuring `mmauto fit`
# straight from this TensorFlow-laden process would report this process's size instead.
_RSS_WRAPPER = """
import json, os, subprocess, sys, time
out = open(sys.argv[1], "w")
t = time.perf_counter()
p = subprocess.Popen(sys.argv[2:], stdout=out, stderr=subprocess.STDOUT)
_, status, usage = os.wait4(p.pid, 0)
print(json.dumps({"rc": os.waitstatus_to_exitcode(status), "seconds": time.perf_counter() - t, "maxrss_kb": usage.ru_maxrss}))
"""


def run_peak_rss(args: list, log_path: Path, timeout=1800) -> dict:
    """Run a command through the RSS wrapper; returns rc, seconds, peak RSS (MB) and its output."""
    r = run_child([PYTHON, "-c", _RSS_WRAPPER, log_path, *args], timeout=timeout)
    text = Path(log_path).read_text(errors="replace") if Path(log_path).exists() else ""
    if r["rc"] != 0 or not r["stdout"].strip():
        return {"rc": r["rc"] or 1, "seconds": r["seconds"], "rss_mb": None, "output": text + r["stderr"]}
    got = json.loads(r["stdout"].strip().splitlines()[-1])
    return {"rc": got["rc"], "seconds": got["seconds"], "rss_mb": got["maxrss_kb"] / 1024.0, "output": text}


# === Other load on the machine ===


def _proc_table() -> dict[int, tuple[int, float]]:
    """pid -> (parent pid, CPU seconds used so far) for every process."""
    tick = os.sysconf("SC_CLK_TCK")
    out = {}
    for d in os.listdir("/proc"):
        if not d.isdigit():
            continue
        try:
            raw = open(f"/proc/{d}/stat").read()
        except OSError:
            continue
        fields = raw[raw.rindex(")") + 2 :].split()  # after "pid (comm) "
        out[int(d)] = (int(fields[1]), (int(fields[11]) + int(fields[12])) / tick)
    return out


class LoadMonitor:
    """Samples every process's CPU time once a second and splits it into this process tree's
    and everyone else's, so the report can say when other work shared the CPUs during a timing."""

    def __init__(self, interval: float = 1.0):
        import threading

        self.interval = interval
        self.me = os.getpid()
        self.samples: list[tuple[float, float, float]] = []  # (time, own cores, other cores)
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def _is_own(self, pid: int, table: dict) -> bool:
        p, hops = pid, 0
        while p in table and hops < 64:
            if p == self.me:
                return True
            p, hops = table[p][0], hops + 1
        return False

    def _run(self):
        last_t, last = time.time(), _proc_table()
        while not self._stop.wait(self.interval):
            try:
                cur = _proc_table()
            except Exception:
                continue
            now = time.time()
            own = other = 0.0
            for pid, (_, cpu) in cur.items():
                delta = max(cpu - (last[pid][1] if pid in last else 0.0), 0.0)
                if self._is_own(pid, cur):
                    own += delta
                else:
                    other += delta
            self.samples.append((now, own / (now - last_t), other / (now - last_t)))
            last_t, last = now, cur

    def start(self) -> LoadMonitor:
        self._thread.start()
        return self

    def stop(self) -> None:
        self._stop.set()
        self._thread.join(timeout=5)

    def summary(self, since: float = 0.0, until: float = float("inf")) -> dict:
        """Mean cores used by this run and by other processes between two time.time() stamps."""
        s = [x for x in self.samples if since <= x[0] <= until]
        if not s:
            return {"own_cores": None, "other_cores": None, "other_cores_max": None}
        return {"own_cores": round(sum(x[1] for x in s) / len(s), 2), "other_cores": round(sum(x[2] for x in s) / len(s), 2),
                "other_cores_max": round(max(x[2] for x in s), 2)}


def trials_only(board: list) -> list:
    """The leaderboard's trials, without the exported ensemble's row."""
    return [r for r in board if r["trial"] != "ensemble"]
