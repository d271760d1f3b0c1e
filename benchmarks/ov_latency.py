"""OpenVINO latency/throughput of float and quantized IRs; see ``qmlp_nncf.benchmark.ov_latency``.

python benchmarks/ov_latency.py [--ir PATH]... [--model NAME]... [--recipe NAME]... [--device D]...
    [--batch N] [--hint f32|bf16]... [--quick] [--json PATH]
"""
import sys

from qmlp_nncf.console import setup_process

setup_process()  # the application's process setup, before NNCF is imported
from qmlp_nncf.benchmark.ov_latency import main  # noqa: E402

if __name__ == "__main__":
    sys.exit(main())
