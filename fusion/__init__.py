"""ctscribe: fusion package (DESIGN.md §4.4, §4.6).

`FUSIONS` maps a name to its class; importing this package registers every fusion.
"""

from fusion import ao2d, compat, identity, samf  # noqa: F401  (registration side effects)
from fusion.base import FUSIONS, Fusion, FusionConfig, FusionOutput, build_fusion

__all__ = ["FUSIONS", "Fusion", "FusionConfig", "FusionOutput", "build_fusion"]
