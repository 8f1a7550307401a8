"""The 19 ImageNet-C corruptions (Hendrycks & Dietterich, ICLR 2019), batched in torch on the input's device.

``corrupt(x, name, severity, seed=0)`` corrupts a batch; ``Corruption(name, severity)`` is the same as an
object that evaluation and augmentation call like an attack. Modules by family: ``noise``, ``blur``,
``weather`` (+ ``frost``), ``digital`` (+ ``jpeg``) and ``spatter``; shared tensor helpers in ``_ops``.
"""
from .api import (
    CORRUPTION_FAMILIES,
    CORRUPTIONS,
    RANDOM_CORRUPTIONS,
    SEVERITIES,
    Corruption,
    check_corruption,
    check_severity,
    corrupt,
    corruption_names,
)

__all__ = [
    "CORRUPTIONS", "CORRUPTION_FAMILIES", "RANDOM_CORRUPTIONS", "SEVERITIES", "Corruption", "corrupt",
    "corruption_names", "check_corruption", "check_severity",
]
