"""The engine directory format: what ``earn-export export`` writes and every runtime reads.

- ``manifest``: ``manifest.json`` (graphs, I/O, model facts, attention mode, sha256 of every file), its checks
  and the remembered verification;
- ``prompt_pieces``: pre-tokenised prompt pieces (prompts without a tokenizer at run time);
- ``trie_files``: the item-identifier trie as ``trie.*.npy`` arrays.

The exporter writes it; the Python runtime, serving, the TensorRT build and the C++ runtime (``cpp/``) read it.
It imports only the standard library, numpy, ``earn_export.errors`` and ``earn_export.data`` (the trie and
prompt structures whose files these are; building a trie from a checkpoint's catalog loads its tokenizer).
"""
