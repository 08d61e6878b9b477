"""The embedding kit of the C++ runtime (cpp/, docs/cpp-runtime.md): ``cmake --install`` to a temporary prefix,
a separate consumer project (C++ and C, ``find_package(earn CONFIG REQUIRED)``) and pkg-config, the C API from
C and from Python ctypes (results, every error path, threads), the Java binding, and the ABI (soname, C API
version, exported symbols). Every consumer must return the Python runtime's top-K.

libearn is configured, built and installed once per test session into a temporary directory (or into
$EARN_PACKAGE_BUILD_DIR, reused across sessions). Missing tools (cmake, C/C++ compiler, JDK, ONNX Runtime
headers) skip with the reason; with the tools present, a build that fails is a failure."""

import ctypes
import json
import os
import re
import shutil
import subprocess
import sys
import threading
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import numpy as np
import pytest

from helpers import N_ITEMS, REPO, item_spelling, own_id_engine
from earn_export.runtime import Recommender

HEADERS = [Path("/usr/include/onnxruntime"), REPO.parent / "shared/third_party/onnxruntime/1.27.1-include"]
CPP = REPO / "cpp"
BUILD_TIMEOUT = 1500

if not shutil.which("cmake"):
    pytest.skip("cmake not found: the C++ package is not built (install cmake >= 3.18)", allow_module_level=True)
if not (shutil.which(os.environ.get("CXX", "c++")) and shutil.which(os.environ.get("CC", "cc"))):
    pytest.skip("no C/C++ compiler (cc, c++): the C++ package is not built", allow_module_level=True)
if not any((h / "onnxruntime_cxx_api.h").is_file() for h in HEADERS):
    pytest.skip("no ONNX Runtime C++ headers here: libearn is not built (docs/cpp-runtime.md)", allow_module_level=True)


def _run(cmd, log: Path | None = None, **kw):
    out = subprocess.run([str(c) for c in cmd], capture_output=True, text=True, **kw)
    if log is not None:
        log.write_text(out.stdout + out.stderr)
    return out


def _checked(cmd, **kw):
    out = _run(cmd, timeout=BUILD_TIMEOUT, **kw)
    assert out.returncode == 0, f"{' '.join(map(str, cmd))} failed:\n{out.stdout[-4000:]}\n{out.stderr[-4000:]}"
    return out


@pytest.fixture(scope="session")
def ort_env():
    """The environment a consumer program runs with: libonnxruntime of the installed onnxruntime wheel."""
    from earn_export.runtime.cpp_runtime import onnxruntime_library

    return {**os.environ, "EARN_ORT_LIBRARY": str(onnxruntime_library())}


@pytest.fixture(scope="session")
def installed(tmp_path_factory):
    """cpp/ configured standalone, built (-j2) and installed to a fresh prefix: {prefix, configure log}."""
    root = Path(os.environ.get("EARN_PACKAGE_BUILD_DIR") or tmp_path_factory.mktemp("earn-package"))
    build, prefix = root / "build", tmp_path_factory.mktemp("earn-prefix")
    conf = _checked(["cmake", "-S", CPP, "-B", build, "-DCMAKE_BUILD_TYPE=Release", "-DEARN_BUILD_TESTS=OFF",
                     f"-DPython_EXECUTABLE={sys.executable}", "-Wno-dev"])
    assert "libearn: not built" not in conf.stdout + conf.stderr, conf.stdout + conf.stderr
    _checked(["cmake", "--build", build, "-j2"])
    _checked(["cmake", "--install", build, "--prefix", prefix])
    return {"prefix": prefix, "configure": conf.stdout + conf.stderr}


@pytest.fixture(scope="session")
def consumer(installed, tmp_path_factory):
    """cpp/examples/consumer (C++ and C) configured against the installed prefix only and built."""
    build = tmp_path_factory.mktemp("earn-consumer")
    _checked(["cmake", "-S", CPP / "examples/consumer", "-B", build, f"-DCMAKE_PREFIX_PATH={installed['prefix']}",
              "-DCMAKE_BUILD_TYPE=Release", "-Wno-dev"])
    _checked(["cmake", "--build", build, "-j2"])
    return {"cpp": build / "recommend_cpp", "c": build / "recommend_c", "build": build}


@pytest.fixture(scope="session")
def users_128(tiny_engine):
    """128 histories over the tiny engine's 60-item catalog: mixed lengths (0 .. 8, longer than max_history 5)."""
    rng = np.random.default_rng(26)
    return [rng.integers(0, 60, int(rng.integers(0, 9))).tolist() for _ in range(128)]


def _write_histories(path: Path, histories) -> Path:
    path.write_text("".join(" ".join(map(str, h)) + "\n" for h in histories))
    return path


def _parse(stdout: str, top_k: int):
    items, scores = [], []
    for line in stdout.splitlines():
        left, right = line.split("|")
        items.append([int(x) for x in left.split()])
        scores.append([float(x) for x in right.split()])
    items, scores = np.array(items, np.int64), np.array(scores, np.float32)
    assert items.shape[1:] == (top_k,) and scores.shape == items.shape
    return items, scores


def _assert_same_topk(items, scores, py):
    assert items.shape == py.items.shape
    assert (items == py.items).all()
    assert (np.isneginf(scores) == np.isneginf(py.scores)).all()
    np.testing.assert_allclose(scores, py.scores, atol=1e-5, rtol=0)


