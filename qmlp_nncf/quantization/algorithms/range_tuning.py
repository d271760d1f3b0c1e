"""Range tuning: fit all quantizer ranges jointly by distilling the float model on the calibration inputs.

Statistics set each range on its own; at 4 bit the errors of some fifty quantizers compound. NNCF's
quantizers learn their ranges (LSQ-style gradients of ``scale`` / ``input_low`` / ``input_range``), so a
short Adam run on the calibration inputs fits them to the float model's logits: no labels, and biases
and norms stay frozen, so it remains post-training quantization. NNCF 3.4's ``nncf.quantize`` has no
such step (its bias corrections move biases, not ranges), hence this module.

Three options from the PTQ literature ride on the same loop:

- ``weight_rounding_lr``: the quantized weights learn their rounding (AdaRound, Nagel et al. 2020):
  each weight may move by at most half a quantization step from its float value, so only the choice
  between rounding down and up changes;
- ``drop_prob``: QDrop (Wei et al. 2022): during tuning each activation element bypasses its quantizer
  with this probability, which keeps the fit from overfitting the calibration images;
- ``block_loss``: adds, with this weight, each block's output error (MSE relative to the float block
  output's mean square, as in BRECQ's block reconstruction, Li et al. 2021) to the logit KL:
  tokens x channels targets per block and image instead of 10 logits.

``scope: "block"`` is the form that scales to 224-px, 24-block models (BRECQ's block reconstruction proper): each
block in turn fits the quantizers (and, with ``weight_rounding_lr``, the weight rounding) inside it to the float
block's output, ``steps`` Adam steps per block on cached block inputs, so a step costs one block's forward and
backward instead of the whole model's. The quantized block reads the quantized model's input to it (with the
blocks before it already fitted); the float block reads the float model's.
"""
from __future__ import annotations

import time

import torch
import torch.nn.functional as F
from nncf.torch.function_hook import get_hook_storage
from nncf.torch.quantization.layers import AsymmetricQuantizer, BaseQuantizer

from ..recipes.knobs import RangeTuning
from ..rules.roles import GraphRoles

TEACHER_BATCH = 256  # items per forward when computing the float model's logits and the KL
BLOCK_REPORT_ITEMS = 64  # scope "block" fits no logits: its KL before / after is only reported, on this many items


def range_parameters(model: torch.nn.Module) -> list[torch.nn.Parameter]:
    """The trainable range parameters of every NNCF quantizer in ``model``."""
    quantizers = [h for _, h in get_hook_storage(model).named_hooks() if isinstance(h, BaseQuantizer)]
    return [p for q in quantizers for p in q.parameters() if p.is_floating_point()]


def quantized_weights(model: torch.nn.Module, roles: GraphRoles) -> list[tuple[torch.nn.Parameter, BaseQuantizer]]:
    """Each weight parameter of ``model`` that an NNCF quantizer reads, with that quantizer."""
    return [(model.get_parameter(param), hook) for name, hook in get_hook_storage(model).named_hooks()
            if isinstance(hook, BaseQuantizer) and (param := roles.weight_parameter(name)) is not None]


def _half_step(q: BaseQuantizer) -> torch.Tensor:
    """Half of ``q``'s quantization step, shaped like its scale."""
    if isinstance(q, AsymmetricQuantizer):
        return q.input_range.abs() / (q.level_high - q.level_low) / 2
    return q.scale.abs() / q.level_high / 2


def _quantizer_dropout(quantizers: list[BaseQuantizer], p: float, gen: torch.Generator) -> list:
    """QDrop: forward hooks that give back each element's unquantized value with probability ``p``."""
    def drop(module, inputs, out):
        return torch.where(torch.rand(out.shape, generator=gen) < p, inputs[0], out)
    return [q.register_forward_hook(drop) for q in quantizers]


def _block_outputs(model: torch.nn.Module, outputs: list) -> list:
    """Forward hooks that append the output of each of ``model.blocks`` to ``outputs``."""
    blocks = getattr(model, "blocks", None)
    if not isinstance(blocks, (torch.nn.Sequential, torch.nn.ModuleList)) or not len(blocks):
        raise ValueError(f"range tuning: block_loss needs a model with a `blocks` sequence (timm's MLP-Mixer, ResMLP "
                         f"and gMLP have one); {type(model).__name__} has none: set block_loss to 0")
    return [b.register_forward_hook(lambda module, inputs, out: outputs.append(out)) for b in blocks]


def _block_error(student: list, teacher: list) -> torch.Tensor:
    return sum(((s - t) ** 2).mean() / (t ** 2).mean().clamp_min(1e-12) for s, t in zip(student, teacher))


