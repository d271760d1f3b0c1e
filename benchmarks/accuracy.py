"""Top-1 of every zoo model x recipe: float, PTQ in torch fake-quant, and the exported OpenVINO IR; see
``qmlp_nncf.benchmark.accuracy``.

python benchmarks/accuracy.py [--model NAME]... [--recipe NAME]... [--matching-only] [--limit N]
    [--calibration-size N] [--no-ir] [--ir-dir DIR] [--qat] [--json PATH]
    [--check-reference [PATH]] [--update-reference [PATH] --tolerance T] [--threads N]
python benchmarks/accuracy.py --ablate MODEL --recipe qmlp_w4a4 [--limit N] [--json PATH]
"""
import sys

from qmlp_nncf.console import setup_process

setup_process()  # the application's process setup, before NNCF is imported
from qmlp_nncf.benchmark.accuracy import main  # noqa: E402

if __name__ == "__main__":
    sys.exit(main())