# ------------------------------------------------------------------------------------------- install layout
def test_install_layout(installed):
    p = installed["prefix"]
    for rel in ["include/earn/recommender.hpp", "include/earn/c_api.h", "include/earn/visibility.h",
                "lib/cmake/earn/earnConfig.cmake", "lib/cmake/earn/earnConfigVersion.cmake",
                "lib/cmake/earn/earnTargets.cmake", "lib/pkgconfig/earn.pc", "bin/earn-recommend"]:
        assert (p / rel).is_file(), rel
    assert (p / "lib/libearn.so").resolve() == (p / "lib/libearn.so.0").resolve() == (p / "lib/libearn.so.0.1.0")
    # a consumer needs no ONNX Runtime, JSON or OpenSSL headers: none is installed, none is included
    includes = re.findall(r"^#include\s+[<\"]([^>\"]+)", "".join(f.read_text() for f in (p / "include/earn").iterdir()),
                          re.M)
    assert includes and all(i.startswith("earn/") or "/" not in i and "onnxruntime" not in i for i in includes), includes
    assert not list(p.rglob("onnxruntime_cxx_api.h"))


def test_installed_cli_runs(installed, tiny_engine, ort_env, capsys):
    from earn_export.cli import main

    args = [str(tiny_engine), "--history", "3 17 42", "--history", "", "--top-k", "5"]
    assert main(["recommend", *args]) == 0
    want = [json.loads(x) for x in capsys.readouterr().out.splitlines()]
    out = _run([installed["prefix"] / "bin/earn-recommend", *args], env=ort_env, timeout=120)
    assert out.returncode == 0, out.stderr
    assert [json.loads(x) for x in out.stdout.splitlines()] == want


# ------------------------------------------------------------------------------------------- consumers
@pytest.mark.parametrize("lang", ["cpp", "c"])
def test_consumer_equals_python(consumer, tiny_engine, users_128, ort_env, tmp_path, lang):
    """A separate CMake project (find_package(earn CONFIG REQUIRED), target_link_libraries(app earn::earn))
    returns the Python runtime's top-K for 128 users; the C++ one also catches earn::EngineDirError thrown
    inside libearn.so."""
    hist = _write_histories(tmp_path / "h.txt", users_128)
    py = Recommender.load(tiny_engine).recommend(users_128, top_k=10, beam=20)
    out = _run([consumer[lang], tiny_engine, hist, 10, 20], env=ort_env, timeout=300)
    assert out.returncode == 0, out.stderr
    _assert_same_topk(*_parse(out.stdout, 10), py)
    assert (py.items >= 0).all() and len(set(py.items[:, 0].tolist())) > 1  # a non-trivial comparison
    if lang == "cpp":
        assert "caught earn::EngineDirError: " in out.stderr and "does not exist" in out.stderr


def test_consumers_beauty_equal_python(consumer, beauty_engine, beauty_test_histories, ort_env, tmp_path):
    """The same on the Beauty-trained engine, 200 real test users, beam 20."""
    histories = [list(map(int, h)) for h in beauty_test_histories[:200]]
    hist = _write_histories(tmp_path / "h.txt", histories)
    py = Recommender.load(beauty_engine).recommend(histories, top_k=20, beam=20)
    for lang in ("cpp", "c"):
        out = _run([consumer[lang], beauty_engine, hist, 20, 20], env=ort_env, timeout=600)
        assert out.returncode == 0, out.stderr
        _assert_same_topk(*_parse(out.stdout, 20), py)


def test_pkg_config_build(installed, tiny_engine, users_128, ort_env, tmp_path):
    """`cc recommend.c $(pkg-config --cflags --libs earn)` against the installed earn.pc."""
    if not shutil.which("pkg-config"):
        pytest.skip("pkg-config not found")
    env = {**ort_env, "PKG_CONFIG_PATH": str(installed["prefix"] / "lib/pkgconfig")}
    flags = _checked(["pkg-config", "--cflags", "--libs", "earn"], env=env).stdout.split()
    assert _checked(["pkg-config", "--modversion", "earn"], env=env).stdout.strip() == "0.1.0"
    exe = tmp_path / "recommend_c"
    _checked([os.environ.get("CC", "cc"), "-O1", CPP / "examples/consumer/recommend.c", "-o", exe, *flags,
              "-lpthread", f"-Wl,-rpath,{installed['prefix'] / 'lib'}"])
    hist = _write_histories(tmp_path / "h.txt", users_128)
    out = _run([exe, tiny_engine, hist, 10, 20], env=env, timeout=300)
    assert out.returncode == 0, out.stderr
    _assert_same_topk(*_parse(out.stdout, 10), Recommender.load(tiny_engine).recommend(users_128, top_k=10, beam=20))


# ------------------------------------------------------------------------------------------- error paths
def _rehash(d: Path):
    from earn_export.engine.manifest import sha256_file

    man = json.loads((d / "manifest.json").read_text())
    man["sha256"] = {name: sha256_file(d / name) for name in man["sha256"]}
    (d / "manifest.json").write_text(json.dumps(man))


@pytest.fixture(scope="session")
def corrupt_engines(tiny_engine, tmp_path_factory):
    """Copies of the tiny engine with a corrupt file: a garbage trie array and a garbage decode graph (both with
    the manifest's hashes updated, so the parsers see them), and a changed file with the old hash."""
    root = tmp_path_factory.mktemp("corrupt")
    out = {}
    for name, file, rehash in [("npy", "trie.tokens.npy", True), ("onnx", "decode.onnx", True),
                               ("hash", "trie.tokens.npy", False)]:
        d = root / name
        shutil.copytree(tiny_engine, d)
        (d / file).write_bytes(b"\x93NUMPY garbage" * 7 if file.endswith(".npy") else b"not an onnx graph")
        if rehash:
            _rehash(d)
        out[name] = d
    return out


