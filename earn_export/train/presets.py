"""Named model sizes for training from scratch (``--model-config``): kept in :mod:`earn_export.model.shapes`."""

from ..model.shapes import PRESETS, preset_config  # noqa: F401
