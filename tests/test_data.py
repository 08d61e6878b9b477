"""earn_export.data: sequences and splits, interactions loader, catalog and trie, semantic IDs, tokenizer,
prompts, synthetic data, and the DataError messages for bad input."""

import json
import re
import time

import numpy as np
import pytest

from earn_export.data import (
    DataError, ItemCatalog, PromptBuilder, Trie, build_semantic_ids, build_tokenizer, eval_examples,
    extend_tokenizer, item_features, load_interactions, load_sequential, make_synthetic, register_tokens,
    template_words, train_examples,
)
from earn_export.data.catalog import dedupe_codes, find_duplicates
from helpers import trie_allowed, trie_lookup

REGS = ["<reg_p>", "<reg_s>"]


# ------------------------------------------------------------------------------------------------ fixtures
@pytest.fixture(scope="module")
def synth():
    return make_synthetic(n_users=300, n_items=120, n_clusters=8, seed=3)


@pytest.fixture(scope="module")
def synth_parts(synth):
    cat = ItemCatalog(synth.semantic_ids)
    words = template_words("lcrec")
    tok = build_tokenizer(words, cat.code_tokens(), REGS)
    return cat, tok


def small_catalog():
    return ItemCatalog({0: ["<a_1>", "<b_1>"], 1: ["<a_1>", "<b_2>"], 2: ["<a_2>", "<b_1>"], 3: ["<a_10>", "<b_3>"]})


def write_seq_dir(d, train, valid="1\n2\n", test="1\n2\n", index=None):
    d.mkdir(parents=True, exist_ok=True)
    (d / "sequential_train.txt").write_text(train)
    (d / "sequential_valid.txt").write_text(valid)
    (d / "sequential_test.txt").write_text(test)
    if index is not None:
        (d / "index.json").write_text(json.dumps(index))
    return d


INDEX4 = {str(i): [f"<a_{i % 2}>", f"<b_{i}>"] for i in range(4)}


# ------------------------------------------------------------------------------------------------ trie
def test_trie_exact_csr_layout_and_padded_children():
    t = Trie.build({0: [5, 7], 1: [5, 3], 2: [2, 9]})
    assert t.offsets.tolist() == [0, 2, 3, 5, 5, 5, 5]
    assert t.tokens.tolist() == [2, 5, 9, 3, 7]
    assert t.children.tolist() == [1, 2, 3, 4, 5]
    assert t.leaf_item.tolist() == [-1, -1, -1, 2, 1, 0]
    assert t.depth == 2 and t.n_nodes == 6 and t.n_items == 3
    assert all(a.dtype == np.int64 for a in (t.offsets, t.tokens, t.children, t.leaf_item))
    ct, cn = t.padded_children()
    assert ct.tolist() == [[2, 5], [9, -1], [3, 7], [-1, -1], [-1, -1], [-1, -1]]
    assert cn.tolist() == [[1, 2], [3, -1], [4, 5], [-1, -1], [-1, -1], [-1, -1]]


def test_trie_every_item_reachable_and_round_trips(tmp_path):
    rng = np.random.default_rng(0)
    paths = {}
    while len(paths) < 300:
        p = rng.integers(10, 18, size=4).tolist()
        if p not in paths.values():
            paths[int(rng.integers(0, 10_000))] = p
    t = Trie.build(paths)
    assert t.n_items == len(paths)
    assert t.item_paths() == dict(sorted(paths.items()))
    for item, p in paths.items():
        assert trie_lookup(t, p) == item
    # no dead ends: every node above depth L has children, every depth-L node is a leaf with an item
    fan = np.diff(t.offsets)
    assert ((fan == 0) == (t.leaf_item >= 0)).all()
    path = t.save(tmp_path / "trie.npz")
    assert path == tmp_path / "trie.npz" and path.is_file()
    with np.load(path) as z:
        assert sorted(z.files) == sorted(["offsets", "tokens", "children", "leaf_item", "depth"])
    t2 = Trie.load(path)
    for k in ("offsets", "tokens", "children", "leaf_item"):
        assert np.array_equal(getattr(t, k), getattr(t2, k))
    assert t2.depth == 4
    assert t2.item_paths() == dict(sorted(paths.items()))  # what the runtime reads back from trie.npz


