"""earn-export: compile EARN register-token LLM recommenders into two-graph deployments.

Packages, lowest floor first (each imports only from floors below it; tests/test_layout.py checks this):
``errors``/``lazy_import`` and ``atomic``; ``data`` (sequences, catalog, trie, prompts) and ``search`` (beam
search); ``engine`` (the engine directory format); ``ops`` (the custom attention op); ``model`` (the one decoder
definition, checkpoints); ``cli_args``; ``analysis``, ``convert`` (pretrained → EARN), ``runtime``
(``Recommender``); ``export`` (two ONNX graphs, parity check), ``serve`` (Triton), ``tensorrt``; ``train``;
``workflow`` (train → eval → export → check → recommend, the demo), ``bench`` and ``cli``.
"""

from .lazy_import import lazy_attributes

__version__ = "0.1.0"
__getattr__ = lazy_attributes(__name__, {"Recommender": ".runtime"})  # importing the package imports no torch
