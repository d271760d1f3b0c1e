"""``qmlp eval`` and ``qmlp zoo``: what a model (or an IR) scores, and the committed models."""
from __future__ import annotations

from .options import Shown, data_source, model_source


def cmd_eval(args) -> dict:
    """Top-1 of a float or quantized checkpoint, of a model quantized on the fly (--recipe), or of an IR."""
    from ..evaluation import evaluate
    from ..sources import subset

    if args.ir:
        from ..export import ir_dataset, ir_top1

        if args.recipe or args.config or args.model or args.checkpoint:
            raise ValueError("--ir evaluates the IR as it is: drop --model/--checkpoint/--recipe/--config")
        data = data_source(args, check=("val",))
        val = subset(ir_dataset(args.ir, data), args.limit)
        return {"ir": args.ir, "data": data.describe("val"), **ir_top1(args.ir, val, batch_size=args.batch_size)}
    quantizing = bool(args.recipe or args.config)
    choice = None
    if quantizing:
        from ..quantization.recipes.choice import RecipeChoice

        choice = RecipeChoice.resolve(args.recipe, args.config)  # an unknown recipe before the model is built
    data = data_source(args, check=("train", "val") if quantizing else ("val",))
    loaded = model_source(args).load(float_for="qmlp eval --recipe" if quantizing else "")
    result = {"model": loaded.arch, "data": data.describe("val"), "reference_top1": loaded.meta.get("top1")}
    model = loaded.model
    val = subset(data.dataset("val", model), args.limit)
    if choice is not None:
        from ..quantization import quantize
        from ..sources import calibration_for

        q = quantize(model, calibration_for(loaded, data, choice, args.calibration_size), choice.recipe,
                     ignored_scope=choice.ignored_scope, subset_size=args.calibration_size or None)
        model = q.model
        result.update(recipe=q.recipe.name, ptq_time_s=round(q.seconds, 2))
    return {**result, **evaluate(model, val, batch_size=args.batch_size, progress=not args.json)}


def cmd_zoo(args) -> Shown:
    from ..zoo import list_entries

    entries = [e.to_json() for e in list_entries()]
    lines = ["| model | family | params | epochs | train time | top-1 | curve (top-1 % per epoch) |",
             "|---|---|---:|---:|---:|---:|---|"]
    for e in entries:
        curve = e["extra"].get("curve_top1", [])
        shown = curve if len(curve) <= 6 else curve[:2] + [None] + curve[-3:]
        lines.append(f"| {e['name']} | {e['family']} | {e['params']:,} | {e['epochs']} | "
                     f"{e['train_time_s'] / 60:.0f} min | {100 * e['top1']:.2f} % | "
                     + " ".join("…" if v is None else f"{100 * v:.1f}" for v in shown) + " |")
    return Shown(entries, "\n".join(lines))


def add_eval(new) -> None:
    """``qmlp eval``; ``new`` is ``build_parser``'s sub-parser factory."""
    e = new("eval", "top-1 of a model (or an IR, or a model quantized on the fly) on the val split", cmd_eval)
    e.add_argument("--limit", type=int, default=0, help="evaluate the first N val images only")
    e.add_argument("--batch-size", type=int, default=256)
    e.add_argument("--recipe", help="quantize with this recipe first (calibration on the train split)")
    e.add_argument("--config", help="quantize with this NNCF-style config first")
    e.add_argument("--calibration-size", type=int, default=0, help="with --recipe: calibration images")
    e.add_argument("--ir", help="evaluate an OpenVINO IR (.xml) instead of a torch model")


def add_zoo(new) -> None:
    """``qmlp zoo``; ``new`` is ``build_parser``'s sub-parser factory."""
    new("zoo", "list the committed models and their reference top-1", cmd_zoo, model=False, data=False)