def test_trie_accepts_no_invalid_path():
    paths = {0: [1, 2, 3], 1: [1, 2, 4], 2: [1, 5, 3], 3: [6, 2, 3]}
    t = Trie.build(paths)
    valid = {tuple(p) for p in paths.values()}
    for p in np.ndindex(8, 8, 8):
        assert (trie_lookup(t, list(p)) >= 0) == (p in valid)
    assert trie_lookup(t, [1, 2]) == -1 and trie_lookup(t, [1, 2, 3, 4]) == -1
    assert trie_allowed(t, []) == [1, 6]
    assert trie_allowed(t, [1]) == [2, 5]
    assert trie_allowed(t, [1, 2]) == [3, 4]
    assert trie_allowed(t, [7]) == []


def test_trie_refuses_duplicates_ragged_and_broken_arrays(tmp_path):
    with pytest.raises(DataError, match=r"share an identifier.*items 0 and 1"):
        Trie.build({0: [1, 2], 1: [1, 2], 2: [1, 3]})
    with pytest.raises(DataError, match="lengths"):
        Trie.build({0: [1, 2], 1: [1, 2, 3]})
    with pytest.raises(DataError, match="zero items"):
        Trie.build({})
    good = Trie.build({0: [1, 2], 1: [3, 4]})
    # a dead end: root -> node 1 (token 1) has no child although depth is 2
    with pytest.raises(DataError, match="dead end"):
        Trie([0, 2, 2, 3, 3], [1, 3, 4], [1, 2, 3], [-1, -1, -1, 1], 2)
    with pytest.raises(DataError, match="not strictly increasing"):
        Trie(good.offsets, [3, 1, 2, 4], good.children, good.leaf_item, 2)
    with pytest.raises(DataError, match="leaf_item"):
        Trie(good.offsets, good.tokens, good.children, [-1, -1, -1, 0, -1], 2)
    np.savez(tmp_path / "bad.npz", offsets=good.offsets, tokens=good.tokens)
    with pytest.raises(DataError, match=r"lacks arrays \['children', 'leaf_item', 'depth'\]"):
        Trie.load(tmp_path / "bad.npz")


# ------------------------------------------------------------------------------------------------ catalog
def test_catalog_save_load_and_raw_index(tmp_path):
    cat = small_catalog()
    assert cat.id_length == 2 and len(cat) == 4
    assert cat.code_tokens() == ["<a_1>", "<a_2>", "<a_10>", "<b_1>", "<b_2>", "<b_3>"]
    assert cat.identifier(3) == "<a_10><b_3>"
    p = cat.save(tmp_path)
    doc = json.loads(p.read_text())
    assert doc["format_version"] == 1 and doc["id_length"] == 2 and doc["items"]["3"] == ["<a_10>", "<b_3>"]
    assert ItemCatalog.load(tmp_path).codes == cat.codes
    raw = tmp_path / "raw.json"
    raw.write_text(json.dumps({str(i): c for i, c in cat.codes.items()}))
    assert ItemCatalog.load(raw).codes == cat.codes


def test_catalog_refuses_and_dedupes_collisions(tmp_path):
    codes = {0: ["<a_1>", "<b_1>"], 1: ["<a_1>", "<b_1>"], 2: ["<a_1>", "<b_0>"], 3: ["<a_1>", "<b_1>"],
             4: ["<a_2>", "<b_1>"]}
    assert find_duplicates(codes) == [[0, 1, 3]]
    with pytest.raises(DataError, match=r"items \[0, 1, 3\] share <a_1><b_1>.*dedupe=True"):
        ItemCatalog(codes)
    fixed, n = dedupe_codes(codes)
    assert n == 2
    assert fixed[0] == ["<a_1>", "<b_1>"] and fixed[1] == ["<a_1>", "<b_2>"] and fixed[3] == ["<a_1>", "<b_3>"]
    assert fixed[2] == codes[2] and fixed[4] == codes[4]
    raw = tmp_path / "dup.json"
    raw.write_text(json.dumps({str(k): v for k, v in codes.items()}))
    with pytest.raises(DataError, match="dedupe=True"):
        ItemCatalog.load(raw)
    cat = ItemCatalog.from_index(raw, dedupe=True)
    assert cat.reassigned == 2 and cat.codes == fixed
    with pytest.raises(DataError, match="same length"):
        ItemCatalog({0: ["<a_1>", "<b_1>"], 1: ["<a_2>"]})


