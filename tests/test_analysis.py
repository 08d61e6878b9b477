"""Attention analysis: the metrics against a direct numpy computation, the captured attention against transformers'
eager attention, token groups from the prompt builder, the split rule, and `analyze` end to end."""

import json

import numpy as np
import pytest
import torch

from earn_export.analysis.metrics import GROUPS, METRIC_NAMES, QUERY_SETS, AttentionStats
from earn_export.analysis.probes import capture_attention
from earn_export.analysis.split_rule import recommend_split
from model_configs import tiny_llama, tiny_qwen


# -- metrics vs numpy ------------------------------------------------------------------------------------------
def _numpy_row(p, valid, groups, eps=0.05, topk=5):
    """The paper's definitions on one row, written out directly over the valid keys."""
    idx = np.flatnonzero(valid)
    q = p[idx]
    out = {"sparsity": np.mean(q > eps), "sink_head": q[:3].sum(), "sink_tail": q[-3:].sum(),
           "entropy": -sum(x * np.log(x) for x in q if x > 0), "topk_mass": np.sort(q)[::-1][:topk].sum()}
    for gi, g in enumerate(GROUPS):
        out[f"mass_{g}"] = q[groups[idx] == gi].sum()
    return out


@torch.no_grad()
def attention_probs(model, input_ids: torch.Tensor, attention_mask: torch.Tensor | None = None,
                    mode: str = "dense") -> list[torch.Tensor]:
    """All layers' attention [B, Hq, T, T] for one batch, kept (the analysis itself reduces at once)."""
    got: dict[int, torch.Tensor] = {}
    with capture_attention(model, lambda i, p: got.__setitem__(i, p.detach().clone())):
        model(input_ids, attention_mask, n_target=0, mode=mode)
    return [got[i] for i in sorted(got)]


def test_metrics_equal_numpy_on_hand_made_rows_with_padding_and_masked_keys():
    rng = np.random.default_rng(0)
    b, h, t = 3, 2, 9
    pads = [0, 3, 6]  # left padding per sequence
    probs = rng.random((b, h, t, t)).astype(np.float32) * 0.5  # junk everywhere, including pad/masked/future keys
    key_valid = np.zeros((b, t, t), dtype=bool)
    groups = np.full((b, t), -1, dtype=np.int64)
    for i, npad in enumerate(pads):
        groups[i, npad:] = rng.integers(0, len(GROUPS), t - npad)
        for r in range(npad, t):
            key_valid[i, r, npad: r + 1] = True
    key_valid[0, 5:, 2] = False  # a key masked by the forward (like EARN's pruned prompt rows)
    for i in range(b):  # valid entries: a softmax-like row, with values around eps and exact zeros
        for r in range(t):
            idx = np.flatnonzero(key_valid[i, r])
            for hh in range(h):
                if len(idx):
                    w = rng.exponential(size=len(idx)) ** 3
                    w[rng.random(len(idx)) < 0.2] = 0.0
                    w = w / w.sum() if w.sum() > 0 else np.full(len(idx), 1.0 / len(idx))
                    probs[i, hh, r, idx] = w
    real = np.zeros((b, t), dtype=bool)
    for i, npad in enumerate(pads):
        real[i, npad:] = True
    last = np.zeros_like(real)
    last[:, -1] = True
    stats = AttentionStats(num_layers=2, num_heads=h)
    stats.update(1, torch.from_numpy(probs), torch.from_numpy(key_valid), torch.from_numpy(groups),
                 {"all": torch.from_numpy(real), "last": torch.from_numpy(last)})
    means = stats.means()
    for q, rows in (("all", real), ("last", last)):
        ref = {m: np.zeros(h) for m in METRIC_NAMES}
        n = 0
        for i in range(b):
            for r in np.flatnonzero(rows[i]):
                n += 1
                for hh in range(h):
                    for m, v in _numpy_row(probs[i, hh, r], key_valid[i, r], groups[i]).items():
                        ref[m][hh] += v
        assert stats.rows[q][1] == n and stats.rows[q][0] == 0
        for m in METRIC_NAMES:
            np.testing.assert_allclose(means[q][m][1], ref[m] / n, rtol=1e-5, atol=1e-6, err_msg=f"{q}/{m}")
            assert np.isnan(means[q][m][0]).all()  # a layer without rows is NaN, not 0
    # the padding junk would have changed the answer: counting every key gives a different sparsity
    assert not np.isclose(means["all"]["sparsity"][1][0], (probs[:, 0][real] > 0.05).mean())


