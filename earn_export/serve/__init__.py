"""Serving and scale-out: ``earn-export serve`` (``server`` on ``tritonserver``; the ``earn_recommender`` model of
``served_model`` + ``python_model``; ``instance_watch``), ``query`` (``client``), ``triton-repo`` (``triton_repo``
+ ``bls_model``) and ``batch`` on Ray Data (``batch``, ``batch_parts``).

Every module imports its third-party dependencies (the ``serve`` extra) inside functions, so the package imports
without them.
"""

MODEL_NAME = "earn_recommender"
