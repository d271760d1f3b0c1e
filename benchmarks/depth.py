"""Activation range by depth of shallow vs deep models, with their 4-bit numbers; see
``qmlp_nncf.benchmark.depth``.

python benchmarks/depth.py --model resmlp_fmnist --model resmlp12_fmnist [--model qmlp_resmlp12_fmnist]
    [--accuracy RESULT.json]... [--calibration-size N] [--out DIR] [--json PATH]
"""
import sys

from qmlp_nncf.console import setup_process

setup_process()  # the application's process setup, before NNCF is imported
from qmlp_nncf.benchmark.depth import main  # noqa: E402

if __name__ == "__main__":
    sys.exit(main())