def test_sink_definitions_on_a_known_row():
    p = torch.tensor([0.0, 0.0, 0.5, 0.1, 0.04, 0.06, 0.0, 0.3])  # 2 pads, then 6 keys
    valid = torch.tensor([False, False, True, True, True, True, True, True])
    groups = torch.tensor([-1, -1, 1, 2, 3, 3, 3, 4])
    stats = AttentionStats(1, 1)
    stats.update(0, p.view(1, 1, 1, 8), valid.view(1, 1, 8), groups.view(1, 8),
                 {"all": torch.ones(1, 1, dtype=torch.bool)})
    m = {k: v[0, 0] for k, v in stats.means()["all"].items()}
    assert m["sparsity"] == pytest.approx(4 / 6)  # 0.5, 0.1, 0.06, 0.3 > 0.05; 0.04 and 0.0 are not
    assert m["sink_head"] == pytest.approx(0.64) and m["sink_tail"] == pytest.approx(0.36)
    assert m["topk_mass"] == pytest.approx(1.0) and m["mass_history"] == pytest.approx(0.1)
    assert m["mass_prefix_register"] == pytest.approx(0.5) and m["mass_suffix_register"] == pytest.approx(0.3)


# -- captured attention vs transformers eager -------------------------------------------------------------------
@pytest.mark.parametrize("make_cfg", [tiny_llama, tiny_qwen], ids=["llama-gqa-4:2", "qwen2-gqa-4:1"])
def test_captured_attention_equals_transformers_eager(make_cfg, tmp_path):
    from transformers import AutoModelForCausalLM

    from earn_export.model import load_pretrained

    cfg = make_cfg(layers=3)
    torch.manual_seed(0)
    hf = AutoModelForCausalLM.from_config(cfg, attn_implementation="eager").eval()
    with torch.no_grad():  # larger q/k weights: peaked, non-uniform attention, so head order and scaling matter
        for name, p in hf.named_parameters():
            if "q_proj" in name or "k_proj" in name:
                p.mul_(8.0)
            elif name.endswith("bias"):
                p.add_(torch.randn_like(p))
    hf.save_pretrained(tmp_path)
    ours = load_pretrained(tmp_path).eval()
    g = torch.Generator().manual_seed(1)
    lens = [13, 9, 4]
    s = max(lens)
    ids = torch.randint(0, cfg.vocab_size, (len(lens), s), generator=g)
    mask = torch.zeros(len(lens), s, dtype=torch.long)
    for i, n in enumerate(lens):
        mask[i, s - n:] = 1
    pos = (mask.cumsum(-1) - 1).clamp_min(0)
    with torch.no_grad():
        ref = hf(input_ids=ids, attention_mask=mask, position_ids=pos, output_attentions=True).attentions
    got = attention_probs(ours, ids, mask, mode="dense")
    assert len(got) == len(ref) == 3
    real = mask.bool()
    for layer, (a, r) in enumerate(zip(got, ref)):
        assert a.shape == r.shape
        a_rows, r_rows = a.permute(0, 2, 1, 3)[real], r.permute(0, 2, 1, 3)[real]  # valid query rows only
        diff = (a_rows - r_rows).abs().max().item()
        assert diff <= 1e-5, f"layer {layer}: max |p diff| {diff}"
        assert r_rows.max() > 0.5  # peaked rows: a permuted head or a wrong scale would not pass
    # the hook is removed after the capture and the default forward is unchanged
    assert all(layer.self_attn.probs_hook is None for layer in ours.model.layers)


def test_capture_refuses_nesting():
    from earn_export.model import EarnForCausalLM

    m = EarnForCausalLM(tiny_llama(layers=1))
    with capture_attention(m, lambda i, p: None):
        with pytest.raises(RuntimeError, match="already"):
            with capture_attention(m, lambda i, p: None):
                pass
    assert m.model.layers[0].self_attn.probs_hook is None


# -- split rule ------------------------------------------------------------------------------------------------
def test_split_rule():
    assert recommend_split([0.6, 0.3, 0.05, 0.02], threshold=0.1)["k"] == 2
    assert recommend_split([0.6, 0.05, 0.3, 0.02], threshold=0.1)["k"] == 3  # must *stay* under the bar
    assert recommend_split([0.05, 0.05, 0.05, 0.05], threshold=0.1)["k"] == 1  # k >= 1 always
    r = recommend_split([0.6, 0.5, 0.4, 0.3], threshold=0.1)
    assert r["k"] == 4 and "dense" in r["verdict"]
    with pytest.raises(ValueError, match="finite"):
        recommend_split([0.1, float("nan")])


