"""The command line as a user meets it: one-line errors with exit codes, arguments checked before heavy work, every
flag documented with its default, command modules light to import, docs/cli.md's CLI reference current, --quiet.

The bad-invocation table (BAD) covers every command. Rows marked ``light`` must be rejected before torch,
transformers or onnxruntime is imported: they run in one fresh interpreter where importing those raises (so a
row that reached heavy work would end in a traceback and fail). The other rows run in-process. To add a row,
append a tuple; placeholders in braces are paths made by ``bad_inputs``.
"""

import json
import shlex
import shutil
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

from earn_export.cli import COMMANDS, build_parser, main
from helpers import REPO, blocker

HEAVY = ("torch", "transformers", "onnxruntime", "onnx", "tokenizers", "safetensors", "sklearn", "scipy",
         "accelerate", "tensorrt")


BLOCKER = blocker(HEAVY)

# (id, argv, exit code, a substring of the one stderr line, light: rejected before heavy imports)
BAD = [
    ("recommend-missing-engine", "recommend {missing} --history 1", 2, "directory {missing} does not exist", True),
    ("recommend-not-an-engine", "recommend {empty} --history 1", 1, "no manifest.json", True),
    ("recommend-partial-engine", "recommend {partial} --history 1", 1, "missing files ['trie.offsets.npy']", True),
    ("recommend-corrupt-engine", "recommend {corrupt} --history 1", 1, "sha256 mismatch for ['decode.onnx']", True),
    ("inspect-old-format", "inspect {v1}", 1, "format_version 1 is not supported", True),
    ("check-manifest-not-json", "check {badjson}", 1, "not valid JSON", True),
    ("recommend-non-numeric-history", "recommend {engine} --history '1 x 3'", 2, "item ids must be integers", True),
    ("recommend-unknown-items", "recommend {engine} --history '1 99999'", 1, "pass --on-unknown skip", False),
    ("recommend-top-k-above-beam", "recommend {engine} --history 1 --top-k 30", 2,
     "--top-k 30 is larger than --beam 20", True),
    ("recommend-top-k-zero", "recommend {engine} --history 1 --top-k 0", 2, "--top-k: must be >= 1, got 0", True),
    ("recommend-beam-not-a-number", "recommend {engine} --history 1 --beam abc", 2, "expected an integer", True),
    ("recommend-no-history", "recommend {engine}", 2, "no histories given", True),
    ("recommend-bad-histories-file", "recommend {engine} --histories-file {histories}", 2, "{histories}:2:", True),
    ("recommend-bad-backend", "recommend {engine} --history 1 --backend tensorflow", 2, "invalid choice", True),
    ("recommend-checkpoint-without-torch", "recommend {engine} --history 1 --checkpoint {ckpt}", 2,
     "--checkpoint is read only by --backend torch", True),
    ("recommend-torch-without-checkpoint", "recommend {nosource} --history 1 --backend torch", 1,
     "pass --checkpoint DIR", True),
    ("inspect-negative-prompt", "inspect {engine} --prompt-len -500", 2, "--prompt-len: must be >= 1", True),
    ("inspect-zero-beam", "inspect {engine} --beam 0", 2, "--beam: must be >= 1", True),
    ("export-plain-hf-checkpoint", "export {plainhf} --out {out}/e1", 2, "pass --vocab full", True),
    ("export-missing-checkpoint", "export {missing} --out {out}/e2", 2, "does not exist", True),
    ("export-not-a-checkpoint", "export {empty} --out {out}/e3", 2, "no config.json", True),
    ("export-over-user-files", "export {ckpt} --out {userdir}", 2, "refusing to replace", True),
    ("export-no-out", "export {ckpt}", 2, "the following arguments are required: --out", True),
    ("train-csv-bad-timestamp", "train --interactions {csv_time} --out {out}/t1", 1,
     ":3: timestamp 'yesterday' is neither a number nor an ISO date", False),
    ("train-csv-no-delimiter", "train --interactions {csv_cols} --out {out}/t2", 1, "cannot detect the delimiter",
     False),
    ("train-csv-k-core-empties", "train --interactions {csv_small} --out {out}/t3", 1, "lower --k-core", False),
    ("train-data-dir-without-splits", "train --data {empty} --out {out}/t4", 1, "missing split file", False),
    ("train-missing-csv", "train --interactions {missing}.csv --out {out}/t5", 2, "does not exist", True),
    ("train-data-and-interactions", "train --data {empty} --interactions {csv_time} --out {out}/t6", 2,
     "--data and --interactions both given", True),
    ("train-zero-epochs", "train --epochs 0 --out {out}/t7", 2, "--epochs: must be > 0", True),
    ("train-split-layer-word", "train --split-layer abc --out {out}/t8", 2,
     "expected 'auto', 'dense', 'analyze' or an integer", True),
    ("train-split-layer-too-deep", "train --split-layer 9 --out {out}/t9", 2,
     "--split-layer 9 is outside the model's 4 layers (--model-config tiny)", True),
    ("train-split-layer-zero-for-model", "train --model {ckpt} --split-layer 0 --out {out}/t10", 2,
     "--split-layer: expected 'auto', 'dense', 'analyze' or an integer k >= 1", True),
    ("train-split-layer-beyond-model", "train --model {ckpt} --split-layer 999 --out {out}/t11", 2,
     "outside the model's 4 layers (--model {ckpt})", True),
    ("train-unknown-preset", "train --model-config huge --out {out}/t12", 2, "invalid choice: 'huge'", True),
    ("train-out-is-a-file", "train --out {histories}", 2, "exists and is a file", True),
    ("eval-beam-below-20", "eval {engine} --beam 5", 2, "Recall/NDCG@20 need 20", True),
    ("eval-no-data-json", "eval {ckpt}", 2, "no data.json", True),
    ("eval-streaming-on-earn", "eval {ckpt} --baseline streaming --interactions {csv_time}", 2,
     "is EARN (k=2 of 4 layers)", True),
    ("check-top-k-above-beam", "check {engine} --top-k 30", 2, "--top-k 30 is larger than --beam 20", True),
    ("check-without-reference", "check {nosource}", 2, "pass --reference DIR", True),
    ("check-min-identical-above-1", "check {engine} --min-identical 1.5", 2, "must be <= 1", True),
    ("build-missing-engine", "build {missing}", 2, "does not exist", True),
    ("bench-prompt-lens-words", "bench --prompt-lens abc", 2, "expected comma-separated integers", True),
    ("bench-unknown-backend", "bench --backends ort,tensorflow", 2, "unknown backends ['tensorflow']", True),
    ("demo-zero-epochs", "demo --epochs 0", 2, "--epochs: must be > 0", True),
    ("train-analyze-without-model", "train --split-layer analyze --out {out}/t13", 2,
     "--split-layer analyze reads the attention of the model training starts from", True),
    ("export-plugin-with-ort-optimize", "export {ckpt} --out {out}/e4 --attention plugin --ort-optimize", 2,
     "drop one of the two options", True),
    ("export-smoothquant-without-int8", "export {ckpt} --out {out}/e5 --smoothquant 0.5", 2,
     "--smoothquant 0.5 needs --quantize int8", True),
    ("export-smoothquant-alpha-one", "export {ckpt} --out {out}/e6 --quantize int8 --smoothquant 1", 2,
     "and an alpha in [0, 1)", True),
    ("convert-missing-source", "convert {missing} --out {out}/c1", 2, "{missing} does not exist", True),
    ("convert-split-layer-beyond-model", "convert {ckpt} --split-layer 7 --out {out}/c2", 2,
     "--split-layer 7 is outside the model's 4 layers", True),
    ("serve-missing-engine", "serve {missing}", 2, "directory {missing} does not exist", True),
    ("serve-top-k-above-beam", "serve {engine} --top-k 30", 2, "--top-k must be in 1..--beam (20), got 30", True),
    ("serve-zero-instances", "serve {engine} --instances 0", 2, "--instances: must be >= 1", True),
    ("query-bad-scheme", "query ftp://x:1 --history 1", 1, "expected http://HOST:PORT or grpc://HOST:PORT", True),
    ("query-no-server", "query http://127.0.0.1:9 --history 1", 1, "start one with `earn-export serve", False),
    ("triton-repo-missing-engine", "triton-repo {missing} --out {out}/r1", 2, "directory {missing} does not exist",
     True),
    ("batch-missing-histories", "batch {engine} --histories-file {missing}.parquet --out {out}/b.parquet", 2,
     "{missing}.parquet does not exist", True),
    ("batch-torch-backend", "batch {engine} --histories-file {histories} --out {out}/b.parquet --backend torch", 2,
     "the torch reference is for `recommend` and `check`", True),
    ("bench-split-layer-dense", "bench --split-layer dense", 2, "the bench builds the dense twin itself", True),
    ("bench-shape-unknown-key", "bench --shape layers=8", 2, "expected KEY=INT pairs", True),
    ("bench-zero-repeats", "bench --repeats 0", 2, "--repeats: must be >= 1", True),
    ("demo-model-path", "demo --model {ckpt}", 2, "the demo runs the shipped 'smollm2' only", True),
    ("demo-data-without-model", "demo --data {empty}", 2, "demo --data is read by the SmolLM2 demo only", True),
    ("recommend-bad-on-unknown", "recommend {engine} --history 1 --on-unknown drop", 2, "invalid choice: 'drop'",
     True),
    ("analyze-split-layer-auto", "analyze {ckpt} --split-layer auto --out {out}/a4", 2,
     "pass an integer or 'analyze'", True),
    ("analyze-missing-checkpoint", "analyze {missing} --out {out}/a1", 2, "directory {missing} does not exist", True),
    ("analyze-engine-not-checkpoint", "analyze {engine} --out {out}/a2", 1, "not an earn-export checkpoint", False),
    ("analyze-threshold-above-1", "analyze {ckpt} --threshold 3 --out {out}/a3", 2, "--threshold: must be <= 1",
     True),
    ("unknown-command", "nonsense", 2, "invalid choice: 'nonsense'", True),
]


