"""Serving and scale-out: Triton Inference Server, its clients, a production model repository, Ray batch scoring.

- ``tritonserver``: starts the Triton Inference Server binary that ``nvidia-pytriton`` ships (with its Python
  backend), fixing the backend stub's libpython lookup, and stops it cleanly;
- ``served_model`` + ``python_model``: the ``earn_recommender`` model (a Python-backend model holding one
  ``Recommender`` per instance, ragged dynamic batching, one Triton error per bad request);
- ``server``: ``earn-export serve``; ``client``: ``query`` over tritonclient (the load test: benchmarks/loadtest.py);
- ``triton_repo`` + ``bls_model``: ``earn-export triton-repo`` (prefill/decode ONNX or TensorRT models and a BLS
  model that runs this package's beam search), validated against tritonclient's ``model_config_pb2``;
- ``batch``: ``earn-export batch`` on Ray Data.

Every module imports its third-party dependencies (the ``serve`` extra) inside functions, so the package imports
without them.
"""

MODEL_NAME = "earn_recommender"
