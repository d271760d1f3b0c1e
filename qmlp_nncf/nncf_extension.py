"""Build NNCF's CPU quantizer extension now, and fail if NNCF would fall back to reference ops.

NNCF compiles it lazily on first use with a 60 s timeout; on 2 cores the build can take
longer. ``python -m qmlp_nncf.nncf_extension`` builds it once (no timeout) and caches it.
"""
import os
import sys


def main() -> int:
    os.environ.setdefault("NNCF_EXTENSION_LOAD_TIMEOUT", "0")
    from nncf.torch.quantization.extensions import QuantizedFunctionsCPULoader, ReferenceQuantizedFunctions

    if QuantizedFunctionsCPULoader.load() is ReferenceQuantizedFunctions:
        print("NNCF's CPU extension failed to build (see the warning above); install gcc/g++ and the "
              "Python headers, then retry", file=sys.stderr)
        return 1
    print("NNCF CPU quantizer extension ready", file=sys.stderr)
    return 0


if __name__ == "__main__":
    sys.exit(main())
