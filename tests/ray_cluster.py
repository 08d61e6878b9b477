"""A real multi-node Ray cluster on 127.0.0.1 for tests: one head and N worker nodes, each its own ``ray start``.

Why: Ray's in-process ``cluster_utils`` shares one driver process with the nodes; a cluster started with the ``ray``
CLI is what a user runs (separate GCS and raylets, ``--address``), so ``batch --address`` is tested against that.
Every node gets its own ports (so nothing collides with other Ray instances on the machine) and one shared short
temp dir (Unix socket paths are limited to 107 bytes). Teardown kills only processes of this cluster — those whose
command line names its temp dir, and their descendants (workers retitle themselves ``ray::...``) — never
``ray stop``, which would stop every Ray instance of the user.
"""

from __future__ import annotations

import json
import os
import secrets
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import psutil

NON_CPU = {"CPU", "GPU", "memory", "object_store_memory"}


def _free_ports(n: int) -> list[int]:
    socks, ports = [], []
    try:
        while len(ports) < n:
            s = socket.socket()
            s.bind(("127.0.0.1", 0))
            socks.append(s)
            ports.append(s.getsockname()[1])
    finally:
        for s in socks:
            s.close()
    return ports


def _worker_port_range(width: int = 40) -> tuple[int, int]:
    """A range of ``width`` ports that are free now (Ray workers each listen on one)."""
    rng = __import__("random").Random(os.getpid())
    for _ in range(200):
        lo = rng.randrange(20000, 60000 - width)
        ok = True
        for p in range(lo, lo + width):
            with socket.socket() as s:
                try:
                    s.bind(("127.0.0.1", p))
                except OSError:
                    ok = False
                    break
        if ok:
            return lo, lo + width - 1
    raise RuntimeError("no free range of worker ports found")


