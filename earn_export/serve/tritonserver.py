"""Start and stop the Triton Inference Server binary that ``nvidia-pytriton`` ships, with its Python backend.

Why not PyTriton's ``Triton.bind``: a bound function answers a whole dynamic batch with one exception, so one bad
request would fail the good ones batched with it; a native Python-backend model answers each request on its own.
The wheel leaves the rest to its caller: the stub of this interpreter's version goes to ``backends/python/``;
``LD_LIBRARY_PATH`` starts with *this* interpreter's ``lib/`` (else the stub loads the system's libpython of the
same minor version and fails with ``'_thread.RLock' object has no attribute '_recursion_count'``) and ``PATH``
with this environment's ``bin/`` (so the embedded interpreter finds the same site-packages).
"""

from __future__ import annotations

import contextlib
import json
import os
import secrets
import shutil
import signal
import subprocess
import sys
import sysconfig
import tempfile
import time
import urllib.error
import urllib.request
from dataclasses import dataclass, field
from pathlib import Path

from ..errors import UserError
from .instance_watch import stub_pids


class ServeError(RuntimeError, UserError):
    """The server could not be started, became unhealthy, or could not be stopped; the message says why."""


def pytriton_dist() -> dict:
    """Paths inside the installed ``nvidia-pytriton`` wheel: server binary, Python backend, stub, libraries."""
    try:
        import pytriton
    except ImportError as exc:
        raise ServeError("Triton Inference Server is not installed: `pip install -e '.[serve]'` (or `make install`) "
                         f"installs nvidia-pytriton, which ships it ({exc})") from exc
    root = Path(pytriton.__file__).resolve().parent
    dist = root / "tritonserver"
    version = f"{sys.version_info[0]}.{sys.version_info[1]}"
    stub = dist / "python_backend_stubs" / version / "triton_python_backend_stub"
    paths = {"binary": dist / "bin" / "tritonserver", "python_backend": dist / "backends" / "python", "stub": stub,
             "libs": root.parent / "nvidia_pytriton.libs"}
    if not stub.is_file():
        shipped = sorted(p.name for p in (dist / "python_backend_stubs").iterdir())
        raise ServeError(f"nvidia-pytriton ships Python-backend stubs for Python {shipped}, not {version}; "
                         "run earn-export under one of those Python versions")
    for key in ("binary", "python_backend"):
        if not paths[key].exists():
            raise ServeError(f"nvidia-pytriton installation is incomplete: {paths[key]} is missing; reinstall it")
    return paths


def interpreter_libdir() -> Path | None:
    """The directory holding this interpreter's shared libpython, or None for a statically linked Python."""
    libdir = sysconfig.get_config_var("LIBDIR")
    soname = sysconfig.get_config_var("INSTSONAME") or sysconfig.get_config_var("LDLIBRARY")
    return Path(libdir) if libdir and soname and (Path(libdir) / soname).exists() else None


def server_env(dist: dict, base: dict | None = None) -> dict:
    """The server's environment: this interpreter's libpython first, the wheel's libraries, this env's bin/."""
    env = dict(os.environ if base is None else base)
    libdirs = (interpreter_libdir(), dist["libs"], env.get("LD_LIBRARY_PATH"))
    env["LD_LIBRARY_PATH"] = os.pathsep.join(str(p) for p in libdirs if p)
    env["PATH"] = os.pathsep.join([str(Path(sys.exec_prefix) / "bin"), env.get("PATH", "")])
    env.pop("PYTHONHOME", None)  # the stub re-reads it: keep the embedded interpreter on this env's packages
    return env


def prepare_backends(dist: dict, workdir: Path) -> Path:
    """``workdir/backends/python`` with the wheel's Python backend and this Python version's stub."""
    target = workdir / "backends" / "python"
    target.mkdir(parents=True, exist_ok=True)
    for name in ("libtriton_python.so", "triton_python_backend_utils.py"):
        shutil.copy2(dist["python_backend"] / name, target / name)
    shutil.copy2(dist["stub"], target / "triton_python_backend_stub")
    return target.parent


