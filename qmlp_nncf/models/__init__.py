"""Model zoo: importing this package registers every qmlp_nncf model with timm."""
from . import mlp_mixer_fmnist  # noqa: F401  (registers the Fashion-MNIST models)
from . import qmlp  # noqa: F401  (registers the Q-MLP variants)

FAMILY_PREFIXES = {"mixer": "mixer", "gmixer": "mixer", "resmlp": "resmlp", "gmlp": "gmlp"}


def family_of_name(name: str) -> str:
    """``mixer``, ``resmlp`` or ``gmlp`` from a timm model name (``qmlp_`` prefix allowed)."""
    stem = name.removeprefix("qmlp_")
    for prefix, family in FAMILY_PREFIXES.items():
        if stem.startswith(prefix):
            return family
    raise ValueError(f"cannot tell the MLP family of {name!r}: expected a mixer_*, gmixer_*, resmlp_* or gmlp_* model")