def _log_probs(model: torch.nn.Module, inputs: torch.Tensor) -> torch.Tensor:
    return torch.cat([F.log_softmax(model(inputs[i:i + TEACHER_BATCH]), -1)
                      for i in range(0, len(inputs), TEACHER_BATCH)])


def _kl(student: torch.Tensor, teacher: torch.Tensor) -> torch.Tensor:
    return F.kl_div(student, teacher, log_target=True, reduction="batchmean")


def tune_ranges(quantized: torch.nn.Module, teacher: torch.nn.Module, items: list[torch.Tensor],
                settings: RangeTuning = RangeTuning(), log=print, roles: GraphRoles | None = None) -> dict:
    """Fit the quantizer ranges of ``quantized`` (in place) to ``teacher``'s logits on ``items``.

    Minimises KL(teacher || quantized) with Adam and a cosine schedule; every other parameter is
    frozen for the run and left as it was, except, with ``settings.weight_rounding_lr``, the quantized
    weights (``roles``, over the model's NNCF graph, locates them), each kept within half a step of its
    start and finally set to its quantized value. Returns the mean KL on ``items`` before and after (with scope
    "block", which fits block outputs and no logits, on the first ``BLOCK_REPORT_ITEMS`` of them), and the time.
    """
    params = range_parameters(quantized)
    if not params:
        raise ValueError("range tuning: the model has no quantizers with trainable ranges")
    weight_quantizers = []
    if settings.weight_rounding_lr > 0 or settings.drop_prob > 0:
        if roles is None:
            raise ValueError("range tuning: weight_rounding_lr and drop_prob need the model's NNCF graph "
                             "(roles=GraphRoles(nncf.build_graph(...)))")
        weight_quantizers = quantized_weights(quantized, roles)
    weights = [(w, w.detach().clone(), q) for w, q in weight_quantizers] if settings.weight_rounding_lr > 0 else []
    ranges = {id(p) for p in params}
    others = [p for p in quantized.parameters() if id(p) not in ranges]
    grad_flags = [p.requires_grad for p in params + others]
    was_training = quantized.training
    quantized.eval()
    t0 = time.time()
    inputs = torch.cat(items)
    scored = inputs[:BLOCK_REPORT_ITEMS] if settings.scope == "block" else inputs  # 224 px: whole forwards cost
    with torch.no_grad():
        targets = _log_probs(teacher.eval(), scored)
        kl_before = float(_kl(_log_probs(quantized, scored), targets))
    handles = []
    try:
        for p in others:
            p.requires_grad_(False)
        for p in params + [w for w, _, _ in weights]:
            p.requires_grad_(True)
        groups = [{"params": params, "lr": settings.lr}]
        if weights:
            groups.append({"params": [w for w, _, _ in weights], "lr": settings.weight_rounding_lr})
        opt = torch.optim.Adam(groups)
        schedule = torch.optim.lr_scheduler.CosineAnnealingLR(opt, settings.steps)
        gen = torch.Generator().manual_seed(settings.seed)
        weight_ids = {id(q) for _, q in weight_quantizers}
        activations = [h for _, h in get_hook_storage(quantized).named_hooks()
                       if isinstance(h, BaseQuantizer) and id(h) not in weight_ids]
        if settings.scope == "block":
            _fit_blocks(quantized, teacher, inputs, settings, weights, activations, gen, log)
        else:
            handles = _quantizer_dropout(activations, settings.drop_prob, gen) if settings.drop_prob else []
            _fit_model(quantized, teacher, inputs, targets, settings, weights, opt, schedule, gen, handles, log)
        for handle in handles:  # QDrop and block hooks must not touch the final KL
            handle.remove()
        handles = []
        with torch.no_grad():
            for w, _, q in weights:  # store each learned weight on its grid point: exporters round it the same way
                w.copy_(q(w))
            kl_after = float(_kl(_log_probs(quantized, scored), targets))
    finally:
        for handle in handles:
            handle.remove()
        for p, flag in zip(params + others, grad_flags):
            p.requires_grad_(flag)
        quantized.train(was_training)
    return {"kl_before": kl_before, "kl_after": kl_after, "seconds": round(time.time() - t0, 1),
            "steps": settings.steps, "items": len(inputs), "kl_items": len(scored), "scope": settings.scope}


def _clamp_to_half_step(weights: list) -> None:
    with torch.no_grad():
        for w, start, q in weights:
            half = _half_step(q)
            w.copy_(torch.minimum(torch.maximum(w, start - half), start + half))