@pytest.fixture(scope="module")
def bad_inputs(tmp_path_factory, tiny_engine, tiny_checkpoint):
    return make_bad_inputs(tmp_path_factory.mktemp("bad-inputs"), tiny_engine, tiny_checkpoint)


def make_bad_inputs(t: Path, tiny_engine: Path, tiny_checkpoint: Path) -> dict:
    """The files and directories the BAD rows refer to, made in ``t`` from a good engine and checkpoint."""
    paths = {"engine": tiny_engine, "ckpt": tiny_checkpoint, "missing": t / "missing", "out": t / "out"}

    def engine_copy(name, edit):
        d = t / name
        shutil.copytree(tiny_engine, d)
        edit(d)
        paths[name] = d

    def manifest_edit(**changes):
        def edit(d):
            man = json.loads((d / "manifest.json").read_text())
            man.update(changes)
            (d / "manifest.json").write_text(json.dumps(man))
        return edit

    engine_copy("partial", lambda d: (d / "trie.offsets.npy").unlink())
    engine_copy("corrupt", lambda d: (d / "decode.onnx").open("ab").write(b"\0"))
    engine_copy("v1", manifest_edit(format_version=1))
    engine_copy("badjson", lambda d: (d / "manifest.json").write_text('{"format_version": 2,'))
    engine_copy("nosource", manifest_edit(source_checkpoint=str(t / "deleted-checkpoint")))
    paths["empty"] = t / "empty"
    paths["empty"].mkdir()
    paths["plainhf"] = t / "plainhf"  # a Hugging Face model: config + weights, no item catalog
    paths["plainhf"].mkdir()
    for name in ("config.json", "model.safetensors"):
        shutil.copy(tiny_checkpoint / name, paths["plainhf"] / name)
    paths["userdir"] = t / "userdir"
    paths["userdir"].mkdir()
    (paths["userdir"] / "notes.txt").write_text("the user's own file\n")
    paths["histories"] = t / "histories.txt"
    paths["histories"].write_text("1 2 3\n4 five 6\n")
    paths["csv_time"] = t / "time.csv"
    paths["csv_time"].write_text("user,item,timestamp\nu1,i1,1\nu1,i2,yesterday\n")
    paths["csv_cols"] = t / "cols.csv"
    paths["csv_cols"].write_text("u1 i1 1\nu1 i2 2\n")
    paths["csv_small"] = t / "small.csv"
    paths["csv_small"].write_text("user,item,timestamp\n" + "".join(f"u{u},i{u},{u}\n" for u in range(6)))
    return {k: str(v) for k, v in paths.items()}