def test_catalog_trie_maps_codes_and_rejects_unknown_codes(tmp_path):
    cat = small_catalog()
    tok = build_tokenizer([], cat.code_tokens(), REGS)
    t = cat.trie(tok)
    ids = dict(zip(cat.code_tokens(), tok.convert_tokens_to_ids(cat.code_tokens())))
    assert t.item_paths() == {i: [ids[c] for c in cs] for i, cs in cat.codes.items()}
    # as the exporter calls it: no tokenizer argument, the one saved beside items.json is used
    d = tmp_path / "ckpt"
    cat.save(d)
    tok.save_pretrained(d)
    assert ItemCatalog.load(d).trie().item_paths() == t.item_paths()
    with pytest.raises(DataError, match="needs a tokenizer"):
        cat.trie()
    small_tok = build_tokenizer([], ["<a_1>", "<b_1>"], REGS)
    with pytest.raises(DataError, match=r"4 identifier code tokens are not in the tokenizer's vocabulary.*"
                                        r"extend_tokenizer"):
        cat.trie(small_tok)


# ------------------------------------------------------------------------------------------------ Beauty
@pytest.mark.beauty
def test_beauty_counts_and_item_base(beauty_dir):
    d = load_sequential(beauty_dir)
    s = d.stats()
    assert (s["users"], s["items"]) == (19383, 12035)
    assert (s["train_interactions"], s["valid_interactions"], s["test_interactions"]) == (122241, 9316, 7313)
    assert s["test_users"] == 3553 and s["valid_users"] == 4295
    # sequence files are 1-based, the index 0-based (module doc of sequences.py)
    assert d.item_base == 1 and d.num_items == 12035
    assert min(min(v) for v in d.train.values() if v) == 0
    assert max(max(v) for v in d.train.values() if v) == 12034
    assert d.train[1] == [1954, 27, 12030, 2757, 2272, 9633]  # line 1: "1 1955 28 12031 2758 2273 9634"
    assert d.skipped == {"identifier_collisions_reassigned": 12}
    assert len(train_examples(d)) == 122241 - 19383


@pytest.mark.beauty
def test_beauty_index_collisions_and_trie(beauty_dir):
    raw = beauty_dir / "beauty.LCRec-1e-3lr.json"
    from earn_export.data.catalog import read_index

    groups = find_duplicates(read_index(raw))
    assert len(groups) == 9 and sum(len(g) for g in groups) == 21
    with pytest.raises(DataError, match="9 identifiers are shared"):
        ItemCatalog.load(raw)
    cat = ItemCatalog.from_index(raw, dedupe=True)
    assert cat.reassigned == 12 and len(cat) == 12035 and cat.id_length == 4
    d = load_sequential(beauty_dir)
    assert d.semantic_ids == cat.codes
    tok = build_tokenizer(template_words("lcrec"), cat.code_tokens(), REGS)
    t = cat.trie(tok)
    assert t.n_items == 12035 and t.depth == 4
    paths = t.item_paths()
    assert len({tuple(p) for p in paths.values()}) == 12035


@pytest.mark.beauty
def test_beauty_eval_examples_do_not_leak(beauty_dir):
    d = load_sequential(beauty_dir)
    ev = eval_examples(d, "valid", max_history=20)
    assert len(ev) == 4295
    for u, h, tg in zip(ev.users, ev.histories, ev.targets):
        assert h == d.train[u][-20:]
        assert tg == set(d.valid[u]) and tg
    et = eval_examples(d, "test", max_history=20)
    assert len(et) == 3553
    n_with_valid = 0
    for u, h, tg in zip(et.users, et.histories, et.targets):
        assert h == (d.train[u] + d.valid[u])[-20:]
        assert tg == set(d.test[u])
        assert not tg & set(h)  # no test item in the history (Beauty has no repeat purchases across splits)
        n_with_valid += bool(d.valid[u]) and d.valid[u][-1] == h[-1]
    assert n_with_valid > 0  # valid items are part of test histories
    assert max(len(h) for h in et.histories) == 20