def test_c_error_paths(consumer, tiny_engine, corrupt_engines, ort_env):
    """From C: each error path returns its status and a message (none aborts: the program runs to its end)."""
    out = _run([consumer["c"], "--errors", tiny_engine, corrupt_engines["npy"]], env=ort_env, timeout=300)
    assert out.returncode == 0, out.stdout + out.stderr
    lines = {ln.split(" ", 1)[0]: ln.split(" ", 2)[1:] for ln in out.stdout.splitlines()}
    want = {"missing_engine": ("EARN_ERROR_ENGINE_DIR", "does not exist"),
            "corrupt_engine": ("EARN_ERROR_ENGINE_DIR", "trie.tokens.npy"),
            "null_dir": ("EARN_ERROR_INVALID_ARGUMENT", "engine_dir and out must not be NULL"),
            "options_null_out": ("EARN_ERROR_INVALID_ARGUMENT", "out is NULL"),
            "bad_batch_size": ("EARN_ERROR_INVALID_ARGUMENT", "batch_size must be >= 1, got 0"),
            "bad_threads": ("EARN_ERROR_INVALID_ARGUMENT", "intra_op_threads must be >= 0"),
            "bad_provider": ("EARN_ERROR_INVALID_ARGUMENT", "'NoSuchExecutionProvider' is not in this ONNX Runtime"),
            "unknown_items": ("EARN_ERROR_UNKNOWN_ITEM", "unknown item ids [999999] in the histories of users [0]"),
            "top_k_zero": ("EARN_ERROR_INVALID_ARGUMENT", "need 1 <= top_k <= beam, got top_k=0"),
            "top_k_above_beam": ("EARN_ERROR_INVALID_ARGUMENT", "need 1 <= top_k <= beam, got top_k=30"),
            "bad_offsets": ("EARN_ERROR_INVALID_ARGUMENT", "offsets must be non-decreasing"),
            "null_items": ("EARN_ERROR_INVALID_ARGUMENT", "items is NULL"),
            "bad_on_unknown": ("EARN_ERROR_INVALID_ARGUMENT", "on_unknown must be"),
            "null_recommender": ("EARN_ERROR_INVALID_ARGUMENT", "recommender and out must not be NULL")}
    for case, (status, text) in want.items():
        assert case in lines, out.stdout
        got_status, msg = lines[case][0], (lines[case][1] if len(lines[case]) > 1 else "")
        assert got_status == status and text in msg, (case, lines[case])
    for ok in ("bad_provider_load", "ok_load", "skip_unknown", "max_history"):
        assert lines[ok] == ["EARN_OK", ""], (ok, lines[ok])  # a successful call leaves no message
    assert "skipped 1 0" in out.stdout
    assert re.search(r"^api 1 1 version 0\.1\.0 max_history 5$", out.stdout, re.M)


def test_c_threads(consumer, tiny_engine, users_128, ort_env, tmp_path):
    """From C: 8 pthreads share one recommender, 5 calls each on the 128 users; every result = the serial one."""
    hist = _write_histories(tmp_path / "h.txt", users_128)
    out = _run([consumer["c"], "--threads", tiny_engine, hist, 8], env=ort_env, timeout=600)
    assert out.returncode == 0, out.stdout + out.stderr
    assert out.stdout.strip() == "threads 8 calls 40 mismatches 0 failures 0"


