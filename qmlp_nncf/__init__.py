"""qmlp_nncf: Q-MLP quantization of MLP-Mixer, ResMLP and gMLP on NNCF, shipped to OpenVINO.

Importing the package registers its models with timm. ``qmlp_nncf.quantize`` is
``qmlp_nncf.quantization.quantize`` (imported on first use: NNCF is slow to import).
"""
from . import models  # noqa: F401  (registers the zoo and Q-MLP models with timm)

__version__ = "0.1.0"


def __getattr__(name):
    if name in ("quantize", "list_recipes", "load_recipe"):
        from . import quantization

        return getattr(quantization, name)
    raise AttributeError(f"module 'qmlp_nncf' has no attribute {name!r}")
