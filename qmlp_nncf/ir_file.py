"""The one reader of OpenVINO IR files: ``model.xml`` (or its folder) to an ``ov.Model``, with one clear error for a
missing, truncated or corrupt file. ``qmlp eval --ir``, ``qmlp quantize --ir``, the IR metadata and the benchmarks
all read through :func:`read_ir`, so the same bad file gives the same one line (exit 2 from the ``qmlp`` command)."""
from __future__ import annotations

from pathlib import Path


class IRError(ValueError):
    """An IR that cannot be read or used as given: the message names the file, the problem and the fix."""


def is_openvino_model(model) -> bool:
    """Whether ``model`` is an ``openvino.Model`` (False where OpenVINO is not installed)."""
    try:
        import openvino as ov
    except ImportError:
        return False
    return isinstance(model, ov.Model)


def ir_path(path: str | Path) -> Path:
    """The ``.xml`` of an IR given as the file or its folder; a missing file or weights file is an :class:`IRError`."""
    p = Path(path)
    if p.is_dir():
        p = p / "model.xml"
    if not p.is_file():
        raise IRError(f"no OpenVINO IR at {path}: no such file; give the model.xml of an OpenVINO IR (ov.save_model, "
                      f"optimum-cli export openvino, `qmlp export`), or its folder")
    if p.suffix == ".xml" and not p.with_suffix(".bin").is_file():
        raise IRError(f"{p}: its weights file {p.with_suffix('.bin').name} is missing next to it")
    return p


def read_ir(path: str | Path):
    """``ov.Model`` from ``model.xml`` (or its folder, or an ``.onnx`` OpenVINO reads)."""
    import openvino as ov

    p = ir_path(path)
    try:
        return ov.Core().read_model(str(p))
    except RuntimeError as e:  # OpenVINO's message: a source location first, the reason last
        lines = [line.strip() for line in str(e).splitlines() if line.strip()]
        reason = lines[-1] if lines else type(e).__name__
        raise IRError(f"{p}: OpenVINO cannot read it ({reason}): the file is truncated or corrupt, or not an IR; "
                      f"export it again (`qmlp export`, ov.save_model)") from None


__all__ = ["IRError", "is_openvino_model", "ir_path", "read_ir"]