# ------------------------------------------------------------------------------------------- ctypes
class CApi:
    """The C API through ctypes, as a Python (or any FFI) caller would use it."""

    def __init__(self, path: Path):
        lib = self.lib = ctypes.CDLL(str(path))
        P, I64, I64P = ctypes.c_void_p, ctypes.c_int64, ctypes.POINTER(ctypes.c_int64)
        sigs = {"earn_c_api_version": (ctypes.c_uint32, []), "earn_version_string": (ctypes.c_char_p, []),
                "earn_last_error_message": (ctypes.c_char_p, []), "earn_status_name": (ctypes.c_char_p, [ctypes.c_int]),
                "earn_options_create": (ctypes.c_int, [ctypes.POINTER(P)]), "earn_options_free": (None, [P]),
                "earn_options_set_ort_library": (ctypes.c_int, [P, ctypes.c_char_p]),
                "earn_options_set_batch_size": (ctypes.c_int, [P, I64]),
                "earn_recommender_load": (ctypes.c_int, [ctypes.c_char_p, P, ctypes.POINTER(P)]),
                "earn_recommender_free": (None, [P]),
                "earn_recommender_recommend": (ctypes.c_int, [P, I64P, I64P, I64, I64, I64, ctypes.c_int,
                                                              ctypes.POINTER(P)]),
                "earn_recommender_max_history": (ctypes.c_int, [P, I64P]),
                "earn_recommender_is_known": (ctypes.c_int, [P, I64, ctypes.POINTER(ctypes.c_int)]),
                "earn_recommender_manifest_json": (ctypes.c_int, [P, ctypes.POINTER(ctypes.c_char_p)]),
                "earn_result_users": (I64, [P]), "earn_result_top_k": (I64, [P]),
                "earn_result_items": (I64P, [P]), "earn_result_scores": (ctypes.POINTER(ctypes.c_float), [P]),
                "earn_result_skipped": (I64P, [P]), "earn_result_truncated": (I64P, [P]),
                "earn_result_free": (None, [P]),
                "earn_c_api_minor_version": (ctypes.c_uint32, []),
                "earn_recommender_has_id_map": (ctypes.c_int, [P, ctypes.POINTER(ctypes.c_int)]),
                "earn_recommender_lookup_id": (ctypes.c_int, [P, ctypes.c_char_p, I64P]),
                "earn_recommender_original_id": (ctypes.c_int, [P, I64, ctypes.POINTER(ctypes.c_char_p)]),
                "earn_recommender_title": (ctypes.c_int, [P, I64, ctypes.POINTER(ctypes.c_char_p)]),
                "earn_recommender_recommend_ids": (ctypes.c_int, [P, ctypes.POINTER(ctypes.c_char_p), I64P, I64, I64,
                                                                  I64, ctypes.c_int, ctypes.POINTER(P)]),
                "earn_result_id": (ctypes.c_char_p, [P, I64]), "earn_result_title": (ctypes.c_char_p, [P, I64]),
                "earn_result_unknown_count": (I64, [P, I64]),
                "earn_result_unknown_id": (ctypes.c_char_p, [P, I64, I64])}
        for name, (res, args) in sigs.items():
            fn = getattr(lib, name)
            fn.restype, fn.argtypes = res, args

    def message(self) -> str:
        return self.lib.earn_last_error_message().decode()

    def load(self, engine_dir, ort_library=None, batch_size=None):
        """(status, message, handle or None)"""
        opt = ctypes.c_void_p()
        assert self.lib.earn_options_create(ctypes.byref(opt)) == 0
        try:
            if ort_library:
                assert self.lib.earn_options_set_ort_library(opt, str(ort_library).encode()) == 0
            if batch_size is not None:
                st = self.lib.earn_options_set_batch_size(opt, batch_size)
                if st:
                    return st, self.message(), None
            h = ctypes.c_void_p()
            st = self.lib.earn_recommender_load(str(engine_dir).encode(), opt, ctypes.byref(h))
            return st, self.message(), (h if st == 0 else None)
        finally:
            self.lib.earn_options_free(opt)

    def recommend(self, handle, histories, top_k=10, beam=20, skip=False):
        """(status, message, (items, scores, skipped, truncated) or None)"""
        offsets = np.zeros(len(histories) + 1, np.int64)
        offsets[1:] = np.cumsum([len(h) for h in histories])
        flat = np.array([i for h in histories for i in h] or [0], np.int64)
        I64P = ctypes.POINTER(ctypes.c_int64)
        res = ctypes.c_void_p()
        st = self.lib.earn_recommender_recommend(handle, flat.ctypes.data_as(I64P), offsets.ctypes.data_as(I64P),
                                                 len(histories), top_k, beam, int(skip), ctypes.byref(res))
        msg = self.message()
        if st:
            return st, msg, None
        try:
            u, k = self.lib.earn_result_users(res), self.lib.earn_result_top_k(res)
            arr = lambda f, n: np.ctypeslib.as_array(f(res), (n,)).copy()  # noqa: E731
            out = (arr(self.lib.earn_result_items, u * k).reshape(u, k),
                   arr(self.lib.earn_result_scores, u * k).reshape(u, k),
                   arr(self.lib.earn_result_skipped, u), arr(self.lib.earn_result_truncated, u))
        finally:
            self.lib.earn_result_free(res)
        return st, msg, out


    def recommend_ids(self, handle, histories, top_k=10, beam=20, skip=False):
        """Original ids (str) in and out: (status, message, dict of items/titles/index/scores/skipped/unknown or
        None); items and titles are lists of lists with None where the C API returns NULL."""
        offsets = np.zeros(len(histories) + 1, np.int64)
        offsets[1:] = np.cumsum([len(h) for h in histories])
        ids = [str(i).encode() for h in histories for i in h]
        flat = (ctypes.c_char_p * max(len(ids), 1))(*ids)
        I64P = ctypes.POINTER(ctypes.c_int64)
        res = ctypes.c_void_p()
        st = self.lib.earn_recommender_recommend_ids(handle, flat, offsets.ctypes.data_as(I64P), len(histories),
                                                     top_k, beam, int(skip), ctypes.byref(res))
        msg = self.message()
        if st:
            return st, msg, None
        try:
            u, k = self.lib.earn_result_users(res), self.lib.earn_result_top_k(res)
            text = lambda b: None if b is None else b.decode()  # noqa: E731
            out = {"items": [[text(self.lib.earn_result_id(res, r * k + j)) for j in range(k)] for r in range(u)],
                   "titles": [[text(self.lib.earn_result_title(res, r * k + j)) for j in range(k)] for r in range(u)],
                   "index": np.ctypeslib.as_array(self.lib.earn_result_items(res), (u * k,)).reshape(u, k).copy(),
                   "scores": np.ctypeslib.as_array(self.lib.earn_result_scores(res), (u * k,)).reshape(u, k).copy(),
                   "skipped": np.ctypeslib.as_array(self.lib.earn_result_skipped(res), (u,)).copy(),
                   "unknown": {r: [self.lib.earn_result_unknown_id(res, r, j).decode()
                                   for j in range(self.lib.earn_result_unknown_count(res, r))]
                               for r in range(u) if self.lib.earn_result_unknown_count(res, r)}}
        finally:
            self.lib.earn_result_free(res)
        return st, msg, out


@pytest.fixture(scope="session")
def capi(installed):
    return CApi(installed["prefix"] / "lib/libearn.so.0")


@pytest.fixture(scope="session")
def capi_rec(capi, tiny_engine, ort_env):
    st, msg, h = capi.load(tiny_engine, ort_library=ort_env["EARN_ORT_LIBRARY"])
    assert st == 0 and msg == "", msg
    yield h
    capi.lib.earn_recommender_free(h)