# ------------------------------------------------------------------------------------------------ sequences
def test_sequential_small_dir_and_examples(tmp_path):
    d = write_seq_dir(tmp_path / "ok", "1 0 1 2\n\n2 3\n", "1 3\n2\n", "1\n2 0 1\n", INDEX4)
    data = load_sequential(d)
    assert data.item_base == 0 and data.num_items == 4
    assert data.train == {1: [0, 1, 2], 2: [3]} and data.valid == {1: [3], 2: []} and data.test == {1: [], 2: [0, 1]}
    assert data.skipped == {"blank_lines": 1}
    ev = eval_examples(data, "test", max_history=2)
    assert ev.users == [2] and ev.histories == [[3]] and ev.targets == [{0, 1}]
    ev = eval_examples(data, "valid", max_history=2)
    assert ev.users == [1] and ev.histories == [[1, 2]] and ev.targets == [{3}]
    tr = train_examples(data, max_history=1)
    assert (tr.users, tr.histories, tr.targets) == ([1, 1], [[0], [1]], [1, 2])


def test_sequential_one_based_files_are_detected(tmp_path):
    d = write_seq_dir(tmp_path / "b1", "1 1 2 4\n2 3\n", index=INDEX4)  # items 1..4, index 0..3
    data = load_sequential(d)
    assert data.item_base == 1 and data.train == {1: [0, 1, 3], 2: [2]}
    with pytest.raises(DataError, match=r"sequential_train.txt:1: item 4 is outside the index"):
        load_sequential(d, item_base=0)


@pytest.mark.parametrize("train,index,message", [
    ("1 0 1\n2 0 x3\n", INDEX4, r"sequential_train.txt:2: 'x3' is not an integer"),
    ("1 0 1\n2 0 7\n", INDEX4, r"sequential_train.txt:2: item 7 is outside the index index.json"),
    ("1 0 1\n2 0 2\n", {"0": ["<a_0>", "<b_0>"], "1": ["<a_0>", "<b_1>"], "3": ["<a_1>", "<b_3>"]},
     r"sequential_train.txt:2: item 2 has no entry in the index"),
    ("", INDEX4, r"sequential_train.txt: the file is empty"),
    ("\n\n", INDEX4, r"sequential_train.txt: the file is empty"),
    ("1 0 1\n2 3\n1 2\n", INDEX4, r"sequential_train.txt:3: user 1 already appears on line 1"),
    ("1 0 -1\n", INDEX4, r"sequential_train.txt:1: negative id -1"),
    ("1 0 1\n", {"0": ["<a_0>", "<b_0>"], "1": ["<a_0>"]}, r"index.json: item 1 has 1 codes but others have 2"),
])
def test_sequential_bad_input_is_a_clear_error(tmp_path, train, index, message):
    d = write_seq_dir(tmp_path / "bad", train, index=index)
    with pytest.raises(DataError, match=message):
        load_sequential(d)


def test_sequential_missing_files_and_index_choice(tmp_path):
    d = tmp_path / "m"
    d.mkdir()
    (d / "sequential_train.txt").write_text("1 0\n")
    with pytest.raises(DataError, match="sequential_valid.txt: missing split file"):
        load_sequential(d)
    d = write_seq_dir(tmp_path / "two", "1 0 1\n", index=INDEX4)
    (d / "other.json").write_text("{}")
    with pytest.raises(DataError, match="several .json files.*pass index="):
        load_sequential(d)
    assert load_sequential(d, index="index.json").num_items == 4
    (d / "bad.json").write_text('{"0": ["<a_0>"],\n "1": }')
    with pytest.raises(DataError, match=r"bad.json:2: invalid JSON"):
        load_sequential(d, index="bad.json")
    d = write_seq_dir(tmp_path / "noidx", "1 0 1\n2 2\n")
    data = load_sequential(d)
    assert data.semantic_ids is None and data.num_items == 3


