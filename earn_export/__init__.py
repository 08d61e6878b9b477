"""earn-export: compile EARN register-token LLM recommenders into two-graph deployments.

Submodules (one direction of data flow): ``model`` (the one decoder definition), ``data`` (sequences,
identifiers, trie, prompts), ``search`` (trie-constrained beam search, metrics), ``train``, ``export``
(two ONNX graphs + manifest), ``runtime`` (``Recommender``), ``bench``, ``build`` (TensorRT).
"""

__version__ = "0.1.0"


def __getattr__(name):  # lazy: importing the package must not import torch/onnxruntime
    if name == "Recommender":
        from .runtime import Recommender

        return Recommender
    raise AttributeError(name)