def test_ctypes_equals_python_and_c(capi, capi_rec, consumer, tiny_engine, users_128, ort_env, tmp_path):
    py = Recommender.load(tiny_engine).recommend(users_128, top_k=10, beam=20)
    st, msg, (items, scores, skipped, truncated) = capi.recommend(capi_rec, users_128)
    assert st == 0 and msg == ""
    _assert_same_topk(items, scores, py)
    assert (truncated == py.truncated).all() and (skipped == 0).all() and truncated.max() > 0
    c_items, c_scores = _parse(_run([consumer["c"], tiny_engine, _write_histories(tmp_path / "h.txt", users_128),
                                     10, 20], env=ort_env, timeout=300).stdout, 10)
    assert (c_items == items).all() and (c_scores == scores).all()  # C and ctypes: one library, bit for bit
    # the Python binding (its own static copy of libearn) runs in this same process beside libearn.so
    cc = Recommender.load(tiny_engine, backend="cpp").recommend(users_128, top_k=10, beam=20)
    assert (cc.items == items).all() and (cc.scores == scores).all()
    mh = ctypes.c_int64()
    assert capi.lib.earn_recommender_max_history(capi_rec, ctypes.byref(mh)) == 0 and mh.value == 5
    known = ctypes.c_int()
    assert capi.lib.earn_recommender_is_known(capi_rec, 59, ctypes.byref(known)) == 0 and known.value == 1
    assert capi.lib.earn_recommender_is_known(capi_rec, 60, ctypes.byref(known)) == 0 and known.value == 0
    text = ctypes.c_char_p()
    assert capi.lib.earn_recommender_manifest_json(capi_rec, ctypes.byref(text)) == 0
    assert json.loads(text.value) == json.loads((tiny_engine / "manifest.json").read_text())


def test_ctypes_error_paths(capi, capi_rec, tiny_engine, corrupt_engines, tmp_path):
    """Missing engine, corrupt files, unknown items, bad top-k, bad arguments: a status and a message naming
    the problem each; the process (this pytest process) survives all of them."""
    cases = [(tmp_path / "missing", 2, "does not exist"),
             (corrupt_engines["npy"], 2, "trie.tokens.npy"),
             (corrupt_engines["onnx"], 2, "decode.onnx: not a readable ONNX model"),
             (corrupt_engines["hash"], 2, "sha256 mismatch for ['trie.tokens.npy']")]
    for d, status, text in cases:
        st, msg, h = capi.load(d)
        assert (st, h) == (status, None) and text in msg, (d, st, msg)
    st, msg, _ = capi.load(tiny_engine, batch_size=0)
    assert st == 1 and "batch_size must be >= 1" in msg
    st, msg, _ = capi.recommend(capi_rec, [[1, 70000, 2], [3, -4]])
    assert st == 3 and "unknown item ids [-4, 70000] in the histories of users [0, 1]" in msg
    st, msg, out = capi.recommend(capi_rec, [[1, 70000, 2], [3, -4]], skip=True)
    assert st == 0 and msg == "" and out[2].tolist() == [1, 1]
    for top_k, beam in ((0, 20), (21, 20), (-1, 20), (5, 0)):
        st, msg, _ = capi.recommend(capi_rec, [[1]], top_k=top_k, beam=beam)
        assert st == 1 and "need 1 <= top_k <= beam" in msg, (top_k, beam, msg)
    st, msg, _ = capi.recommend(None, [[1]])
    assert st == 1 and "recommender and out must not be NULL" in msg
    assert capi.lib.earn_status_name(3) == b"EARN_ERROR_UNKNOWN_ITEM"
    # a success after a failure clears the message
    assert capi.recommend(capi_rec, [[1]], top_k=5)[:2] == (0, "")


def test_ctypes_threads(capi, capi_rec, users_128):
    """8 threads share one recommender (ctypes releases the GIL): every result equals the serial one, and each
    thread's failing calls read their own message (the message is per thread)."""
    calls = [users_128[i:i + 16] for i in range(0, 128, 16)]
    want = [capi.recommend(capi_rec, c)[2] for c in calls]
    barrier = threading.Barrier(8)

    def work(t):
        barrier.wait()
        bad = []
        for i in range(12):
            j = (t + i) % len(calls)
            st, msg, out = capi.recommend(capi_rec, calls[j])
            assert st == 0 and msg == ""
            assert (out[0] == want[j][0]).all() and (out[1] == want[j][1]).all()
            st, msg, _ = capi.recommend(capi_rec, [[1, 100000 + t]])
            bad.append(st == 3 and f"unknown item ids [{100000 + t}]" in msg)
        return all(bad)

    with ThreadPoolExecutor(8) as pool:
        assert all(pool.map(work, range(8)))


# ------------------------------------------------------------------------------------------- original ids
@pytest.fixture(scope="session", params=["str", "int"])
def own_engine(request, tmp_path_factory):
    """(kind, engine): trained (micro, 1 epoch) on a CSV log of string ids (sku-...) or of integer ids that are
    not 0..n-1, and exported with its item_ids.json (tests/helpers.py own_id_engine)."""
    kind, _, _, engine = own_id_engine(tmp_path_factory.mktemp(f"own-{request.param}"), request.param)
    return kind, engine


def _own_histories(kind):
    """24 histories of original ids over the whole catalog (lengths 0 .. 7) + one empty."""
    rng = np.random.default_rng(27)
    return [[item_spelling(kind, int(i)) for i in rng.integers(0, N_ITEMS, int(rng.integers(0, 8)))]
            for _ in range(24)] + [[]]


def _bad_id(kind):
    return "sku-nope" if kind == "str" else "424242"