# ------------------------------------------------------------------------------------------------ interactions
ROWS = [  # user, item, timestamp, title
    ("7", "A", 1, "red lipstick"), ("7", "B", 2, "blue mascara, waterproof"), ("12", "A", 3, ""),
    ("12", "B", 4, ""), ("3", "A", 5, ""), ("3", "C", 6, "cream"), ("4", "D", 7, "soap"), ("100", "A", 8, ""),
    ("100", "B", 11, ""), ("7", "A", 12, ""), ("12", "B", 13, ""), ("100", "A", 14, ""), ("7", "B", 15, ""),
]


def _csv(rows, sep=",", header=None, title=True):
    import csv
    import io

    buf = io.StringIO()
    w = csv.writer(buf, delimiter=sep, lineterminator="\n")
    if header:
        w.writerow(header)
    for r in rows:
        w.writerow(r if title else r[:3])
    return buf.getvalue()


@pytest.mark.parametrize("sep,header,title", [
    (",", None, True), (",", ["user", "item", "timestamp", "title"], True), ("\t", None, False),
    ("\t", ["user_id", "item_id", "timestamp"], False),
])
def test_interactions_kcore_remap_and_global_split(tmp_path, sep, header, title):
    p = tmp_path / "inter.txt"
    p.write_text(_csv(ROWS, sep, header, title))
    d = load_interactions(p, k_core=2)
    # C and D have one interaction: dropped with user 4; then user 3 has one left: dropped (iterative)
    assert d.user_names == ["7", "12", "100"]  # natural (numeric) order, not string order
    assert d.item_names == ["A", "B"] and d.num_items == 2
    assert d.skipped["kcore_users"] == 2 and d.skipped["kcore_items"] == 2 and d.skipped["kcore_interactions"] == 3
    # 10 kept interactions sorted by time: 1 2 3 4 8 11 12 13 | 14 | 15
    assert d.train == {0: [0, 1, 0], 1: [0, 1, 1], 2: [0, 1]}
    assert d.valid == {0: [], 1: [], 2: [0]}
    assert d.test == {0: [1], 1: [], 2: []}
    if title:
        assert d.titles == {0: "red lipstick", 1: "blue mascara, waterproof"}
    else:
        assert d.titles is None


def test_interactions_named_columns_ties_and_dates(tmp_path):
    p = tmp_path / "x.tsv"
    lines = ["item\tts\tuser"] + [f"i{k % 3}\t2020-01-{1 + k:02d}T00:00:00\tu{k % 2}" for k in range(9)]
    lines.append("i0\t2020-01-09T00:00:00\tu1")  # same time as the last row: both must land in one split
    lines.append(lines[-1])  # exact duplicate row: dropped and counted
    p.write_text("\n".join(lines) + "\n")
    d = load_interactions(p, k_core=1)
    assert d.skipped["duplicate_rows"] == 1
    assert d.user_names == ["u0", "u1"] and d.item_names == ["i0", "i1", "i2"]
    n = [sum(len(v) for v in s.values()) for s in (d.train, d.valid, d.test)]
    assert n == [8, 0, 2]  # cut 2 falls on the tied timestamp: both tied rows go to test, valid is empty
    assert d.train[0] == [0, 2, 1, 0] and d.test[0] == [2] and d.test[1] == [0]


@pytest.mark.parametrize("text,kw,message", [
    ("", {}, r"inter.csv: the file is empty"),
    ("u1,i1,1\nu1,i2,oops\n", {}, r"inter.csv:2: timestamp 'oops' is neither a number nor an ISO date"),
    ("u1,i1,1\nu1,i2\n", {"sep": ","}, r"inter.csv:2: 2 fields, expected at least 3"),
    ("u1,i1,1\nu2,i2,2\n", {"k_core": 5}, r"5-core filter removed every interaction"),
    ("just one column\nanother\n", {}, r"cannot detect the delimiter"),
])
def test_interactions_bad_input(tmp_path, text, kw, message):
    p = tmp_path / "inter.csv"
    p.write_text(text)
    with pytest.raises(DataError, match=message):
        load_interactions(p, **kw)


