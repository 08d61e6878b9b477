"""The engine directory format: what ``earn-export export`` writes and every runtime reads (``manifest``,
``prompt_pieces``, ``trie_files``). Imports only the standard library, numpy, ``earn_export.errors`` and
``earn_export.data``."""
