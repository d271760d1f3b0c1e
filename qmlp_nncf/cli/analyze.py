"""``qmlp analyze``: why a model is hard to quantize, and the recipe that follows."""
from __future__ import annotations

from pathlib import Path

from .options import data_source, model_source


def cmd_analyze(args) -> dict:
    from ..analysis import analyze
    from ..sources import ModelSource

    if not args.out and not args.suggest_recipe:
        raise ValueError("give --out DIR (the report) and/or --suggest-recipe FILE")
    if args.out and Path(args.out).exists() and not Path(args.out).is_dir():
        raise ValueError(f"--out {args.out} exists and is not a folder")
    if args.out and Path(args.out).is_dir() and any(Path(args.out).iterdir()) and not args.force:
        raise ValueError(f"--out {args.out} is not empty; pass --force to replace it")
    data = data_source(args, check=("train",))
    compare = None
    if args.compare:
        is_file = Path(args.compare).is_file()
        compare = ModelSource(name=None if is_file else args.compare, checkpoint=args.compare if is_file else None)
    loaded = model_source(args).load(float_for="qmlp analyze")
    if compare is not None:
        compare = compare.load(float_for="qmlp analyze --compare")
    result = analyze(loaded.model, data, args.out, name=loaded.source.describe(),
                     compare=compare.model if compare else None,
                     compare_name=compare.source.describe() if compare else "",
                     calibration_size=args.calibration_size, eval_size=args.eval_size, seed=args.seed,
                     max_minutes=args.max_minutes, per_site=not args.no_per_site,
                     suggest=args.target if (args.suggest_recipe or not args.no_suggest) else None,
                     suggest_path=args.suggest_recipe)
    d = {"model": result.model, "seconds": round(result.seconds, 1),
         "files": {k: str(v) for k, v in result.files.items()}}
    if result.sensitivity is not None and result.sensitivity.groups:
        d["most_sensitive_groups"] = [{"group": r.name, "best4": r.best4, **(r.best4_metrics() or {})}
                                      for r in result.sensitivity.groups[:5]]
    if result.suggestion is not None:
        d["suggestion_heldout"] = result.suggestion.metrics.to_dict()
    return d


def add_analyze(new) -> None:
    """``qmlp analyze``; ``new`` is ``build_parser``'s sub-parser factory."""
    n = new("analyze", "why a model is hard to quantize: ranges, sensitivity, figures, report.html, and the "
                       "recipe that follows", cmd_analyze)
    n.add_argument("--out", help="report folder: report.html, report.md, analysis.json, *.png")
    n.add_argument("--compare", metavar="MODEL", help="a second model (zoo/timm name or checkpoint) whose ranges "
                                                      "are drawn beside (e.g. the Q-MLP model of a base model)")
    n.add_argument("--suggest-recipe", metavar="FILE", help="write the suggested recipe (JSON, for --recipe FILE)")
    n.add_argument("--target", choices=("w4a4", "w4a8", "w8a8"), default="w4a4", help="bit budget of the recipe")
    n.add_argument("--no-suggest", action="store_true", help="skip the recipe search (sensitivity only)")
    n.add_argument("--calibration-size", type=int, default=300, help="train images for the statistics")
    n.add_argument("--eval-size", type=int, default=500, help="held-out train images for the sensitivity")
    n.add_argument("--max-minutes", type=float, default=20.0, help="bound on the sweeps and the search")
    n.add_argument("--no-per-site", action="store_true", help="role groups only (faster on deep models)")
    n.add_argument("--seed", type=int, default=0, help="the draw of calibration and held-out images")
    n.add_argument("--force", action="store_true", help="replace a non-empty --out")
