"""Model-instance processes of a running ``tritonserver``, and which of them died.

Why: Triton 2.51 does not restart a Python-backend stub that died (OOM kill, segfault); the server keeps reporting
READY while every request handed to the dead instance fails, forever (docs/serve_overload.md). ``earn-export
serve`` watches the stubs and exits non-zero when one dies, so a supervisor restarts it. Linux ``/proc`` only;
elsewhere nothing is watched (the functions return empty sets).
"""

from __future__ import annotations

from pathlib import Path

STUB_NAME = "triton_python_backend_stub"


def _stat(pid: int) -> tuple[str, str, int] | None:
    """(comm, state, ppid) of a process from /proc/PID/stat, None when it is gone."""
    try:
        text = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return None
    comm = text[text.index("(") + 1: text.rindex(")")]
    state, ppid = text[text.rindex(")") + 2:].split()[:2]
    return comm, state, int(ppid)


def stub_pids(server_pid: int) -> set[int]:
    """Live stub processes whose parent is ``server_pid`` (the kernel cuts ``comm`` to 15 characters)."""
    found = set()
    for pid in (int(d.name) for d in Path("/proc").glob("[0-9]*")):  # nothing where there is no /proc
        st = _stat(pid)
        if st and st[2] == server_pid and STUB_NAME.startswith(st[0]) and st[1] != "Z":
            found.add(pid)
    return found


def dead(pids: set[int]) -> set[int]:
    """The pids of ``pids`` that exited (gone, or a zombie not yet reaped by the server)."""
    return {p for p in pids if (st := _stat(p)) is None or st[1] == "Z"}
