"""``qmlp quantize`` and ``qmlp export``: post-training quantization with a recipe or a config, and OpenVINO IRs."""
from __future__ import annotations

from .options import W4_HELP, Shown, data_source, log, model_source

TARGET_HELP = ("nncf.quantize's target_device: ANY, CPU, GPU, NPU or CPU_SPR (default: the config's, else NNCF's ANY); "
               "CPU_SPR on a torch model quantizes for CPU with the fused placement's int8 residual stream (NNCF's "
               "torch backend refuses it)")


def cmd_quantize(args) -> dict | Shown:
    from ..pipeline import quantize_to_dir
    from ..quantization.recipes.choice import RecipeChoice
    from ..quantization.recipes.recipe import AutoTarget

    if args.list_recipes:
        from ..quantization.recipes.catalog import catalog_text, recipe_catalog

        entries = recipe_catalog()
        return Shown({e.name: f"for {e.for_models}: {e.description}" for e in entries}, catalog_text(entries))
    if not args.out:
        raise ValueError("give --out DIR: the folder for quantized.pth and ir/model.xml")
    if args.ir and (args.model or args.checkpoint or getattr(args, "pretrained_file", None)):
        raise ValueError("--ir is the model to quantize: drop --model/--checkpoint/--pretrained-file")
    if args.ir and args.no_export:
        raise ValueError("--ir writes the quantized IR itself: drop --no-export")
    minutes = 15.0 if args.max_minutes is None else args.max_minutes
    choice = RecipeChoice.resolve(args.recipe, args.config, args.target_device, auto_max_minutes=minutes)
    if args.max_minutes is not None and not isinstance(choice.recipe, AutoTarget):
        raise ValueError(f"--max-minutes bounds an auto: recipe's search; recipe {choice.recipe.name} is not one: "
                         f"drop --max-minutes (or use --recipe auto:w4a4)")
    data = data_source(args, config=choice.config, check=("train", "val"))
    if args.ir:
        from ..pipeline import quantize_ir_to_dir

        return quantize_ir_to_dir(args.ir, data, choice, args.out, calibration_size=args.calibration_size,
                                  limit=args.limit, force=args.force, progress=not args.json).to_json()
    loaded = model_source(args, config=choice.config).load(float_for="qmlp quantize")
    run = quantize_to_dir(loaded, data, choice, args.out, calibration_size=args.calibration_size,
                          limit=args.limit, export=not args.no_export, force=args.force, progress=not args.json,
                          w4_kernels=args.w4_kernels)
    return run.to_json()


def cmd_export(args) -> dict:
    from ..export.exporter import export_model
    from ..export.prepare import FP32, check_recipe

    recipe = args.recipe or FP32
    check_recipe(recipe)  # an unknown recipe before the model is built
    calibrates = recipe != FP32 and not args.random_calibration
    data = data_source(args, check=(("train",) if calibrates else ()) + (("val",) if args.evaluate else ()))
    result = export_model(model_source(args), args.out, recipe=recipe, data=data,
                          calibration_size=args.calibration_size, random_calibration=args.random_calibration,
                          batch=args.batch, dynamic_batch=args.dynamic_batch, ovms_repo=args.ovms_repo,
                          ovms_name=args.ovms_name, ovms_version=args.ovms_version, force=args.force,
                          evaluate=args.evaluate, limit=args.limit, progress=not args.json,
                          w4_kernels=args.w4_kernels, target_device=args.target_device)
    log(f"wrote {result.xml}")
    return result.to_json()


def add_quantize(new) -> None:
    """``qmlp quantize``; ``new`` is ``build_parser``'s sub-parser factory."""
    from ..export.openvino_ir import W4_KERNELS

    q = new("quantize", "post-training quantization with a recipe or an NNCF-style config, then evaluate "
                        "and export", cmd_quantize)
    q.add_argument("--recipe", help="a recipe name (--list-recipes) or a recipe .json path")
    q.add_argument("--config", help="NNCF-style JSON config (docs/config.md); may name the model, data and recipe")
    q.add_argument("--ir", metavar="MODEL_XML", help="quantize this float OpenVINO IR instead of a torch model, on "
                                                    "NNCF's OpenVINO backend (writes ir/model.xml and report.json)")
    q.add_argument("--out", help="output folder: quantized.pth and ir/model.xml (required)")
    q.add_argument("--list-recipes", action="store_true",
                   help="print every recipe with its description, grouped by the models it is for, and exit")
    q.add_argument("--calibration-size", type=int, default=0, help="calibration images (default: the recipe's)")
    q.add_argument("--max-minutes", type=float,
                   help="auto: recipes: time budget of the search and its finishes (default 15; the search gets "
                        "half, finishes that would overrun are left out and named in the report)")
    q.add_argument("--limit", type=int, default=0, help="evaluate on the first N val images only")
    q.add_argument("--no-export", action="store_true", help="skip the OpenVINO IR export")
    q.add_argument("--force", action="store_true", help="overwrite a non-empty --out")
    q.add_argument("--w4-kernels", choices=W4_KERNELS, default="int8", help=W4_HELP)
    q.add_argument("--target-device", metavar="DEVICE", help=TARGET_HELP)


def add_export(new) -> None:
    """``qmlp export``; ``new`` is ``build_parser``'s sub-parser factory."""
    from ..export.openvino_ir import W4_KERNELS

    x = new("export", "export a model (float, or quantized with --recipe) to OpenVINO IR", cmd_export)
    x.add_argument("--recipe", help="quantization recipe (default fp32 = no quantization; `qmlp quantize "
                                    "--list-recipes`)")
    x.add_argument("--out", help="folder for model.xml/model.bin")
    x.add_argument("--ovms-repo", help="OpenVINO Model Server repository: writes <repo>/<name>/<version>/")
    x.add_argument("--ovms-name", help="model name in the OVMS repository")
    x.add_argument("--ovms-version", type=int, default=1)
    x.add_argument("--batch", type=int, default=1, help="static batch size of the IR")
    x.add_argument("--dynamic-batch", action="store_true", help="leave the batch dimension dynamic")
    x.add_argument("--force", action="store_true", help="replace an existing IR")
    x.add_argument("--w4-kernels", choices=W4_KERNELS, default="int8", help=W4_HELP)
    x.add_argument("--target-device", metavar="DEVICE", help=TARGET_HELP)
    x.add_argument("--calibration-size", type=int, default=0,
                   help="calibration images for --recipe (default: the recipe's, as qmlp quantize)")
    x.add_argument("--random-calibration", action="store_true",
                   help="calibrate on random images (speed measurements only; labelled so in rt_info)")
    x.add_argument("--evaluate", action="store_true",
                   help="store the IR's val top-1 and its agreement with torch in the metadata")
    x.add_argument("--limit", type=int, default=0, help="with --evaluate: the first N val images only")
