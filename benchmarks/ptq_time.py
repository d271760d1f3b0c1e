"""Wall time of post-training quantization per model x recipe; see ``qmlp_nncf.benchmark.ptq_time``.

python benchmarks/ptq_time.py --model mixer_fmnist --model mixer_b16_224 --recipe qmlp_w8a8 [--recipe ...]
    [--calibration-size 300] [--threads N] [--json PATH]
"""
import sys

from qmlp_nncf.console import setup_process

setup_process()  # the application's process setup, before NNCF is imported
from qmlp_nncf.benchmark.ptq_time import main  # noqa: E402

if __name__ == "__main__":
    sys.exit(main())
