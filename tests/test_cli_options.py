"""One spelling, one meaning, across every command; optional extras never end in a traceback; the benchmark
scripts of ``benchmarks/`` parse their options.

- Every command's parser is built and each option string is read back as (action, type, choices, nargs): a
  spelling with two of those across commands fails the test (the checker is itself tested on a made-up clash).
- The commands that need an optional extra run in one fresh interpreter where importing the extras' packages
  raises ``ModuleNotFoundError`` (as on ``pip install earn-export`` without extras): each must exit 2 with one
  stderr line naming ``pip install 'earn-export[EXTRA]'``.
"""

import argparse
import json
import subprocess
import sys
import textwrap
from collections import defaultdict
from pathlib import Path

import pytest

from earn_export.cli import build_parser

REPO = Path(__file__).resolve().parents[1]
SCRIPTS = sorted(p.stem for p in (REPO / "benchmarks").glob("*.py"))


def signatures(parsers: dict) -> dict:
    """option string -> {(action, type, choices, nargs): [commands]} over ``parsers`` (name -> ArgumentParser)."""
    table = defaultdict(lambda: defaultdict(list))
    for name, p in parsers.items():
        for a in p._actions:
            for opt in a.option_strings:
                if opt in ("-h", "--help", "--debug"):
                    continue
                kind = type(a).__name__
                typ = getattr(a.type, "__qualname__", repr(a.type)) if a.type is not None else None
                choices = tuple(sorted(map(str, a.choices))) if a.choices is not None else None
                table[opt][(kind, typ, choices, a.nargs)].append(name)
    return table


def clashes(parsers: dict) -> dict:
    return {opt: dict(sigs) for opt, sigs in signatures(parsers).items() if len(sigs) > 1}


def _commands() -> dict:
    parser = build_parser()
    sub = next(a for a in parser._actions if isinstance(a, argparse._SubParsersAction))
    return dict(sub.choices)


def test_each_option_string_has_one_meaning():
    found = clashes(_commands())
    assert not found, "option strings with two meanings (type/action/choices/nargs -> commands):\n" + "\n".join(
        f"{opt}: {sigs}" for opt, sigs in found.items())


def test_the_checker_sees_a_clash():
    a, b = argparse.ArgumentParser(), argparse.ArgumentParser()
    a.add_argument("--users", type=int)
    b.add_argument("--users", type=str)
    a.add_argument("--verify", choices=["full", "off"])
    b.add_argument("--verify", action="store_true")
    assert set(clashes({"a": a, "b": b})) == {"--users", "--verify"}
    assert clashes({"a": a, "a2": a}) == {}


def test_bench_has_at_most_20_options():
    bench = _commands()["bench"]
    options = [a for a in bench._actions if a.option_strings and a.dest not in ("help", "debug")]
    assert len(options) <= 20, [a.option_strings for a in options]


# ----------------------------------------------------------------------------------------- optional extras
EXTRA_MODULES = ("tritonclient", "pytriton", "ray", "gguf", "onnxruntime_genai", "tensorrt", "polygraphy")


def extras_blocker(modules=EXTRA_MODULES) -> str:
    """Source that makes ``modules`` look not installed: the path finder no longer finds them (``find_spec`` returns
    None and ``import`` raises ModuleNotFoundError, as on ``pip install earn-export`` without extras)."""
    return textwrap.dedent(f"""
        import sys
        from importlib.machinery import PathFinder
        BLOCKED = {tuple(modules)!r}
        class WithoutExtras(PathFinder):
            @classmethod
            def find_spec(cls, name, path=None, target=None):
                return None if name.split(".")[0] in BLOCKED else PathFinder.find_spec(name, path, target)
        sys.meta_path[:] = [WithoutExtras if f is PathFinder else f for f in sys.meta_path]
    """)


