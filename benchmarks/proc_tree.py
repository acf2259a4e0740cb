"""CPU seconds and memory of a process and everything it starts, sampled from outside.

Used by ``bench_pipeline.py`` on a ``fervid process`` subprocess: Ray's processes
(raylet, GCS, workers, the classifier actor, Ray's agents) all descend from the driver,
so walking its children finds every process of the run. Each process gets a role from
its command line (a Ray worker that ever ran the classifier actor counts as ``actor``).

Per sample (every ``interval_s``): RSS of every process, and every ``pss_every``-th
sample PSS and USS from ``/proc/PID/smaps_rollup`` (PSS shares a page between the
processes that map it, so the object store's shared memory, mapped by raylet, workers
and the actor, counts once; the sum of RSS counts it in each). CPU seconds are each
process's last reading (user + system), so one that exits between two samples loses at
most ``interval_s`` of CPU; ``cpu_floor`` from ``RUSAGE_CHILDREN`` is the caller's check.
"""

from __future__ import annotations

import threading
import time
from collections import defaultdict
from dataclasses import dataclass, field

import psutil

ROLES = ("driver", "worker", "actor", "raylet", "gcs", "ray-other")


def role_of(cmdline: str, name: str, is_root: bool) -> str:
    if is_root:
        return "driver"
    if "ClassifierActor" in cmdline:
        return "actor"
    if "raylet" in name or "/raylet" in cmdline:
        return "raylet"
    if "gcs_server" in name or "gcs_server" in cmdline:
        return "gcs"
    if cmdline.startswith(("ray::DashboardAgent", "ray::RuntimeEnvAgent")):
        return "ray-other"  # Ray's own agents, named like workers
    if cmdline.startswith("ray::") or "default_worker.py" in cmdline:
        return "worker"
    return "ray-other"


@dataclass
class TreeUsage:
    cpu_s: dict[str, float] = field(default_factory=lambda: defaultdict(float))
    peak_rss: dict[str, int] = field(default_factory=lambda: defaultdict(int))  # per role
    peak_rss_total: int = 0
    peak_pss_total: int = 0
    peak_uss_total: int = 0
    processes: dict[str, int] = field(default_factory=lambda: defaultdict(int))  # count
    #: per process: role, its last command line (cut), CPU s, peak RSS GiB
    per_process: list[tuple[str, str, float, float]] = field(default_factory=list)

    @property
    def cpu_total(self) -> float:
        return sum(self.cpu_s.values())


class TreeMonitor:
    """Samples the tree under ``pid`` on a thread until :meth:`stop`."""

    def __init__(self, pid: int, *, interval_s: float = 0.25, pss_every: int = 4) -> None:
        self.root = psutil.Process(pid)
        self.interval_s, self.pss_every = interval_s, pss_every
        self._cpu: dict[int, float] = {}
        self._role: dict[int, str] = {}
        self._cmd: dict[int, str] = {}
        self._peak: dict[int, int] = defaultdict(int)
        #: (perf_counter, CPU s) of the driver at each sample
        self.driver_cpu: list[tuple[float, float]] = []
        self.usage = TreeUsage()
        self._stop = threading.Event()
        self._t = threading.Thread(target=self._run, daemon=True)
        self._t.start()

    def _procs(self) -> list[psutil.Process]:
        try:
            return [self.root, *self.root.children(recursive=True)]
        except psutil.Error:
            return []

    def _sample(self, k: int) -> None:
        u = self.usage
        rss_role: dict[str, int] = defaultdict(int)
        rss = pss = uss = 0
        full = k % self.pss_every == 0
        for p in self._procs():
            try:
                with p.oneshot():
                    t = p.cpu_times()
                    cmd = " ".join(p.cmdline())
                    role = role_of(cmd, p.name(), p.pid == self.root.pid)
                    if self._role.get(p.pid) == "actor" or (not cmd and p.pid in self._role):
                        role = self._role[p.pid]  # sticky; an exiting process has no cmdline
                    else:
                        self._cmd[p.pid] = cmd[:80]
                    self._role[p.pid] = role
                    self._cpu[p.pid] = t.user + t.system
                    if p.pid == self.root.pid:
                        self.driver_cpu.append((time.perf_counter(), t.user + t.system))
                    m = p.memory_info()
                    self._peak[p.pid] = max(self._peak[p.pid], m.rss)
                    rss_role[role] += m.rss
                    rss += m.rss
                    if full:
                        fm = p.memory_full_info()
                        pss += fm.pss
                        uss += fm.uss
            except (psutil.Error, OSError):
                continue
        for role, v in rss_role.items():
            u.peak_rss[role] = max(u.peak_rss[role], v)
        u.peak_rss_total = max(u.peak_rss_total, rss)
        if full:
            u.peak_pss_total = max(u.peak_pss_total, pss)
            u.peak_uss_total = max(u.peak_uss_total, uss)

    def _run(self) -> None:
        k = 0
        while not self._stop.is_set():
            self._sample(k)
            k += 1
            self._stop.wait(self.interval_s)

    def stop(self) -> TreeUsage:
        self._stop.set()
        self._t.join()
        u = self.usage
        u.cpu_s = defaultdict(float)
        u.processes = defaultdict(int)
        for pid, cpu in self._cpu.items():
            u.cpu_s[self._role[pid]] += cpu
            u.processes[self._role[pid]] += 1
            u.per_process.append(
                (
                    self._role[pid],
                    self._cmd.get(pid, ""),
                    round(cpu, 2),
                    round(self._peak[pid] / 2**30, 3),
                )
            )
        return u


def wait_sampling(proc: psutil.Popen, monitor: TreeMonitor) -> tuple[int, TreeUsage]:
    """Wait for ``proc`` while ``monitor`` samples; one last sample just before exit is
    not possible from outside, so the interval bounds what is lost."""
    while proc.poll() is None:
        time.sleep(0.05)
    return proc.returncode, monitor.stop()
