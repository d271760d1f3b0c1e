"""The rule post-pass after ``nncf.quantize``: one algorithm (``algorithm``) over a small backend interface
(``backend``), with a torch (``torch_backend``) and an OpenVINO (``openvino_backend``) implementation, in the
style of NNCF's ``algorithms/min_max``. What both backends share of one quantizer (the report row, the NNCF
parameters of a spec and a range, weight ranges) is in ``parameters``."""
