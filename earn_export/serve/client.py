"""``earn-export query`` over ``tritonclient``, and the client calls that ``benchmarks/loadtest.py`` builds on.

A client reads the served model's options first (:func:`server_options`): when the server speaks the catalog's
original item ids (docs/own-ids.md), ``query --history "sku-528 sku-115"`` sends them as a BYTES tensor (INT64
for integer ids) and prints the answer in original ids (and titles).
"""

from __future__ import annotations

import functools
import importlib
import json
from urllib.parse import urlparse

import numpy as np

from ..errors import UserError
from . import MODEL_NAME
from .served_model import OPTIONS_PARAMETER


class ClientError(ValueError, UserError):
    """A bad URL or client-side argument; the message names the fix."""


def parse_url(url: str) -> tuple[str, str]:
    """``http://h:p`` / ``grpc://h:p`` / ``h:p`` -> (protocol, "h:p")."""
    if "://" not in url:
        url = "http://" + url
    u = urlparse(url)
    if u.scheme not in ("http", "grpc") or not u.hostname or not u.port:
        raise ClientError(f"URL {url!r}: expected http://HOST:PORT or grpc://HOST:PORT — e.g. http://127.0.0.1:8000")
    host = f"[{u.hostname}]" if ":" in u.hostname else u.hostname
    return u.scheme, f"{host}:{u.port}"


def connect(url: str, timeout_s: float = 30.0):
    """(protocol, tritonclient module, client). One client per thread: tritonclient clients are not thread-safe."""
    protocol, address = parse_url(url)
    tc = importlib.import_module(f"tritonclient.{protocol}")  # tritonclient.http or tritonclient.grpc
    timeouts = {"connection_timeout": timeout_s, "network_timeout": timeout_s} if protocol == "http" else {}
    return protocol, tc, tc.InferenceServerClient(address, **timeouts)


def admin_json(url: str, method: str) -> dict:
    """``client.<method>(earn_recommender)`` (model config, statistics) as a JSON dict over either protocol."""
    protocol, _, client = connect(url)
    try:
        return getattr(client, method)(MODEL_NAME, **({"as_json": True} if protocol == "grpc" else {}))
    finally:
        client.close()


def server_options(url: str) -> dict:
    """The serving options the model was started with (engine dir, beam, limits, ids), from its model config."""
    cfg = admin_json(url, "get_model_config")
    cfg = cfg.get("config", cfg)  # gRPC wraps the config
    return json.loads(cfg["parameters"][OPTIONS_PARAMETER]["string_value"])


def history_array(history, id_type: str = "") -> np.ndarray:
    """One history as the served model takes it: an object array of str for string ids (BYTES), else int64."""
    if id_type == "str":
        return np.asarray([str(x) for x in history], dtype=object)
    return np.asarray(history, np.int64)


def infer(tc, client, protocol: str, history, top_k=None, dtype=None, timeout_s: float = 30.0,
          extra: tuple = ()) -> dict:
    """One request -> {"items", "scores", "skipped", "truncated", *extra} (raises InferenceServerException).
    ``dtype`` overrides the declared datatype (bad requests); ``extra``: "index", "titles" of original ids."""
    history = np.asarray(history)
    history = history[None] if history.ndim == 1 else history
    x = tc.InferInput("history", list(history.shape), dtype or ("BYTES" if history.dtype == object else "INT64"))
    x.set_data_from_numpy(history)
    inputs = [x]
    if top_k is not None:
        inputs.append(tc.InferInput("top_k", [1, 1], "INT64"))
        inputs[-1].set_data_from_numpy(np.asarray(top_k, np.int64).reshape(1, 1))
    names = ("items", "scores", "skipped", "truncated", *extra)
    kw = {"client_timeout": timeout_s} if protocol == "grpc" else {}
    res = client.infer(MODEL_NAME, inputs, outputs=[tc.InferRequestedOutput(n) for n in names], **kw)
    return {n: res.as_numpy(n) for n in names}


def decode_ids(values, id_type: str) -> list:
    """A BYTES/INT64 ``items`` row as Python ids: str for string ids, else int."""
    if id_type == "str":
        return [x.decode("utf-8") if isinstance(x, bytes) else str(x) for x in values]
    return [int(x) for x in values]


def server_reachable(command):
    """A command talking to ``args.url``: nothing listening there is a user error naming what to start."""
    @functools.wraps(command)
    def run(args, **kwargs):
        try:
            return command(args, **kwargs)
        except ConnectionError as exc:
            raise ClientError(f"cannot reach a server at {args.url} ({exc.strerror or exc}) — start one with "
                              "`earn-export serve ENGINE_DIR`, or check the URL and port") from exc

    return run


def served_histories(texts: list[list[str]], id_type: str, where: str) -> list:
    """History tokens as the server takes them: strings for string original ids, else integers (original integer
    ids or catalog indices; anything else is refused naming the token and what the server expects)."""
    if id_type == "str":
        return [list(h) for h in texts]
    for hist in texts:
        bad = [x for x in hist if not x.lstrip("-").isdigit()]
        if bad:
            what = ("the engine's original item ids are integers" if id_type == "int" else
                    "the served model takes catalog indices (integers): the engine has no item id map, or the "
                    "server was started with --catalog-ids")
            raise ClientError(f"{where}: {what}, got {bad[0]!r} — see docs/own-ids.md")
    return [[int(x) for x in hist] for hist in texts]


@server_reachable
def run_query(args) -> int:
    from tritonclient.utils import InferenceServerException

    opts = server_options(args.url)
    id_type = opts.get("id_type", "")  # "" catalog indices, "int"/"str" the catalog's original ids
    extra = (("index", "titles") if opts.get("titles") else ("index",)) if id_type else ()
    histories = served_histories(args.history, id_type, "query --history")
    protocol, tc, client = connect(args.url, timeout_s=args.timeout)
    code = 0
    try:
        for hist in histories:
            try:
                out = infer(tc, client, protocol, history_array(hist, id_type), args.top_k, timeout_s=args.timeout,
                            extra=extra)
            except InferenceServerException as exc:
                print(json.dumps({"history": hist, "error": str(exc)}, ensure_ascii=False))
                code = 1
                continue
            found = np.flatnonzero(out["index" if id_type else "items"][0] >= 0)  # padding: index / item -1
            items = decode_ids(out["items"][0], id_type)
            row = {"history": hist, "items": [items[j] for j in found],
                   "scores": [round(float(out["scores"][0][j]), 4) for j in found]}
            if "titles" in out:
                row["titles"] = [t.decode("utf-8") or None for t in out["titles"][0][found]]
            row.update({name: int(out[name][0, 0]) for name in ("skipped", "truncated") if out[name][0, 0]})
            print(json.dumps(row, ensure_ascii=False))
    finally:
        client.close()
    return code