# ------------------------------------------------------------------------------------------------ semantic IDs
def test_semantic_ids_unique_equal_length_and_deterministic():
    rng = np.random.default_rng(0)
    feats = np.repeat(rng.normal(size=(40, 8)), 3, axis=0)  # every feature row three times: forced collisions
    ids = build_semantic_ids(feats, levels=3, codebook=8, seed=0)
    assert sorted(ids) == list(range(120))
    assert {len(v) for v in ids.values()} == {4}
    assert len({tuple(v) for v in ids.values()}) == 120
    pat = [re.compile(rf"^<{c}_(\d+)>$") for c in "abcd"]
    for v in ids.values():
        assert all(p.match(c) for p, c in zip(pat, v))
        assert all(int(pat[k].match(v[k]).group(1)) < 8 for k in range(3))
    assert max(int(v[3][3:-1]) for v in ids.values()) >= 2  # collision level used for the repeated rows
    assert ids[0][:3] == ids[1][:3] == ids[2][:3]
    assert build_semantic_ids(feats, levels=3, codebook=8, seed=0) == ids
    small = build_semantic_ids(rng.normal(size=(5, 4)), levels=2, codebook=256)  # codebook clipped to 5
    assert all(int(v[0][3:-1]) < 5 for v in small.values()) and {len(v) for v in small.values()} == {3}


def test_item_features_from_titles_and_sequences():
    titles = {0: "red lipstick matte", 1: "red lipstick gloss", 2: "blue mascara", 3: "blue mascara",
              4: "hair shampoo"}
    f = item_features(titles=titles, num_items=6, dim=3, seed=0)
    assert f.shape == (6, 3) and f.dtype == np.float32
    assert np.allclose(f[2], f[3]) and np.allclose(f[5], 0)
    assert f[0] @ f[1] > f[0] @ f[4]
    seqs = {0: [0, 1, 0, 1], 1: [2, 3, 2, 3], 2: [0, 1]}
    g = item_features(sequences=seqs, num_items=5, dim=2, seed=0, window=1)
    assert g.shape == (5, 2) and np.allclose(g[4], 0)
    assert np.array_equal(g, item_features(sequences=seqs, num_items=5, dim=2, seed=0, window=1))
    with pytest.raises(DataError, match="needs titles or sequences"):
        item_features()


# ------------------------------------------------------------------------------------------------ tokenizer
def test_tokenizer_round_trip_and_single_code_tokens(tmp_path, synth_parts):
    from transformers import AutoTokenizer

    cat, tok = synth_parts
    assert tok.pad_token_id == 0 and tok.unk_token_id == 1
    codes = cat.code_tokens()
    ids = tok.convert_tokens_to_ids(codes + REGS)
    assert len(set(ids)) == len(ids) and 1 not in ids and min(ids) > len(template_words("lcrec"))
    for c in codes[:50]:
        assert tok(c, add_special_tokens=False)["input_ids"] == [tok.convert_tokens_to_ids(c)]
    assert set(REGS) <= set(tok.all_special_tokens)
    text = PromptBuilder(tok, cat).text([0, 5, 7])
    tok.save_pretrained(tmp_path)
    tok2 = AutoTokenizer.from_pretrained(tmp_path)
    assert tok2(text)["input_ids"] == tok(text)["input_ids"]
    assert tok2.pad_token_id == 0 and len(tok2) == len(tok)
    enc = tok(text)["input_ids"]
    assert 1 not in enc  # every template word and punctuation mark is in the vocabulary
    assert tok.convert_ids_to_tokens(enc[:3]) == ["<reg_p>", "Below", "is"]
    assert register_tokens(1, 1) == (["<reg_p>"], ["<reg_s>"])
    assert register_tokens(2, 3) == (["<reg_p0>", "<reg_p1>"], ["<reg_s0>", "<reg_s1>", "<reg_s2>"])


def _bos_tokenizer():
    """A stand-in for a pretrained tokenizer that adds BOS (no hub access in tests)."""
    from tokenizers import Tokenizer, models, pre_tokenizers, processors
    from transformers import PreTrainedTokenizerFast

    words = ["<s>", "</s>", "<unk>"] + template_words("lcrec")
    tk = Tokenizer(models.WordLevel({w: i for i, w in enumerate(words)}, unk_token="<unk>"))
    tk.pre_tokenizer = pre_tokenizers.Whitespace()
    tk.post_processor = processors.TemplateProcessing(single="<s> $A", special_tokens=[("<s>", 0)])
    return PreTrainedTokenizerFast(tokenizer_object=tk, bos_token="<s>", eos_token="</s>", unk_token="<unk>")