def _python_ids(res):
    """Python's RecommendResult in original ids as the C side spells them (str, None where no item)."""
    return [[None if x is None else str(x) for x in row] for row in res.items.tolist()]


def _assert_same_ids(got: dict, py):
    """`got`: items / titles (lists of lists), index / scores ([U, K]), skipped ([U]) of a C++, C or Java call."""
    assert got["items"] == _python_ids(py)
    assert got["titles"] == py.titles.tolist()
    assert (np.asarray(got["index"]) == py.index).all()
    got_scores = np.asarray(got["scores"], np.float32)
    assert (np.isneginf(got_scores) == np.isneginf(py.scores)).all()
    np.testing.assert_allclose(got_scores, py.scores, atol=1e-5, rtol=0)
    assert np.asarray(got["skipped"]).tolist() == py.skipped.tolist()


def _write_id_histories(path: Path, histories) -> Path:
    path.write_text("".join(" ".join(map(str, h)) + "\n" for h in histories))
    return path


def test_cpp_library_original_ids_equal_python(consumer, own_engine, tiny_engine, ort_env, tmp_path):
    """earn::Recommender::recommend_ids from a separate consumer program: Python's original ids, titles and
    scores; an unknown id is named as given (UnknownIdError) or dropped and named (kSkip); an engine without
    a map is refused by name (InvalidArgument)."""
    kind, engine = own_engine
    hist = _own_histories(kind)
    py = Recommender.load(engine).recommend(hist, top_k=5, beam=10)
    assert isinstance(py.items[0][0], int if kind == "int" else str)
    out = _run([consumer["cpp"], "--ids", engine, _write_id_histories(tmp_path / "h.txt", hist), 5, 10, "error"],
               env=ort_env, timeout=300)
    assert out.returncode == 0, out.stderr
    rows = [json.loads(line) for line in out.stdout.splitlines()]
    got = {key: [r[key] for r in rows] for key in ("items", "titles", "skipped")}
    got["index"] = [[Recommender.load(engine).id_map.lookup(x) if x is not None else -1 for x in r["items"]]
                    for r in rows]
    got["scores"] = [[float("-inf") if x is None else x for x in r["scores"]] for r in rows]
    _assert_same_ids(got, py)
    if kind == "str":
        assert rows[0]["titles"][0].startswith("Product ")
    good, bad = str(item_spelling(kind, 3)), _bad_id(kind)
    mixed = _write_id_histories(tmp_path / "bad.txt", [[good, bad], [good]])
    out = _run([consumer["cpp"], "--ids", engine, mixed, 5, 10, "error"], env=ort_env, timeout=300)
    assert out.returncode == 3 and f"caught earn::UnknownIdError (1 users): unknown item ids ['{bad}'] in the " \
        "histories of users [0]" in out.stderr, out.stderr
    out = _run([consumer["cpp"], "--ids", engine, mixed, 5, 10, "skip"], env=ort_env, timeout=300)
    rows = [json.loads(line) for line in out.stdout.splitlines()]
    assert out.returncode == 0 and [(r["skipped"], r["unknown"]) for r in rows] == [(1, [bad]), (0, [])]
    assert rows[0]["items"] == rows[1]["items"]
    out = _run([consumer["cpp"], "--ids", tiny_engine, mixed, 5, 10, "error"], env=ort_env, timeout=300)
    assert out.returncode == 4 and f"caught earn::InvalidArgument: engine {tiny_engine}" in out.stderr
    assert "has no item id map (item_ids.json)" in out.stderr


def test_ctypes_original_ids_equal_python(capi, own_engine, ort_env):
    """The C API's id functions (earn_recommender_recommend_ids, lookup/original/title, the result's id getters)
    through ctypes: Python's answer in original ids; unknown ids named; NULL ids refused."""
    kind, engine = own_engine
    st, msg, h = capi.load(engine, ort_library=ort_env["EARN_ORT_LIBRARY"])
    assert st == 0, msg
    try:
        rec = Recommender.load(engine)
        hist = _own_histories(kind)
        has = ctypes.c_int()
        assert capi.lib.earn_recommender_has_id_map(h, ctypes.byref(has)) == 0 and has.value == 1
        st, msg, got = capi.recommend_ids(h, hist, top_k=5, beam=10)
        assert (st, msg) == (0, "")
        _assert_same_ids(got, rec.recommend(hist, top_k=5, beam=10))
        padded = [[f" {x}\t" for x in h] for h in hist[:4]]  # surrounding whitespace: not part of an id, as in Python
        st, msg, got = capi.recommend_ids(h, padded, top_k=5, beam=10)
        assert (st, msg) == (0, "")
        _assert_same_ids(got, rec.recommend(padded, top_k=5, beam=10))
        # the map's own functions, against Python's id map
        index, text = ctypes.c_int64(), ctypes.c_char_p()
        for n in (0, 17, N_ITEMS - 1):
            original = str(rec.id_map.original(n))
            assert capi.lib.earn_recommender_lookup_id(h, original.encode(), ctypes.byref(index)) == 0
            assert index.value == n
            assert capi.lib.earn_recommender_original_id(h, n, ctypes.byref(text)) == 0 and text.value.decode() == original
            assert capi.lib.earn_recommender_title(h, n, ctypes.byref(text)) == 0
            assert (text.value.decode() if text.value is not None else None) == rec.id_map.title(n)
        assert capi.lib.earn_recommender_lookup_id(h, _bad_id(kind).encode(), ctypes.byref(index)) == 0
        assert index.value == -1
        assert capi.lib.earn_recommender_original_id(h, N_ITEMS, ctypes.byref(text)) == 1
        assert f"catalog index {N_ITEMS} out of range" in capi.message()
        # unknown ids: named as given, or dropped, counted and named
        good, bad = str(item_spelling(kind, 3)), _bad_id(kind)
        st, msg, _ = capi.recommend_ids(h, [[good, bad], [good]], top_k=5, beam=10)
        assert st == 3 and f"unknown item ids ['{bad}'] in the histories of users [0]" in msg
        st, msg, got = capi.recommend_ids(h, [[good, bad], [good]], top_k=5, beam=10, skip=True)
        assert st == 0 and got["skipped"].tolist() == [1, 0] and got["unknown"] == {0: [bad]}
        own = item_spelling(kind, 3)
        py = rec.recommend([[own, bad if kind == "str" else int(bad)], [own]], top_k=5, beam=10, on_unknown="skip")
        _assert_same_ids(got, py)
        # a NULL id and the result getters out of range
        I64P = ctypes.POINTER(ctypes.c_int64)
        offsets = np.array([0, 2], np.int64)
        res = ctypes.c_void_p()
        st = capi.lib.earn_recommender_recommend_ids(h, (ctypes.c_char_p * 2)(good.encode(), None),
                                                     offsets.ctypes.data_as(I64P), 1, 5, 10, 0, ctypes.byref(res))
        assert st == 1 and "items[1] (user 0) is NULL" in capi.message()
        assert capi.lib.earn_result_id(None, 0) is None and capi.lib.earn_result_unknown_count(None, 0) == 0
    finally:
        capi.lib.earn_recommender_free(h)