def _fill(text, paths):
    return text.format(**paths)


# commands that need an optional extra: on an install without it their rows are skipped (the one-line
# missing-extra error itself is tested in tests/test_cli_options.py)
COMMAND_EXTRAS = {"serve": ("pytriton", "tritonclient"), "query": ("tritonclient",), "triton-repo": ("tritonclient",),
                  "batch": ("ray", "pyarrow")}


def _skip_without_extra(row):
    from earn_export.cli_args import MissingExtra, require_extras

    command = shlex.split(row[1])[0]
    try:
        require_extras(*COMMAND_EXTRAS.get(command, ()), what=f"earn-export {command}")
    except MissingExtra as exc:
        pytest.skip(str(exc))


def _check_row(code, err, row, paths):
    name, _, want_code, want, _ = row
    lines = err.strip().splitlines()
    assert "Traceback" not in err, f"{name}: traceback\n{err}"
    assert len(lines) == 1, f"{name}: stderr is not one line:\n{err}"
    assert lines[0].startswith("earn-export: error: ") and " — " in lines[0], f"{name}: {lines[0]}"
    assert _fill(want, paths) in lines[0], f"{name}: {lines[0]!r} lacks {_fill(want, paths)!r}"
    assert code == want_code, f"{name}: exit {code}, expected {want_code}: {lines[0]}"


