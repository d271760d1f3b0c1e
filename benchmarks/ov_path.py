"""Torch-path vs OpenVINO-path quantization, IR top-1 and PTQ time; see ``qmlp_nncf.benchmark.ov_path``.

python benchmarks/ov_path.py --model qmlp_mixer_fmnist [--model ...] [--recipe qmlp_w4a4 ...] [--limit N]
    [--json PATH]
"""
import sys

from qmlp_nncf.benchmark.ov_path import main

if __name__ == "__main__":
    sys.exit(main())