def _fit_model(quantized, teacher, inputs, targets, settings: RangeTuning, weights, opt, schedule, gen, handles,
               log) -> None:
    """The whole model's logit KL (plus ``block_loss`` x the block output errors), ``steps`` Adam steps."""
    student_blocks, teacher_blocks = [], []
    if settings.block_loss:
        handles += _block_outputs(quantized, student_blocks) + _block_outputs(teacher, teacher_blocks)
    for step in range(settings.steps):
        idx = torch.randint(0, len(inputs), (min(settings.batch_size, len(inputs)),), generator=gen)
        loss = _kl(F.log_softmax(quantized(inputs[idx]), -1), targets[idx])
        if settings.block_loss:
            with torch.no_grad():
                teacher(inputs[idx])
            loss = loss + settings.block_loss * _block_error(student_blocks, teacher_blocks)
            student_blocks.clear()
            teacher_blocks.clear()
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()
        schedule.step()
        _clamp_to_half_step(weights)
        if (step + 1) % 100 == 0:
            log(f"range tuning: step {step + 1}/{settings.steps}, loss {loss.item():.4f}")


def _block_quantizers(model: torch.nn.Module, container: str) -> dict[int, list[BaseQuantizer]]:
    """The quantizers that run inside each block of ``model.<container>`` (NNCF keys a hook by its op's name,
    ``blocks/3/mlp_channels/fc1/linear/0``)."""
    prefix = container.replace(".", "/") + "/"
    found: dict[int, list[BaseQuantizer]] = {}
    seen = set()
    for name, hook in get_hook_storage(model).named_hooks():
        op = name.split(".", 1)[1].rsplit("__", 1)[0]
        if isinstance(hook, BaseQuantizer) and op.startswith(prefix) and id(hook) not in seen:
            seen.add(id(hook))
            found.setdefault(int(op[len(prefix):].split("/")[0]), []).append(hook)
    return found


def _fit_blocks(quantized, teacher, inputs: torch.Tensor, settings: RangeTuning, weights, activations, gen,
                log) -> None:
    """``scope: "block"``: each block of ``model.blocks`` fits its quantizers to the float block's output on
    cached block inputs (see the module doc)."""
    from .error_correction import BlockRunner, first_block_inputs

    blocks, float_blocks = getattr(quantized, "blocks", None), getattr(teacher, "blocks", None)
    if not isinstance(blocks, torch.nn.Sequential) or not isinstance(float_blocks, torch.nn.Sequential):
        raise ValueError(f"range tuning: scope \"block\" needs a model whose `blocks` is an nn.Sequential (timm's "
                         f"MLP-Mixer, ResMLP and gMLP); {type(quantized).__name__} has none: use scope \"model\"")
    runner = BlockRunner(quantized, "blocks")
    items = list(inputs.split(1))
    with torch.no_grad():
        q_in = torch.cat(first_block_inputs(quantized, blocks[0], items, TEACHER_BATCH))
        f_in = torch.cat(first_block_inputs(teacher, float_blocks[0], items, TEACHER_BATCH))
    inside = _block_quantizers(quantized, "blocks")
    activation_ids = {id(a) for a in activations}
    for index, (block, float_block) in enumerate(zip(blocks, float_blocks)):
        quantizers = inside.get(index, [])
        ids = {id(q) for q in quantizers}
        params = [p for q in quantizers for p in q.parameters() if p.is_floating_point()]
        block_weights = [w for w in weights if id(w[2]) in ids]
        with torch.no_grad():
            target = torch.cat([float_block(x) for x in f_in.split(TEACHER_BATCH)])
        if params or block_weights:
            groups = [{"params": params, "lr": settings.lr}] if params else []
            if block_weights:
                groups.append({"params": [w for w, _, _ in block_weights], "lr": settings.weight_rounding_lr})
            opt = torch.optim.Adam(groups)
            schedule = torch.optim.lr_scheduler.CosineAnnealingLR(opt, settings.steps)
            scale = target.square().mean().clamp_min(1e-12)
            drop = _quantizer_dropout([q for q in quantizers if id(q) in activation_ids], settings.drop_prob,
                                      gen) if settings.drop_prob else []
            try:
                for _ in range(settings.steps):
                    idx = torch.randint(0, len(q_in), (min(settings.batch_size, len(q_in)),), generator=gen)
                    loss = (runner(block, q_in[idx]) - target[idx]).square().mean() / scale
                    opt.zero_grad(set_to_none=True)
                    loss.backward()
                    opt.step()
                    schedule.step()
                    _clamp_to_half_step(block_weights)
            finally:
                for handle in drop:
                    handle.remove()
            if (index + 1) % 4 == 0 or index + 1 == len(blocks):
                log(f"range tuning: block {index + 1}/{len(blocks)}, output error {loss.item():.4f}")
        with torch.no_grad():
            q_in = torch.cat([runner(block, x) for x in q_in.split(TEACHER_BATCH)])
        f_in = target