@pytest.fixture(scope="module")
def light_results(bad_inputs):
    """Every light row, run in one fresh interpreter with the heavy libraries blocked: (code, stderr, seconds)."""
    rows = [(r[0], shlex.split(_fill(r[1], bad_inputs))) for r in BAD if r[4]]
    script = BLOCKER + textwrap.dedent("""
        import contextlib, io, json, time
        from earn_export.cli import main
        out = {}
        for name, argv in json.loads(sys.argv[1]):
            err = io.StringIO()
            t0 = time.perf_counter()
            with contextlib.redirect_stderr(err), contextlib.redirect_stdout(io.StringIO()):
                code = main(argv)
            out[name] = [code, err.getvalue(), time.perf_counter() - t0]
        print(json.dumps(out))
    """)
    proc = subprocess.run([sys.executable, "-c", script, json.dumps(rows)], capture_output=True, text=True,
                          cwd=REPO, timeout=300)
    assert proc.returncode == 0, proc.stderr
    return json.loads(proc.stdout)


def test_table_covers_every_command():
    assert len(BAD) >= 20
    commands = {shlex.split(r[1])[0] for r in BAD}
    assert set(COMMANDS) <= commands, f"no bad-invocation row for {set(COMMANDS) - commands}"


@pytest.mark.parametrize("row", [r for r in BAD if r[4]], ids=lambda r: r[0])
def test_bad_invocation_rejected_before_heavy_work(row, light_results, bad_inputs):
    _skip_without_extra(row)
    code, err, seconds = light_results[row[0]]
    _check_row(code, err, row, bad_inputs)


@pytest.mark.parametrize("row", [r for r in BAD if not r[4]], ids=lambda r: r[0])
def test_bad_invocation_fails_in_one_line(row, bad_inputs, capsys):
    _skip_without_extra(row)
    code = main(shlex.split(_fill(row[1], bad_inputs)))
    _check_row(code, capsys.readouterr().err, row, bad_inputs)


def test_console_script_exit_status_and_one_line(bad_inputs):
    """The installed entry point itself (process exit status, real stderr)."""
    exe = Path(sys.executable).with_name("earn-export")
    proc = subprocess.run([str(exe), "recommend", bad_inputs["engine"], "--top-k", "30", "--history", "1"],
                          capture_output=True, text=True, timeout=120)
    assert proc.returncode == 2 and proc.stdout == ""
    assert proc.stderr.startswith("earn-export: error: --top-k 30 is larger than --beam 20") and \
        proc.stderr.count("\n") == 1