def test_extend_tokenizer_and_bos_first():
    cat = small_catalog()
    tok = _bos_tokenizer()
    n0 = len(tok)
    assert extend_tokenizer(tok, cat.code_tokens(), REGS) is tok
    assert len(tok) == n0 + len(cat.code_tokens()) + 2
    assert set(REGS) <= set(tok.all_special_tokens)
    for paradigm in ("lcrec", "tiger"):
        pb = PromptBuilder(tok, cat, paradigm=paradigm)
        r = pb.row([0, 3])
        assert r[0] == tok.bos_token_id and r[1] == tok.convert_tokens_to_ids("<reg_p>")
        assert r[-1] == tok.convert_tokens_to_ids("<reg_s>")
        assert r == tok(pb.text([0, 3]))["input_ids"]
        ids, mask = pb([[0, 3], []])
        assert (ids[:, -1] == tok.convert_tokens_to_ids("<reg_s>")).all()
        assert ids[1, mask[1].argmax()] == tok.bos_token_id
        assert pb.pad_id == 0  # no pad token: 0


# ------------------------------------------------------------------------------------------------ prompts
@pytest.mark.parametrize("paradigm", ["lcrec", "tiger"])
def test_prompt_rows_registers_padding_truncation(synth_parts, paradigm):
    cat, tok = synth_parts
    pb = PromptBuilder(tok, cat, paradigm=paradigm, max_history=5)
    assert pb.cached
    reg_p, reg_s = tok.convert_tokens_to_ids(REGS)
    hists = [[1, 2, 3, 4, 5, 6, 7, 8], [], [9], [10, 11, 12]]
    ids, mask = pb(hists)
    assert ids.dtype == np.int64 and mask.dtype == np.int64 and ids.shape == mask.shape
    lengths = [len(pb.row(h)) for h in hists]
    assert mask.sum(1).tolist() == lengths and ids.shape[1] == max(lengths)
    for b, n in enumerate(lengths):
        assert (mask[b, : ids.shape[1] - n] == 0).all() and (mask[b, ids.shape[1] - n:] == 1).all()
        assert (ids[b, : ids.shape[1] - n] == tok.pad_token_id).all()
        row = ids[b, mask[b] == 1]
        assert (row == reg_p).sum() == 1 and (row == reg_s).sum() == 1
        assert row[0] == reg_p and row[-1] == reg_s
    assert (ids[:, -1] == reg_s).all()
    assert pb.row(hists[0]) == pb.row(hists[0][-5:])  # oldest items dropped beyond max_history
    assert pb.row(hists[0]) != pb.row(hists[0][-4:])
    if paradigm == "tiger":
        assert pb.row([]) == [reg_p, reg_s]
        assert pb.row([9]) == [reg_p] + cat.token_paths(tok)[9] + [reg_s]
    else:
        empty = pb.row([])
        assert empty == tok(pb.text([]))["input_ids"] and tok.unk_token_id not in empty
        assert len(empty) == 2 + len(tok(pb.text([]).replace("<reg_p>", "").replace("<reg_s>", ""))["input_ids"])
    zero = PromptBuilder(tok, cat, paradigm=paradigm, max_history=0)
    assert zero.row([1, 2]) == zero.row([])


@pytest.mark.parametrize("paradigm", ["lcrec", "tiger"])
def test_prompt_cached_encoding_equals_full_text(synth, synth_parts, paradigm):
    cat, tok = synth_parts
    pb = PromptBuilder(tok, cat, paradigm=paradigm, max_history=20)
    ev = eval_examples(synth, "test")
    assert len(ev) > 50
    texts = [pb.text(h) for h in ev.histories]
    full = tok(texts, add_special_tokens=False)["input_ids"]
    assert [pb.row(h) for h in ev.histories] == [list(x) for x in full]
    assert "in chronological order" in texts[0] if paradigm == "lcrec" else texts[0].startswith("<reg_p><a_")
    if paradigm == "lcrec":
        h = ev.histories[0]
        assert ", ".join(cat.identifier(i) for i in h[-20:]) in texts[0]
    pb.cached = False  # the full-text fallback used for tokenizers whose pieces depend on context
    assert [pb.row(h) for h in ev.histories[:20]] == [list(x) for x in full[:20]]