def test_ctypes_id_functions_refuse_an_engine_without_a_map(capi, capi_rec, tiny_engine, users_128):
    """The tiny engine has no item_ids.json: each id function fails with EARN_ERROR_INVALID_ARGUMENT naming the
    engine; the index functions and their results are unchanged (no ids in the result)."""
    has = ctypes.c_int()
    assert capi.lib.earn_recommender_has_id_map(capi_rec, ctypes.byref(has)) == 0 and has.value == 0
    index, text = ctypes.c_int64(), ctypes.c_char_p()
    calls = {"recommend_ids": lambda: capi.recommend_ids(capi_rec, [["1"]])[0],
             "lookup_id": lambda: capi.lib.earn_recommender_lookup_id(capi_rec, b"1", ctypes.byref(index)),
             "original_id": lambda: capi.lib.earn_recommender_original_id(capi_rec, 1, ctypes.byref(text)),
             "title": lambda: capi.lib.earn_recommender_title(capi_rec, 1, ctypes.byref(text))}
    for name, call in calls.items():
        assert call() == 1, name
        assert f"engine {tiny_engine} has no item id map (item_ids.json)" in capi.message(), (name, capi.message())
    I64P = ctypes.POINTER(ctypes.c_int64)
    flat, offsets = np.array([1, 2], np.int64), np.array([0, 2], np.int64)
    res = ctypes.c_void_p()
    assert capi.lib.earn_recommender_recommend(capi_rec, flat.ctypes.data_as(I64P), offsets.ctypes.data_as(I64P), 1,
                                               5, 10, 0, ctypes.byref(res)) == 0
    assert capi.lib.earn_result_id(res, 0) is None and capi.lib.earn_result_title(res, 0) is None
    assert capi.lib.earn_result_items(res)[0] >= 0
    capi.lib.earn_result_free(res)


def test_java_original_ids_equal_python(java_check, own_engine, tiny_engine, ort_env, tmp_path):
    """Recommender.recommendIds (Java, over the C API): Python's original ids, titles and scores; unknown ids
    named; an engine without a map refused by name."""
    kind, engine = own_engine
    hist = _own_histories(kind)
    py = Recommender.load(engine).recommend(hist, top_k=5, beam=10)
    out = _run([*java_check, "ids", engine, _write_id_histories(tmp_path / "h.txt", hist), 5, 10, "error"],
               env=ort_env, timeout=300)
    assert out.returncode == 0, out.stderr
    rows = [line.split("\t") for line in out.stdout.splitlines()]
    null = lambda x: None if x == "null" else x  # noqa: E731
    got = {"items": [[null(x) for x in r[0].split(",")] for r in rows],
           "titles": [[null(x) for x in r[1].split(",")] for r in rows],
           "scores": [[float(x.replace("Infinity", "inf")) for x in r[2].split(",")] for r in rows],
           "skipped": [int(r[3]) for r in rows], "index": py.index}
    _assert_same_ids(got, py)
    good, bad = str(item_spelling(kind, 3)), _bad_id(kind)
    out = _run([*java_check, "id-errors", engine, good, bad, tiny_engine], env=ort_env, timeout=300)
    assert out.returncode == 0, out.stdout + out.stderr
    lines = {ln.split(" ", 1)[0]: ln.split(" ", 1)[1] for ln in out.stdout.splitlines()}
    assert lines["unknown_ids"].startswith(f"3 unknown item ids ['{bad}'] in the histories of users [0]")
    assert lines["skip_ids"] == "OK"
    for case in ("no_map", "no_map_title"):
        assert lines[case].startswith(f"1 engine {tiny_engine} has no item id map (item_ids.json)"), lines[case]
    assert lines["index_out_of_range"].startswith("1 catalog index -1 out of range")
    assert lines["has_id_map"] == "true false"
    rec = Recommender.load(engine)
    title = rec.id_map.title(0)
    assert lines["original_id_0"] == f"{rec.id_map.original(0)} title_0 {'null' if title is None else title}"
    assert lines["minor"] == "1"


