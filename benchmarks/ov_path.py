"""Torch-path vs OpenVINO-path quantization, IR top-1 and PTQ time; see ``qmlp_nncf.benchmark.ov_path``.

python benchmarks/ov_path.py --model qmlp_mixer_fmnist [--model ...] [--recipe qmlp_w4a4 ...] [--limit N]
    [--json PATH]
"""
import sys

from qmlp_nncf.console import setup_process

setup_process()  # the application's process setup, before NNCF is imported
from qmlp_nncf.benchmark.ov_path import main  # noqa: E402

if __name__ == "__main__":
    sys.exit(main())
