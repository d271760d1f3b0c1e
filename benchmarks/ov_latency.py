"""OpenVINO latency/throughput of float and quantized IRs; see ``qmlp_nncf.benchmark.ov_latency``.

python benchmarks/ov_latency.py [--ir PATH]... [--model NAME]... [--recipe NAME]... [--device D]...
    [--batch N] [--hint f32|bf16]... [--quick] [--json PATH]
"""
import sys

from qmlp_nncf.benchmark.ov_latency import main

if __name__ == "__main__":
    sys.exit(main())
