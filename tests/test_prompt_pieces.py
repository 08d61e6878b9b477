"""Prompt pieces: a prompt built by concatenating stored token ids equals tokenising the prompt text, for every item
of the Beauty catalog and of the synthetic default; engines carry the pieces and the runtime uses them."""

import json

import numpy as np
import pytest

from earn_export.data.data_spec import DataSpec, make_catalog
from earn_export.data.prompts import PromptBuilder, template_words
from earn_export.data.tokenizer import REGISTERS
from earn_export.data.tokenizer import build_tokenizer
from earn_export.engine.prompt_pieces import PIECES_FILE, PromptPieces, PromptPiecesError


def _builder(catalog, paradigm):
    tok = build_tokenizer(template_words(paradigm), catalog.code_tokens(), list(REGISTERS))
    return PromptBuilder(tok, catalog, paradigm=paradigm, prefix_tokens=REGISTERS[:1], suffix_tokens=REGISTERS[1:])


def _assert_pieces_equal_tokenizer(builder, histories):
    pieces = PromptPieces.from_builder(builder)
    assert pieces is not None, "the builder's rows should be concatenations of pieces"
    for h in histories:
        h = h[-builder.max_history:]
        # _cached=False: tokenise the whole prompt text (the ground truth the pieces must reproduce)
        assert pieces.row(h) == builder.row(h, _cached=False), h


def _histories(items, rng, n=300):
    return [rng.choice(items, size=int(rng.integers(0, 21))).tolist() for _ in range(n)]


@pytest.mark.parametrize("paradigm", ["lcrec", "tiger"])
def test_synthetic_every_item_and_random_histories(paradigm):
    data = DataSpec().load()
    builder = _builder(make_catalog(data), paradigm)
    items = builder.catalog.items()
    _assert_pieces_equal_tokenizer(builder, [[i] for i in items] + _histories(items, np.random.default_rng(0)))


def test_beauty_every_item_and_real_histories(beauty_dir, beauty_test_histories):
    from earn_export.data.sequences import load_sequential

    builder = _builder(make_catalog(load_sequential(beauty_dir)), "lcrec")
    items = builder.catalog.items()
    assert len(items) == 12035
    _assert_pieces_equal_tokenizer(builder, [[i] for i in items] + list(beauty_test_histories[:500]))


def test_save_load_round_trip_and_refusals(tmp_path):
    pieces = PromptPieces.from_item_paths({0: [10, 11], 2: [12]}, special_prefix=[1], prefix=[5], head=[6],
                                          sep=[7], tail=[8], suffix=[9], pad_id=0, max_history=4,
                                          register_token_ids=[5, 9])
    assert pieces.save(tmp_path) == [PIECES_FILE, "prompt_items.offsets.npy", "prompt_items.tokens.npy"]
    back = PromptPieces.load(tmp_path)
    ids, mask = back([[0, 2], [], [2]])
    assert ids.tolist() == [[1, 5, 6, 10, 11, 7, 12, 8, 9],
                            [0, 0, 0, 0, 1, 5, 6, 8, 9],
                            [0, 0, 0, 1, 5, 6, 12, 8, 9]]
    assert mask.sum(1).tolist() == [9, 5, 6]
    assert back.known(0) and not back.known(1) and back.known(2) and not back.known(3)
    with pytest.raises(PromptPiecesError, match="item 1 has no prompt tokens.*on_unknown='skip'"):
        back.row([1])
    doc = json.loads((tmp_path / PIECES_FILE).read_text())
    (tmp_path / PIECES_FILE).write_text(json.dumps({**doc, "format_version": 7}))
    with pytest.raises(PromptPiecesError, match="format_version 7 is not supported.*re-export"):
        PromptPieces.load(tmp_path)
    (tmp_path / PIECES_FILE).write_text(json.dumps(doc))
    np.save(tmp_path / "prompt_items.offsets.npy", np.array([0, 5, 2, 3]))
    with pytest.raises(PromptPiecesError, match="not a CSR index"):
        PromptPieces.load(tmp_path)
    (tmp_path / PIECES_FILE).unlink()
    with pytest.raises(PromptPiecesError, match="missing; re-export"):
        PromptPieces.load(tmp_path)


def test_engine_runtime_uses_pieces_equal_to_the_builder(beauty_ckpt, beauty_engine, beauty_test_histories):
    from earn_export.runtime import Recommender

    man = json.loads((beauty_engine / "manifest.json").read_text())
    assert man["prompt"] == {"format": "pieces", "file": PIECES_FILE}
    rec = Recommender.load(beauty_engine)
    assert isinstance(rec.encoder, PromptPieces)
    histories = list(beauty_test_histories[:64])
    ids, mask = rec.encoder(histories)
    ref_ids, ref_mask = PromptBuilder.load(beauty_ckpt)(histories)
    assert (ids == ref_ids).all() and (mask == ref_mask).all()