def _set_pdeathsig():  # the server dies with the process that started it (no orphaned server on a hard kill)
    import ctypes

    with contextlib.suppress(OSError):
        ctypes.CDLL("libc.so.6", use_errno=True).prctl(1, signal.SIGTERM)  # PR_SET_PDEATHSIG


@dataclass
class TritonServer:
    """One ``tritonserver`` process over ``model_repository``: ``start()``, ``wait_ready()``, ``stop()`` (ports must
    be free; ``metrics_port=None`` disables the metrics endpoint)."""

    model_repository: Path
    host: str = "127.0.0.1"
    http_port: int = 8000
    grpc_port: int = 8001
    metrics_port: int | None = None
    exit_timeout_s: int = 10
    log_verbose: int = 0
    workdir: Path | None = None  # made (and removed by stop) when None
    remove_workdir: bool = False
    extra_args: list = field(default_factory=list)
    process: subprocess.Popen | None = None
    log_path: Path | None = None

    def command(self, backends: Path) -> list[str]:
        dist = pytriton_dist()
        shm_prefix = f"earn{os.getpid()}_{secrets.token_hex(3)}_"  # unique: several servers may share /dev/shm
        args = [
            str(dist["binary"]),
            f"--model-repository={self.model_repository}",
            f"--backend-directory={backends}",
            f"--cache-directory={backends.parent / 'caches'}",
            f"--http-address={self.host}", f"--http-port={self.http_port}",
            f"--grpc-address={self.host}", f"--grpc-port={self.grpc_port}",
            f"--exit-timeout-secs={self.exit_timeout_s}",
            "--strict-readiness=true", "--exit-on-error=true",
            f"--backend-config=python,shm-region-prefix-name={shm_prefix}",
            f"--log-verbose={self.log_verbose}",
        ]
        if self.metrics_port is None:
            args.append("--allow-metrics=false")
        else:
            args += ["--allow-metrics=true", f"--metrics-address={self.host}", f"--metrics-port={self.metrics_port}",
                     "--allow-gpu-metrics=false"]
        return args + list(self.extra_args)

    @property
    def http_url(self) -> str:
        return f"{self.host}:{self.http_port}"

    @property
    def grpc_url(self) -> str:
        return f"{self.host}:{self.grpc_port}"

    def start(self) -> "TritonServer":
        if self.process is not None:
            raise ServeError("server already started")
        dist = pytriton_dist()
        if self.workdir is None:
            self.workdir, self.remove_workdir = Path(tempfile.mkdtemp(prefix="earn-triton-")), True
        backends = prepare_backends(dist, self.workdir)
        self.log_path = self.workdir / "tritonserver.log"
        with open(self.log_path, "wb") as log:  # the server holds its own copy of the descriptor
            self.process = subprocess.Popen(self.command(backends), env=server_env(dist), stdout=log,
                                            stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL,
                                            preexec_fn=_set_pdeathsig)
        return self

    def log_tail(self, n: int = 40) -> str:
        if not self.log_path or not self.log_path.is_file():
            return ""
        return "\n".join(self.log_path.read_text(errors="replace").splitlines()[-n:])

    def _http(self, path: str, post: bool = False, port: int | None = None, timeout_s: float = 10.0) -> str:
        """The body of GET (or POST ``{}``) ``path`` on the HTTP endpoint (or ``port``); an error status raises."""
        req = urllib.request.Request(f"http://{self.host}:{port or self.http_port}{path}",
                                     data=b"{}" if post else None, method="POST" if post else "GET")
        with urllib.request.urlopen(req, timeout=timeout_s) as r:
            return r.read().decode()

    def wait_ready(self, timeout_s: float = 180.0, cancel=None) -> bool:
        """Block until the server reports ready (every model loaded and warmed up) -> True, or raise ServeError.
        ``cancel`` (a threading.Event) set while waiting -> False."""
        deadline = time.monotonic() + timeout_s
        while time.monotonic() < deadline:
            if cancel is not None and cancel.is_set():
                return False
            if self.process.poll() is not None:
                raise ServeError(f"tritonserver exited with code {self.process.returncode} before it was ready; "
                                 f"its log ({self.log_path}) ends:\n{self.log_tail()}\n{self._hint()}")
            with contextlib.suppress(urllib.error.URLError, OSError):  # not ready: 400
                self._http("/v2/health/ready", timeout_s=2)
                return True
            time.sleep(0.25)
        tail = self.log_tail()
        self.stop()
        raise ServeError(f"tritonserver was not ready after {timeout_s:.0f} s (raise --ready-timeout on a slow "
                         f"machine); its log ends:\n{tail}")

    def _hint(self) -> str:
        text = self.log_tail(200)
        if "_recursion_count" in text or "libpython" in text:
            return ("hint: the Python-backend stub loaded another libpython than this interpreter's; this Python "
                    f"({sys.executable}) needs a shared libpython (LIBDIR={sysconfig.get_config_var('LIBDIR')})")
        if "Address already in use" in text or "bind" in text.lower() and "fail" in text.lower():
            return "hint: a port is in use; choose others with --http-port / --grpc-port / --metrics-port"
        return ""

    def unload(self, model: str) -> None:
        """Start unloading ``model`` (explicit model control): Triton refuses new requests for it at once (404
        "unknown model", readiness 400) and answers the ones it accepted before it unloads the model."""
        try:
            self._http(f"/v2/repository/models/{model}/unload", post=True)
        except (urllib.error.URLError, OSError) as exc:
            raise ServeError(f"could not ask tritonserver to unload {model!r} ({exc}); is it running with "
                             "--model-control-mode=explicit?") from exc

    def model_state(self, model: str) -> str | None:
        """``model``'s state in the repository index (READY, UNLOADING, UNAVAILABLE, ...), None when unknown."""
        try:
            index = json.loads(self._http("/v2/repository/index", post=True))
        except (urllib.error.URLError, OSError, ValueError):
            return None
        return next((m.get("state") for m in index if m.get("name") == model), None)

    def pending_requests(self, model: str) -> int | None:
        """Requests of ``model`` queued, not yet executing (Triton's metrics); None without a metrics endpoint."""
        if self.metrics_port is None:
            return None
        try:
            text = self._http("/metrics", port=self.metrics_port, timeout_s=5)
        except (urllib.error.URLError, OSError):
            return None
        counts = [int(float(line.rsplit(" ", 1)[1])) for line in text.splitlines()
                  if line.startswith("nv_inference_pending_request_count{") and f'model="{model}"' in line]
        return sum(counts) if counts else None

    def kill(self) -> int | None:
        """Stop at once: SIGKILL the server, then any of its model-instance processes still alive after 10 s (they
        notice their parent's death themselves); removes the workdir."""
        proc = self.process
        if proc is not None and proc.poll() is None:
            stubs = stub_pids(proc.pid)
            proc.kill()
            proc.wait(timeout=30)
            deadline = time.monotonic() + 10
            while stubs and time.monotonic() < deadline:
                stubs = {p for p in stubs if Path(f"/proc/{p}").exists()}
                time.sleep(0.2)
            for p in stubs:
                with contextlib.suppress(OSError):
                    os.kill(p, signal.SIGKILL)
        return self.stop()

    def stop(self) -> int | None:
        """SIGINT (Triton waits for in-flight requests up to exit_timeout_s), then SIGKILL; removes the workdir."""
        proc, code = self.process, None
        if proc is not None:
            if proc.poll() is None:
                proc.send_signal(signal.SIGINT)
                try:
                    proc.wait(timeout=self.exit_timeout_s + 20)
                except subprocess.TimeoutExpired:
                    proc.kill()
                    proc.wait(timeout=30)
            code = proc.returncode
            self.process = None
        if self.remove_workdir and self.workdir is not None:
            shutil.rmtree(self.workdir, ignore_errors=True)
        return code