class LocalRayCluster:
    def __init__(self, workers: int = 2, cpus_per_worker: int = 1, head_cpus: int = 0,
                 object_store_bytes: int = 100 * 2**20):
        self.workers, self.cpus_per_worker, self.head_cpus = workers, cpus_per_worker, head_cpus
        self.object_store_bytes = object_store_bytes
        self.temp_dir = Path(tempfile.mkdtemp(prefix="rc", dir="/tmp"))
        self.ray = str(Path(sys.executable).with_name("ray"))
        # Ray >= 2.5x turns token authentication on for a new cluster when ~/.ray/auth_token exists, but a node
        # joining with `ray start --address` does not read that file unless told: the cluster gets its own token,
        # and every process that talks to it (nodes, drivers) gets this environment
        token = self.temp_dir / "auth_token"
        token.write_text(secrets.token_hex(32))
        token.chmod(0o600)
        self.env = {**os.environ, "RAY_USAGE_STATS_ENABLED": "0", "RAY_AUTH_MODE": "token",
                    "RAY_AUTH_TOKEN_PATH": str(token)}
        for k in ("RAY_ADDRESS", "RAY_AUTH_TOKEN"):
            self.env.pop(k, None)
        self.address = None
        self.node_manager_ports: dict[str, int] = {}  # node label -> its raylet's port
        self.seen: set[int] = set()

    def _start(self, name: str, *extra: str) -> None:
        nm, om, agent, agent_grpc, metrics, rte = _free_ports(6)
        lo, hi = _worker_port_range()
        cmd = [self.ray, "start", "--node-ip-address", "127.0.0.1", "--temp-dir", str(self.temp_dir),
               "--object-store-memory", str(self.object_store_bytes), "--disable-usage-stats",
               "--include-log-monitor", "false", "--node-manager-port", str(nm), "--object-manager-port", str(om),
               "--dashboard-agent-listen-port", str(agent), "--dashboard-agent-grpc-port", str(agent_grpc),
               "--metrics-export-port", str(metrics), "--runtime-env-agent-port", str(rte),
               "--min-worker-port", str(lo), "--max-worker-port", str(hi), *extra]
        r = subprocess.run(cmd, env=self.env, capture_output=True, text=True, timeout=240)
        if r.returncode:
            raise RuntimeError(f"{' '.join(cmd)} failed ({r.returncode}):\n{r.stdout[-3000:]}\n{r.stderr[-3000:]}")
        self.node_manager_ports[name] = nm
        self.seen |= {p.pid for p in self.processes()}

    def start(self, timeout: float = 240.0) -> "LocalRayCluster":
        gcs, client = _free_ports(2)
        try:
            self._start("head", "--head", "--port", str(gcs), "--num-cpus", str(self.head_cpus),
                        "--include-dashboard", "false", "--ray-client-server-port", str(client),
                        "--resources", json.dumps({"head": 1}))
            self.address = f"127.0.0.1:{gcs}"
            for i in range(1, self.workers + 1):
                self._start(f"worker_{i}", "--address", self.address, "--num-cpus", str(self.cpus_per_worker),
                            "--resources", json.dumps({f"worker_{i}": 1}))
            self.wait_nodes(self.workers + 1, timeout)
        except BaseException:
            self.stop()
            raise
        return self

    def wait_nodes(self, n: int, timeout: float) -> None:
        """Wait (bounded) until the GCS lists ``n`` alive nodes."""
        code = ("import ray, json; ray.init(address=%r, log_to_driver=False); "
                "print(json.dumps(sum(1 for x in ray.nodes() if x['Alive'])))" % self.address)
        deadline = time.monotonic() + timeout
        alive = 0
        while time.monotonic() < deadline:
            r = subprocess.run([sys.executable, "-c", code], env=self.env, capture_output=True, text=True,
                               timeout=max(10.0, deadline - time.monotonic()))
            if r.returncode == 0:
                alive = int(r.stdout.strip().splitlines()[-1])
                if alive >= n:
                    return
            time.sleep(1.0)
        raise TimeoutError(f"only {alive} of {n} Ray nodes alive after {timeout:.0f} s")

    def processes(self) -> list[psutil.Process]:
        """Processes of this cluster: command line names our temp dir, or a descendant of such a process."""
        roots = []
        tag = str(self.temp_dir)
        for p in psutil.process_iter(["pid", "cmdline"]):
            try:
                if any(tag in a for a in (p.info["cmdline"] or [])):
                    roots.append(p)
            except (psutil.NoSuchProcess, psutil.AccessDenied):
                continue
        found = {p.pid: p for p in roots}
        for p in roots:
            try:
                for c in p.children(recursive=True):
                    found[c.pid] = c
            except psutil.NoSuchProcess:
                continue
        return list(found.values())

    def raylet(self, name: str) -> psutil.Process:
        port = f"--node_manager_port={self.node_manager_ports[name]}"
        for p in self.processes():
            try:
                if p.name() == "raylet" and port in p.cmdline():
                    return p
            except psutil.NoSuchProcess:
                continue
        raise LookupError(f"no raylet for {name}")

    def actor_processes(self, name: str, marker: str = "MapWorker") -> list[psutil.Process]:
        """Worker processes of node ``name`` that run an actor whose title contains ``marker``."""
        out = []
        for c in self.raylet(name).children(recursive=True):
            try:
                if marker in " ".join(c.cmdline()):
                    out.append(c)
            except psutil.NoSuchProcess:
                continue
        return out

    def stop(self, timeout: float = 30.0) -> list[int]:
        """Terminate every process of this cluster (bounded); returns the pids still alive (should be none)."""
        procs = self.processes()
        for p in procs:
            try:
                p.send_signal(signal.SIGTERM)
            except psutil.NoSuchProcess:
                pass
        _, alive = psutil.wait_procs(procs, timeout=timeout)
        for p in alive + self.processes():
            try:
                p.kill()
            except psutil.NoSuchProcess:
                pass
        psutil.wait_procs(alive, timeout=10)
        left = [p.pid for p in self.processes()]
        left += [pid for pid in self.seen if psutil.pid_exists(pid) and pid not in left and _is_ray(pid)]
        shutil.rmtree(self.temp_dir, ignore_errors=True)
        return left


def _is_ray(pid: int) -> bool:
    try:
        p = psutil.Process(pid)
        return p.status() != psutil.STATUS_ZOMBIE and ("ray" in p.name() or "ray" in " ".join(p.cmdline()))
    except psutil.NoSuchProcess:
        return False