@pytest.fixture(scope="module")
def extra_rows(tiny_engine, tiny_checkpoint, tmp_path_factory):
    t = tmp_path_factory.mktemp("extras")
    (t / "model.gguf").write_bytes(b"GGUF")
    (t / "users.parquet").write_bytes(b"PAR1")
    e, c = str(tiny_engine), str(tiny_checkpoint)
    return [  # (argv, extra)
        (["query", "http://127.0.0.1:9", "--history", "1 2"], "serve"),
        (["serve", e], "serve"),
        (["triton-repo", e, "--out", str(t / "repo")], "serve"),
        (["batch", e, "--histories-file", str(t / "users.parquet"), "--out", str(t / "recs.parquet")], "serve"),
        (["build", e], "tensorrt"),
        (["check", e, "--reference", c, "--polygraphy"], "parity"),
        (["convert", "smollm2", "--out", str(t / "conv")], "smollm2"),
        (["convert", str(t / "model.gguf"), "--out", str(t / "conv2")], "smollm2"),
        (["train", "--model", str(t / "model.gguf"), "--out", str(t / "run")], "smollm2"),
        (["demo", "--model", "smollm2", "--out", str(t / "demo"), "--engine", str(t / "demo-engine")], "smollm2"),
    ]


def _check_extra_line(code, err, extra, what):
    lines = err.strip().splitlines()
    assert "Traceback" not in err, f"{what}: traceback\n{err}"
    assert len(lines) == 1, f"{what}: stderr is not one line:\n{err}"
    assert lines[0].startswith("earn-export: error: "), f"{what}: {lines[0]}"
    assert f"pip install 'earn-export[{extra}]'" in lines[0], f"{what}: {lines[0]}"
    assert code == 2, f"{what}: exit {code}: {lines[0]}"


def test_missing_extras_exit_2_in_one_line(extra_rows):
    script = extras_blocker() + textwrap.dedent("""
        import contextlib, io, json
        from earn_export.cli import main
        out = []
        for argv in json.loads(sys.argv[1]):
            err = io.StringIO()
            with contextlib.redirect_stderr(err), contextlib.redirect_stdout(io.StringIO()):
                code = main(argv)
            out.append([code, err.getvalue()])
        print(json.dumps(out))
    """)
    proc = subprocess.run([sys.executable, "-c", script, json.dumps([r[0] for r in extra_rows])],
                          capture_output=True, text=True, cwd=REPO, timeout=300)
    assert proc.returncode == 0, proc.stderr
    for (argv, extra), (code, err) in zip(extra_rows, json.loads(proc.stdout)):
        _check_extra_line(code, err, extra, " ".join(argv[:2]))


def test_missing_genai_exits_2_in_one_line(tmp_path):
    script = extras_blocker() + textwrap.dedent("""
        import runpy
        sys.argv = ["benchmarks/peer_genai.py", "--model-config", "micro", "--prompt-lens", "8", "--out", sys.argv[1]]
        runpy.run_path("benchmarks/peer_genai.py", run_name="__main__")
    """)
    proc = subprocess.run([sys.executable, "-c", script, str(tmp_path)],
                          capture_output=True, text=True, cwd=REPO, timeout=300)
    _check_extra_line(proc.returncode, proc.stderr, "genai", "benchmarks/peer_genai.py")


# ------------------------------------------------------------------------------------------ benchmark scripts
@pytest.mark.parametrize("name", SCRIPTS)
def test_benchmark_script_parses_help(name, benchmark_script, capsys):
    """Each script imports earn_export (not a module of it) and builds its parser."""
    mod = benchmark_script(name)
    with pytest.raises(SystemExit) as exc:
        mod.main(["--help"])
    assert exc.value.code == 0
    assert f"usage: python benchmarks/{name}.py" in capsys.readouterr().out


def test_benchmark_scripts_are_not_in_the_package():
    assert not (REPO / "earn_export" / "benchmarks").exists()
    assert set(SCRIPTS) >= {"export_cost", "peer_genai", "pretrained", "cpp_runtime", "cli_startup", "serving",
                            "attention_op", "gpu_smollm2", "serving_capacity"}
