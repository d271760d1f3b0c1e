"""``qmlp export``: a zoo/timm model or a checkpoint, optionally quantized with a recipe, to OpenVINO IR."""
from __future__ import annotations

import argparse
import sys


def cmd_export(args) -> dict:
    from .evaluate import torch_ir_agreement
    from .openvino_ir import ExportError, check_target, export_ir, target_dir
    from .prepare import FP32, prepare

    if bool(args.out) == bool(args.ovms_repo):
        raise ExportError("give exactly one destination: --out DIR, or --ovms-repo DIR --ovms-name NAME")
    if bool(args.ovms_repo) != bool(args.ovms_name):
        raise ExportError("--ovms-repo and --ovms-name go together (repository folder, served model name)")
    check_target(target_dir(args.ovms_repo or args.out, args.ovms_name, args.ovms_version), args.force)
    prepared = prepare(args.model, args.checkpoint, args.recipe or FP32, args.calibration_size, args.data_dir)

    measure = None
    if args.evaluate:
        if prepared.input_shape != (1, 28, 28):
            raise ExportError(f"--evaluate uses the Fashion-MNIST test set; {prepared.metadata['model']} takes "
                              f"{prepared.input_shape} inputs, not 1x28x28")
        from torch.utils.data import Subset

        from ..data import FashionMNIST

        test = FashionMNIST("test", args.data_dir)
        if args.limit:
            test = Subset(test, range(min(args.limit, len(test))))

        def measure(ov_model) -> dict:
            m = torch_ir_agreement(prepared.model, ov_model, test, progress=not args.json)
            return {"accuracy": {"data": "fashion-mnist test", **m}}

    result = export_ir(prepared.model, args.ovms_repo or args.out, (args.batch, *prepared.input_shape),
                       dynamic_batch=args.dynamic_batch, metadata=prepared.metadata, ovms_name=args.ovms_name,
                       ovms_version=args.ovms_version, force=args.force, measure=measure)
    print(f"wrote {result.xml}", file=sys.stderr)
    return result.to_json()


def add_commands(subparsers) -> list[argparse.ArgumentParser]:
    """Add ``export`` to the ``qmlp`` sub-commands; returns the new parsers (for the shared options)."""
    x = subparsers.add_parser("export", help="export a model (float or quantized with --recipe) to OpenVINO IR")
    x.add_argument("--model", help="zoo or timm model name (random weights if not in the zoo)")
    x.add_argument("--checkpoint", help="checkpoint file (its architecture is read from it)")
    x.add_argument("--recipe", help="quantization recipe (default fp32 = no quantization)")
    x.add_argument("--out", help="folder for model.xml/model.bin")
    x.add_argument("--ovms-repo", help="OpenVINO Model Server repository: writes <repo>/<name>/<version>/")
    x.add_argument("--ovms-name", help="model name in the OVMS repository")
    x.add_argument("--ovms-version", type=int, default=1)
    x.add_argument("--batch", type=int, default=1, help="static batch size of the IR")
    x.add_argument("--dynamic-batch", action="store_true", help="leave the batch dimension dynamic")
    x.add_argument("--force", action="store_true", help="replace an existing IR")
    x.add_argument("--calibration-size", type=int, default=300, help="calibration images for --recipe")
    x.add_argument("--evaluate", action="store_true",
                   help="store the IR's Fashion-MNIST test top-1 and its agreement with torch in the metadata")
    x.add_argument("--limit", type=int, default=0, help="with --evaluate: the first N test images only")
    x.set_defaults(func=cmd_export)
    return [x]
