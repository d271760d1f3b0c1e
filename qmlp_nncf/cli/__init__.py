"""The ``qmlp`` command (also ``python -m qmlp_nncf``).

Train, convert, fine-tune, quantize, QAT, export, evaluate and list the zoo, on any model source and data source.

Argument parsing and printing only: each sub-command builds a ``ModelSource`` / ``DataSource`` and calls
the library (``qmlp_nncf.sources``, ``training``, ``models.convert``, ``quantization``, ``export``). One module
per command group: ``train`` (train, finetune, convert, qat), ``models`` (eval, zoo), ``quantize`` (quantize,
export), ``analyze``; ``options`` holds what they share. Every sub-command checks its inputs before it builds a
model and exits with code 2 and a one-line message on bad input (``qmlp_nncf.console.run_command``); ``--json``
prints one JSON object on stdout (progress and logs go to stderr). Nothing but ``__main__`` imports this package.
"""
from __future__ import annotations

import argparse
import json
import os

from ..console import nncf_output_to_stderr, run_command, setup_process
from . import analyze, models, quantize, train
from .options import Shown, add_data_options, add_device_options, add_model_options

DESCRIPTION = ("Q-MLP quantization of MLP-Mixer, ResMLP and gMLP models on NNCF, shipped to OpenVINO: train, convert, "
               "fine-tune, quantize, QAT, export, evaluate and list the zoo, on any timm model and image folder.")
EPILOG = "`qmlp COMMAND --help` describes a command; `python -m qmlp_nncf` is the same command."
COMMANDS = (train.add_train, models.add_eval, models.add_zoo, train.add_convert, train.add_finetune,
            quantize.add_quantize, analyze.add_analyze, train.add_qat, quantize.add_export)  # the order of --help


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="qmlp", description=DESCRIPTION, epilog=EPILOG)
    sub = p.add_subparsers(dest="command", required=True)
    parsers = []

    def new(name, help, func, model=True, data=True, device=False, required_name=False):
        s = sub.add_parser(name, help=help)
        s.set_defaults(func=func)
        if model:
            add_model_options(s, required_name)
        if data:
            add_data_options(s)
        if device:
            add_device_options(s)
        parsers.append(s)
        return s

    for add in COMMANDS:
        add(new)
    for s in parsers:
        s.add_argument("--json", action="store_true", help="print the result as one JSON object")
        s.add_argument("--threads", type=int, default=0, help="torch threads (0 = torch default)")
        if not any(a.dest == "data_dir" for a in s._actions):
            s.add_argument("--data-dir", help=argparse.SUPPRESS)
    return p


def main(argv: list[str] | None = None) -> int:
    setup_process()  # the application's process setup, before the parsers import NNCF
    args = build_parser().parse_args(argv)
    if args.threads:
        import torch

        torch.set_num_threads(args.threads)
    return run_command(f"qmlp {args.command}", lambda: _run(args), json_errors=args.json)


def _run(args) -> int:
    with nncf_output_to_stderr():  # NNCF's progress bars print to stdout: keep stdout for the result
        result = args.func(args)
    if int(os.environ.get("RANK", "0")) != 0:  # torchrun: only global rank 0 reports
        return 0
    data, text = (result.data, result.text) if isinstance(result, Shown) else (result, None)
    print(json.dumps(data) if args.json else text if text is not None else json.dumps(data, indent=2))
    return 0
