"""Per-layer OpenVINO profile of IRs side by side (PERF_COUNT); see ``qmlp_nncf.benchmark.ov_profile``.

python benchmarks/ov_profile.py --ir A/model.xml --ir B/model.xml [--batch N] [--hint f32|bf16] [--rounds R]
    [--requests N] [--top K] [--json PATH]
"""
import sys

from qmlp_nncf.console import setup_process

setup_process()  # the application's process setup, before NNCF is imported
from qmlp_nncf.benchmark.ov_profile import main  # noqa: E402

if __name__ == "__main__":
    sys.exit(main())
