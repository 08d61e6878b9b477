"""The checkpoint directory (docs/CONTRACTS.md "Checkpoint directory"): the weights and ``earn.json`` of
``checkpoint.save_pretrained`` plus everything export and the runtime need — tokenizer, ``items.json``,
``trie.npz``, ``prompt.json``, ``data.json``, ``train_log.json``. ``train`` and ``convert`` write it."""

from __future__ import annotations

import json
from pathlib import Path

from ..atomic import atomic_output


@atomic_output("out_dir", "checkpoint")
def save_checkpoint(out_dir, model, tokenizer, catalog, prompts, data_spec, log: dict, data=None) -> Path:
    """Everything export and runtime need: weights, earn.json, tokenizer, items.json, trie.npz, prompt.json,
    and, given the loaded ``data``, its original item ids (item_ids.json) and counts (data.json "stats").
    Written atomically (``earn_export.atomic``): an interrupted save leaves the previous checkpoint as it was."""
    out = Path(out_dir)
    model.save_pretrained(out)
    tokenizer.save_pretrained(str(out))
    catalog.save(out)
    catalog.trie(tokenizer).save(out / "trie.npz")
    prompts.save(out)
    data_spec.save(out)
    if data is not None:
        from ..data.id_map import write_data_files

        write_data_files(out, data, log)
    (out / "train_log.json").write_text(json.dumps(log, indent=2, default=str) + "\n")
    return out