def test_prompt_multiple_registers_save_load_and_errors(tmp_path, synth_parts):
    cat, _ = synth_parts
    pre, suf = register_tokens(2, 3)
    tok = build_tokenizer(template_words("lcrec"), cat.code_tokens(), pre + suf)
    pb = PromptBuilder(tok, cat, max_history=7, prefix_tokens=pre, suffix_tokens=suf)
    row = pb.row([1, 2])
    reg_ids = tok.convert_tokens_to_ids(pre + suf)
    assert row[:2] == reg_ids[:2] and row[-3:] == reg_ids[2:]
    assert sum(t in reg_ids for t in row) == 5
    pb.save(tmp_path)
    cfg = json.loads((tmp_path / "prompt.json").read_text())
    assert cfg["paradigm"] == "lcrec" and cfg["max_history"] == 7 and cfg["prefix_tokens"] == pre
    assert cfg["suffix_tokens"] == suf and "{items}" in cfg["template"]
    pb2 = PromptBuilder.load(tmp_path)
    hists = [[1, 2, 3], [], list(range(20))]
    a, b = pb(hists), pb2(hists)
    assert np.array_equal(a[0], b[0]) and np.array_equal(a[1], b[1])
    with pytest.raises(DataError, match=r"history items \[100000\] are not in the item catalog"):
        pb.row([1, 100000])
    with pytest.raises(DataError, match="prompt.json: missing"):
        PromptBuilder.load(tmp_path / "nowhere")
    with pytest.raises(DataError, match="register tokens are not in the tokenizer"):
        PromptBuilder(tok, cat, prefix_tokens=["<reg_x>"])
    with pytest.raises(DataError, match="must start with {prefix} and end with {suffix}"):
        PromptBuilder(tok, cat, template="{items} {prefix}{suffix}")


def test_template_words_cover_the_template():
    words = template_words("lcrec")
    assert {"Below", "###", ":", ".", "?", ",", "Instruction", "Response", "chronological"} <= set(words)
    assert len(words) == len(set(words))
    assert template_words("tiger") == []


# ------------------------------------------------------------------------------------------------ synthetic
def test_synthetic_is_deterministic_structured_and_fast():
    t0 = time.process_time()  # CPU seconds: a quadratic slip shows, a loaded machine does not
    a = make_synthetic(seed=5)
    cpu = time.process_time() - t0
    assert cpu < 5, cpu
    b = make_synthetic(seed=5)
    assert a.train == b.train and a.valid == b.valid and a.test == b.test and a.semantic_ids == b.semantic_ids
    assert make_synthetic(seed=6).train != a.train
    s = a.stats()
    assert s["users"] == 2000 and s["items"] == 400
    total = s["train_interactions"] + s["valid_interactions"] + s["test_interactions"]
    assert abs(s["train_interactions"] / total - 0.8) < 0.01 and abs(s["test_interactions"] / total - 0.1) < 0.01
    assert s["test_users"] > 200 and len(a.titles) == 400
    cat = ItemCatalog(a.semantic_ids)  # unique identifiers of one length
    assert cat.id_length == 4
    # sequential dependence: consecutive items share the first code far more often than random pairs
    first = {i: c[0] for i, c in a.semantic_ids.items()}
    pairs = [(x, y) for seq in a.train.values() for x, y in zip(seq, seq[1:])]
    same = np.mean([first[x] == first[y] for x, y in pairs])
    items = [i for seq in a.train.values() for i in seq]
    rng = np.random.default_rng(0)
    rand = np.mean([first[x] == first[y] for x, y in zip(rng.choice(items, 5000), rng.choice(items, 5000))])
    assert same > 2 * rand, (same, rand)
    # popularity skew: the top 10% of items get well over 10% of interactions
    counts = np.sort(np.bincount(items, minlength=400))[::-1]
    assert counts[:40].sum() / counts.sum() > 0.3