# -- token groups ----------------------------------------------------------------------------------------------
def test_prompt_groups_come_from_the_builder_pieces(synthetic_pair):
    from earn_export.analysis.groups import prompt_row_groups
    from earn_export.data.prompts import PromptBuilder

    prompts = PromptBuilder.load(synthetic_pair["earn"])
    items = prompts.catalog.items()
    hist = [items[3], items[7], items[1]]
    ids, groups = prompt_row_groups(prompts, hist)
    assert ids == prompts.row(hist)
    names = [GROUPS[g] for g in groups]
    assert names[0] == "prefix_register" and names[-1] == "suffix_register"
    assert ids[0] in prompts.prefix_ids and ids[-1] in prompts.suffix_ids
    code_ids = {t for i in hist for t in prompts.item_ids[i]}
    hist_pos = [p for p, n in enumerate(names) if n == "history"]
    # history = the identifier tokens (3 items x L) plus the 2 separators between them, contiguous
    n_sep = sum(len(ids) for name, ids in prompts.segments(hist) if name == "separator")
    assert n_sep > 0 and len(hist_pos) == 3 * len(prompts.item_ids[hist[0]]) + n_sep
    assert hist_pos == list(range(hist_pos[0], hist_pos[-1] + 1))
    assert {ids[p] for p in hist_pos} >= code_ids
    assert all(ids[p] not in code_ids for p, n in enumerate(names) if n != "history")
    assert set(names) == {"prefix_register", "instruction", "history", "suffix_register"}


# -- trained models: EARN vs dense ------------------------------------------------------------------------------
@pytest.fixture(scope="module")
def synthetic_pair(tmp_path_factory):
    """An EARN (k = 1 of 4) and a dense micro model trained the same way on the embedded synthetic data
    (800 examples, 2 epochs: a few seconds each on 2 idle cores)."""
    from earn_export.data.data_spec import DataSpec
    from earn_export.train.train_checkpoint import train

    spec = DataSpec(n_users=600, n_items=120)
    out = {}
    for name, split in (("earn", "auto"), ("dense", "dense")):
        d = tmp_path_factory.mktemp(f"analysis-{name}")
        train(d, spec, split=split, preset="micro", epochs=2, batch_size=64, lr=3e-3, progress=False,
              max_train_examples=800, valid_users=100)
        out[name] = d
    return out


def test_earn_late_layers_attend_to_the_registers_dense_does_not(synthetic_pair):
    """Each checkpoint in the computation it deploys (``forward="native"``), on the same 100 test prompts with the
    user's next item appended: the rows that predict the identifier tokens (the suffix register and the target
    tokens but the last; they exist in both models' layers >= k) and the mass they put on the two register
    positions in layers >= k.

    Why the thresholds: in the dense model the registers are 2 of ~60-100 keys with nothing special about them
    after training, so they get a few percent (uniform attention would give ~2/P ≈ 0.03; 0.15 leaves room). EARN's
    layers >= k can read only the registers and earlier target tokens, and it was trained that way: the
    suffix-register row has nothing but the registers (mass 1 by construction), and the target rows must choose
    between the registers (the history, compressed) and the tokens generated so far. 0.35 is above the 1/L = 0.25
    the suffix row alone contributes, so the target rows must send a real share to the registers too. A capture
    that ignored EARN's pruning (the dense forward of the EARN model), counted padded or pruned keys, or
    mislabelled positions would fail it (the dense-forward value of the same EARN model is checked to be low)."""
    from earn_export.analysis.run_analysis import analyze_model, sample_examples
    from earn_export.data.prompts import PromptBuilder
    from earn_export.model import load_pretrained
    from earn_export.data.data_spec import DataSpec

    def late_register_mass(path, forward):
        model, prompts = load_pretrained(path), PromptBuilder.load(path)
        hist, nxt = sample_examples(DataSpec.load_from(path), prompts.max_history, 100, seed=0)
        r = analyze_model(model, prompts, hist, nxt, forward=forward, progress=False)
        pl = r["corpora"]["prompts"]["query_sets"]["predict"]["per_layer"]
        k = model.split_layer if model.split_layer < model.num_layers else 1
        reg = np.add(pl["mass_prefix_register"], pl["mass_suffix_register"])
        return float(reg[k:].mean()), r

    earn, r_earn = late_register_mass(synthetic_pair["earn"], "native")
    dense, _ = late_register_mass(synthetic_pair["dense"], "native")
    earn_as_dense, _ = late_register_mass(synthetic_pair["earn"], "dense")
    assert dense < 0.15, dense
    assert earn > 0.35, earn
    assert earn - dense > 0.25 and earn_as_dense < 0.15, (earn, dense, earn_as_dense)
    # the suffix-register row itself: all of its late-layer attention is on the registers, none on the history
    last = r_earn["corpora"]["prompts"]["query_sets"]["last"]["per_layer"]
    assert np.allclose(np.add(last["mass_prefix_register"], last["mass_suffix_register"])[1:], 1.0, atol=1e-5)
    assert np.allclose(last["mass_history"][1:], 0.0, atol=1e-6) and last["mass_history"][0] > 0.2