# ------------------------------------------------------------------------------------------- ABI
def test_abi_soname_and_version(installed, capi):
    lib = installed["prefix"] / "lib/libearn.so.0.1.0"
    dyn = _checked(["readelf", "-d", lib]).stdout
    assert re.search(r"\(SONAME\)\s+Library soname: \[libearn\.so\.0\]", dyn), dyn
    assert "onnxruntime" not in dyn  # libonnxruntime is dlopen()ed, not linked
    header = (installed["prefix"] / "include/earn/c_api.h").read_text()
    assert int(re.search(r"#define EARN_C_API_VERSION (\d+)", header).group(1)) == capi.lib.earn_c_api_version() == 1
    minor = int(re.search(r"#define EARN_C_API_MINOR_VERSION (\d+)", header).group(1))
    assert minor == capi.lib.earn_c_api_minor_version() == 1  # 1: the original-id functions
    assert capi.lib.earn_version_string().decode() == "0.1.0"
    cmake_version = (installed["prefix"] / "lib/cmake/earn/earnConfigVersion.cmake").read_text()
    assert 'set(PACKAGE_VERSION "0.1.0")' in cmake_version


def test_abi_exports_only_the_api(installed):
    """nm -D: the defined dynamic symbols are the C API (earn_*) and namespace earn (functions, typeinfo,
    vtables); nothing of ONNX Runtime, nlohmann-json, OpenSSL or the standard library."""
    lib = installed["prefix"] / "lib/libearn.so.0"
    raw = _checked(["nm", "-D", "--defined-only", lib]).stdout.splitlines()
    dem = _checked(["nm", "-D", "--defined-only", "-C", lib]).stdout.splitlines()
    names = [ln.split(" ", 2)[2] for ln in dem]
    allowed = re.compile(r"^(earn_\w+|earn::.*|typeinfo for earn::.*|typeinfo name for earn::.*|vtable for earn::.*)$")
    assert names and all(allowed.match(n) for n in names), [n for n in names if not allowed.match(n)]
    c_names = {ln.split()[2] for ln in raw if not ln.split()[2].startswith("_Z")}
    header = (installed["prefix"] / "include/earn/c_api.h").read_text()
    declared = set(re.findall(r"EARN_API [^;]*?\b(earn_\w+)\(", header))
    assert c_names == declared and len(declared) >= 25, (c_names ^ declared)
    for want in ("earn::Recommender::load(", "earn::Recommender::recommend(", "earn::Recommender::recommend_ids(",
                 "typeinfo for earn::UnknownIdError", "typeinfo for earn::EngineDirError",
                 "earn::load_onnxruntime("):
        assert any(n.startswith(want) for n in names), want


# ------------------------------------------------------------------------------------------- Java
@pytest.fixture(scope="session")
def java_check(installed, tmp_path_factory):
    """RecommenderCheck.java compiled against the installed earn.jar: the command prefix that runs it."""
    if not (shutil.which("javac") and shutil.which("java")):
        pytest.skip("no JDK (javac, java): the Java binding is not built")
    prefix = installed["prefix"]
    jar = prefix / "share/java/earn.jar"
    assert "libearn: Java binding with" in installed["configure"], installed["configure"]
    assert jar.is_file() and (prefix / "lib/libearn_jni.so").is_file()
    classes = tmp_path_factory.mktemp("java-classes")
    _checked(["javac", "-cp", jar, "-d", classes, CPP / "java/test/RecommenderCheck.java"])
    return ["java", "-cp", f"{jar}{os.pathsep}{classes}", f"-Djava.library.path={prefix / 'lib'}", "RecommenderCheck"]


def test_java_equals_python(java_check, tiny_engine, users_128, ort_env, tmp_path):
    hist = _write_histories(tmp_path / "h.txt", users_128)
    out = _run([*java_check, "recommend", tiny_engine, hist, 10, 20], env=ort_env, timeout=300)
    assert out.returncode == 0, out.stderr
    _assert_same_topk(*_parse(out.stdout, 10), Recommender.load(tiny_engine).recommend(users_128, top_k=10, beam=20))
    out = _run([*java_check, "threads", tiny_engine, hist, 4], env=ort_env, timeout=300)
    assert out.returncode == 0 and out.stdout.strip() == "threads 4 calls 16 mismatches 0", out.stdout + out.stderr


def test_java_exceptions_carry_the_c_message(java_check, capi, capi_rec, tiny_engine, corrupt_engines, ort_env):
    out = _run([*java_check, "errors", tiny_engine, corrupt_engines["npy"]], env=ort_env, timeout=300)
    assert out.returncode == 0, out.stdout + out.stderr
    lines = {ln.split(" ", 1)[0]: ln.split(" ", 1)[1] for ln in out.stdout.splitlines()}
    # the same failures through ctypes: Java's EarnException has the C status and exactly the C message
    c_cases = {"missing_engine": capi.load(tiny_engine / "no-such-engine")[:2],
               "corrupt_engine": capi.load(corrupt_engines["npy"])[:2],
               "bad_batch_size": capi.load(tiny_engine, batch_size=0)[:2],
               "unknown_items": capi.recommend(capi_rec, [[1, 999999], [2]], top_k=5)[:2],
               "top_k_zero": capi.recommend(capi_rec, [[1]], top_k=0)[:2],
               "top_k_above_beam": capi.recommend(capi_rec, [[1]], top_k=30)[:2]}
    for case, (status, message) in c_cases.items():
        assert status != 0 and message
        assert lines[case] == f"{status} {message}", (case, lines[case])
    assert lines["skip_unknown"] == "OK"
    assert lines["closed"].startswith("IllegalStateException this Recommender is closed")
    assert lines["api"] == "1 version 0.1.0"