def test_debug_shows_the_traceback(bad_inputs, capsys, monkeypatch):
    assert main(["--debug", "inspect", bad_inputs["v1"]]) == 1
    err = capsys.readouterr().err
    assert "Traceback" in err and "EngineDirError" in err and err.strip().endswith("install the earn-export "
                                                                                   "version that wrote it.")
    monkeypatch.setenv("EARN_EXPORT_DEBUG", "1")
    assert main(["inspect", bad_inputs["v1"]]) == 1
    assert "Traceback" in capsys.readouterr().err


def test_unexpected_errors_keep_their_traceback(monkeypatch, bad_inputs):
    """A bug (not a user error) is not hidden behind a one-line message."""
    import earn_export.runtime.cli as rt

    def broken(args):
        raise ZeroDivisionError("a bug")

    monkeypatch.setattr(rt, "run_inspect", broken)
    with pytest.raises(ZeroDivisionError, match="a bug"):
        main(["inspect", bad_inputs["engine"]])


def _all_parsers():
    parser = build_parser()
    sub = next(a for a in parser._actions if a.__class__.__name__ == "_SubParsersAction")
    return sub.choices


def test_every_flag_has_help_and_shows_its_default():
    from earn_export.cli import HelpFormatter

    for name, p in _all_parsers().items():
        formatter = HelpFormatter(p.prog)
        for a in p._actions:
            assert a.help and a.help.strip(), f"earn-export {name}: {a.option_strings or a.dest} has no help text"
            if a.option_strings and a.default is not None and a.default is not False and a.default != [] \
                    and a.default != "==SUPPRESS==":
                assert "default" in formatter._get_help_string(a), f"earn-export {name} {a.option_strings}: " \
                                                                   "--help does not show the default"
    text = " ".join(_all_parsers()["recommend"].format_help().split())
    assert "items per user; at most --beam (default: 10)" in text


def test_command_modules_import_light():
    """`earn-export --help` builds every parser: no command module may import torch/transformers/onnxruntime at
    module level (the guide's convention; this checks it for every module in COMMANDS, merged branches too)."""
    script = BLOCKER + textwrap.dedent("""
        import contextlib, io
        from earn_export.cli import main
        for argv in (["--help"], *[[c, "--help"] for c in sorted(set(__import__("earn_export.cli").cli.COMMANDS))]):
            with contextlib.redirect_stdout(io.StringIO()):
                assert main(argv) == 0, argv
        print("ok")
    """)
    proc = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, cwd=REPO, timeout=120)
    assert proc.returncode == 0 and proc.stdout.strip() == "ok", proc.stderr


def test_cli_reference_is_current(benchmark_script):
    tool = benchmark_script("cli_reference", "tools")
    DEFAULT_PATH, current_block, reference = tool.DEFAULT_PATH, tool.current_block, tool.reference

    block = current_block((REPO / DEFAULT_PATH).read_text(encoding="utf-8"))
    assert block is not None, f"{DEFAULT_PATH} has no generated CLI reference block"
    assert block == reference(), f"the CLI reference in {DEFAULT_PATH} is stale: run `make cli-reference`"


@pytest.mark.slow
def test_train_quiet_prints_only_json_and_warns_on_tiny_data(tmp_path, capsys):
    """--quiet: stdout is the JSON summary (Trainer logs go to stderr); 30 users is a degenerate run: one warning."""
    out = tmp_path / "ckpt"
    assert main(["train", "--model-config", "micro", "--synthetic-users", "30", "--synthetic-items", "40",
                 "--epochs", "1", "--quiet", "--out", str(out)]) == 0
    captured = capsys.readouterr()
    summary = json.loads(captured.out)  # the whole of stdout is one JSON document
    assert summary["checkpoint"] == str(out) and summary["steps"] >= 1
    warnings = [line for line in captured.err.splitlines() if line.startswith("earn-export: warning:")]
    assert len(warnings) == 1 and "training examples from 30 users" in warnings[0]
    assert (out / "model.safetensors").is_file()