def test_analyze_cli_end_to_end(synthetic_pair, tmp_path, capsys):
    """``earn-export analyze`` on the synthetic default: valid JSON, the Table-4 markdown, non-empty PNGs, and the
    recommendation with its evidence printed; the text corpus (NLP contrast) is analysed too."""
    from PIL import Image

    from earn_export.cli import main

    text = tmp_path / "text.txt"
    text.write_text("Below is an instruction that describes a task.\n\nWrite a response that appropriately "
                    "completes the request . The user has interacted with items in chronological order .\n")
    out = tmp_path / "an"
    rc = main(["analyze", str(synthetic_pair["dense"]), str(synthetic_pair["earn"]), "--users", "40", "--quiet",
               "--text", str(text), "--heads", "0", "--out", str(out)])
    assert rc == 0
    printed = capsys.readouterr().out
    assert "split-layer recommendation" in printed and "| model | task |" in printed
    doc = json.loads((out / "attention.json").read_text())
    assert [c["split_layer"] for c in doc["checkpoints"]] == [4, 1]
    dense = doc["checkpoints"][0]
    assert dense["corpora"]["prompts"]["sequences"] == 40 and dense["corpora"]["text"]["sequences"] == 2
    per_head = dense["corpora"]["prompts"]["query_sets"]["all"]["per_head"]["sparsity"]
    assert len(per_head) == 4 and len(per_head[0]) == 4  # every layer and head kept
    per_layer = dense["corpora"]["prompts"]["query_sets"]["all"]["per_layer"]["sparsity"]
    assert per_layer == pytest.approx([row[0] for row in per_head])  # --heads 0: head 0 only
    for q in QUERY_SETS:  # each row's attention over the groups sums to 1
        pl = dense["corpora"]["prompts"]["query_sets"][q]["per_layer"]
        np.testing.assert_allclose(np.sum([pl[f"mass_{g}"] for g in GROUPS], axis=0), 1.0, atol=1e-4)
    assert doc["recommendation"]["k"] == dense["recommendation"]["k"]
    assert 1 <= doc["recommendation"]["k"] <= 4
    md = (out / "table4.md").read_text()
    assert "paper: Llama-7B" in md and "EARN, k=1" in md
    assert set(doc["figures"]) >= {"metrics_per_layer.png", "register_mass.png"}
    assert any(f.startswith("attention_map_") for f in doc["figures"])
    for name in doc["figures"]:
        img = Image.open(out / name)
        assert img.size[0] > 300 and img.size[1] > 200
        assert np.asarray(img.convert("L")).std() > 10  # not a blank canvas


def test_train_split_layer_analyze(synthetic_pair, tmp_path):
    """``train --split-layer analyze`` runs the rule on the starting model and trains EARN with its k; a fresh
    preset is refused with the fix."""
    from earn_export.model import load_pretrained
    from earn_export.model.config import ModelConfigError
    from earn_export.data.data_spec import DataSpec
    from earn_export.train.train_checkpoint import train

    spec = DataSpec(n_users=600, n_items=120)
    out = train(tmp_path / "k", spec, split="analyze", model_path=synthetic_pair["dense"], epochs=0.2,
                batch_size=64, progress=False, max_train_examples=200, valid_users=20)
    log = json.loads((out / "train_log.json").read_text())
    rec = log["split_analysis"]
    assert load_pretrained(out).split_layer == rec["k"] == log["split_layer"]
    assert len(rec["history_mass"]) == 4 and rec["prompts"] == 300
    assert recommend_split(rec["history_mass"], rec["threshold"])["k"] == rec["k"]
    with pytest.raises(ModelConfigError, match="--model"):
        train(tmp_path / "x", spec, split="analyze", progress=False)
