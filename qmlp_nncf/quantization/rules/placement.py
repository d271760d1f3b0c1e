"""Quantizer placement that OpenVINO's low-precision pipeline can fuse, decided once on the backend-neutral graph.

``nncf.quantize`` in transformer mode puts one quantizer on each Linear input. On a Q-MLP model that is a
FakeQuantize after every token group's ``Slice``: OpenVINO cannot fold it into a producer, so it runs as a
standalone f32 element-wise op, and the LayerNorm, the Transpose, the Slices, the Concat and the residual adds
all move f32 data. The placement here moves and adds quantizers by *role* (``roles.GraphRoles``), the same on
the torch and the OpenVINO backend:

- ``shared_group_input``: the G input quantizers of one block's token groups become one quantizer on the tensor
  the groups are sliced from (the LayerNorm output, before the Transpose). OpenVINO fuses it into the LayerNorm
  (MVN with an int8 output); the Transpose and the Slices then move int8 data. One range for the G groups: a
  per-channel range per group cannot pass the Transpose (OpenVINO then keeps the dequantization in f32 before
  it and the token Linears lose their int8 inputs; measured), so this option trades per-group ranges for speed;
  4-bit token inputs, where the per-group range is worth accuracy, can keep their own quantizers.
- ``residual``: the residual stream, i.e. the patch embedding's output and the outputs of the residual adds
  (8-bit symmetric, 99.99th percentile, by the family rules): the LayerNorms and the next add then read int8; and
  the input of every other norm (gMLP's gate norm, on the GELU output it splits), so its Split and MVN read int8.
- ``group_outputs``: the token groups' outputs, one shared range per Concat, so the Concat and the Transpose
  after it run in int8 (a per-input range would leave a per-channel dequantization in front of the Transpose);
  on a model with one token op (an unconverted Mixer or ResMLP, gMLP's spatial projection), that op's output
  before the transpose back, as NNCF's default placement does.

The same plan serves converted and unconverted models (issue 34). The tensors it adds quantizers to get their
specs by rule whatever the recipe's defaults (``family_rules.PLACED``: 8-bit), so a 4-bit recipe keeps an 8-bit
residual stream.

A :class:`PlacementPlan` names what to remove (sites) and where to insert (NNCF node names); each backend
applies it (``apply_placement`` of ``postpass.torch_backend`` for torch hooks, of ``postpass.openvino_backend`` for
FakeQuantize nodes) and the post-pass then specifies and calibrates the inserted quantizers like every other one.
"""
from __future__ import annotations

from dataclasses import dataclass, fields
from typing import Optional

from nncf.common.graph.layer_attributes import Dtype

from .roles import GraphRoles, Site
from .rule import resolve
from .specs import QuantizerSpec, SpecError, check_keys, check_type

PRESETS = {"per_op": {}, "fused": {"shared_group_input": True, "residual": True, "group_outputs": True}}
TOKEN_OPS = ("token_mixing", "spatial_gating")


@dataclass(frozen=True)
class Placement:
    """Which fusable placements the post-pass applies on top of NNCF's (all off: NNCF's placement as it is)."""

    shared_group_input: bool = False
    residual: bool = False
    group_outputs: bool = False
    group_input_bits: tuple = (8,)  # shared_group_input only where the token inputs resolve to these bit widths

    @property
    def active(self) -> bool:
        return self.shared_group_input or self.residual or self.group_outputs

    @classmethod
    def from_value(cls, value, where: str = "placement") -> "Placement":
        """``"fused"``, ``"per_op"``, or an object of the fields (``group_input_bits`` a list of 4 / 8)."""
        if isinstance(value, str):
            if value not in PRESETS:
                raise SpecError(f"{where}: {value!r} unknown; choose one of {list(PRESETS)} or an object with "
                                f"keys {[f.name for f in fields(cls)]}")
            return cls(**PRESETS[value])
        check_keys(value, {f.name for f in fields(cls)}, where)
        kw = {}
        for key in ("shared_group_input", "residual", "group_outputs"):
            if key in value:
                kw[key] = check_type(value[key], bool, f"{where}.{key}")
        if "group_input_bits" in value:
            bits = check_type(value["group_input_bits"], list, f"{where}.group_input_bits")
            if any(b not in (4, 8) or isinstance(b, bool) for b in bits):
                raise SpecError(f"{where}.group_input_bits: bit widths are 4 or 8, got {bits!r}")
            kw["group_input_bits"] = tuple(bits)
        return cls(**kw)

    def to_value(self):
        for name, preset in PRESETS.items():
            if self == Placement(**preset):
                return name
        return {"shared_group_input": self.shared_group_input, "residual": self.residual,
                "group_outputs": self.group_outputs, "group_input_bits": list(self.group_input_bits)}


@dataclass(frozen=True)
class Insertion:
    """A new quantizer on the output of NNCF node ``op``: read by every reader, or only by ``reader``."""

    op: str
    reader: Optional[str] = None
    port: int = 0  # the reader's input port (with ``reader``)


@dataclass(frozen=True)
class PlacementPlan:
    remove: tuple = ()  # site hook names (torch hook / FakeQuantize name)
    insert: tuple = ()  # Insertion
    shared: tuple = ()  # tuples of quantizers that share one range: an Insertion, or an existing site's hook name

    def shared_names(self, names: dict) -> list[tuple[str, ...]]:
        """The shared groups as hook names, ``names`` mapping each Insertion to the name a backend gave it."""
        return [tuple(names.get(i, i) for i in group) for group in self.shared]

    def __bool__(self) -> bool:
        return bool(self.remove or self.insert)


def _epilogue_end(roles: GraphRoles, node):
    """The last op of ``node``'s epilogue (OpenVINO's bias ``Add`` after a Convolution), else ``node``."""
    while True:
        following = roles.graph.get_next_nodes(node)
        if len(following) != 1 or roles.kind(following[0]) != "epilogue":
            return node
        node = following[0]


def _feeds_swap(roles: GraphRoles, node) -> bool:
    """Whether ``node``'s output reaches a transpose through layout-only ops (a Dropout, a reshape)."""
    stack = list(roles.graph.get_next_nodes(node))
    while stack:
        n = stack.pop()
        if roles.kind(n) == "swap":
            return True
        if roles.kind(n) == "layout":
            stack.extend(roles.graph.get_next_nodes(n))
    return False


def _makes_floats(roles: GraphRoles, node) -> bool:
    """Whether ``node``'s output is a float tensor (an OpenVINO IR computes shapes with integer ops: a Split's
    lengths from ShapeOf + Add are not activations)."""
    return all(e.dtype != Dtype.INTEGER for e in roles.graph.get_output_edges(node))


def _layout_source(roles: GraphRoles, node):
    """The op whose output ``node`` reads, looked through layout-only ops (gMLP's chunk in front of its norm; an IR's
    VariadicSplit reads its lengths from integer shape ops besides its one float input)."""
    while roles.kind(node) == "layout":
        floats = [e for e in roles.data_inputs(node) if e.dtype != Dtype.INTEGER]
        if len(floats) != 1:
            break
        node = floats[0].from_node
    return node


def plan(roles: GraphRoles, sites: list[Site], placement: Placement, rules=(),
         activations: QuantizerSpec = QuantizerSpec()) -> PlacementPlan:
    """What to move and add in a model whose quantizers are ``sites``. ``shared_group_input`` applies where all of a
    tensor's group inputs resolve (``rules`` over the ``activations`` spec) to ``placement.group_input_bits``."""
    graph = roles.graph
    remove, insert, shared = [], [], []
    quantized_outputs = {s.op: s.hook_name for s in sites if not s.is_weight}
    if placement.shared_group_input:
        groups: dict[str, list[Site]] = {}
        for s in sites:
            node = graph.get_node_by_name(s.op)
            if not s.is_weight and "token_mixing_input" in s.roles and roles.kind(node) in ("layout", "swap"):
                groups.setdefault(roles.producer(node).node_name, []).append(s)
        for source, members in groups.items():
            readers = {c.node_name for c in roles.consumers(graph.get_node_by_name(source))}
            covered = {c for s in members for c in s.consumers}
            if readers != covered or source in quantized_outputs:
                continue  # the tensor has other readers: its quantizers stay where they are
            if any(resolve(s, rules, activations)[0].bits not in placement.group_input_bits for s in members):
                continue
            remove += [s.hook_name for s in members]
            insert.append(Insertion(source))
            quantized_outputs[source] = insert[-1]
    if placement.residual:
        for node in graph.topological_sort():
            stem = roles.op_role(node) == "patch_embedding"
            if stem or (roles.kind(node) == "add" and len(roles.data_inputs(node)) == 2 and _makes_floats(roles, node)):
                node = _epilogue_end(roles, node)
                if node.node_name not in quantized_outputs:
                    insert.append(Insertion(node.node_name))
                    quantized_outputs[node.node_name] = insert[-1]
        # every norm reads int8: a norm whose input is not the residual stream (gMLP's gate norm, on one half of
        # the GELU output) gets a quantizer on that input's producer, so the Split and the MVN move int8 data
        for node in graph.topological_sort():
            inputs = roles.data_inputs(node)
            if roles.kind(node) != "norm" or len(inputs) != 1:
                continue
            source = _layout_source(roles, inputs[0].from_node)
            if roles.kind(source) in ("norm", "input") or source.node_name in quantized_outputs or \
                    not _makes_floats(roles, source):
                continue  # OpenVINO's gamma / beta after the MVN, already quantized, or a shape computation
            insert.append(Insertion(source.node_name))
            quantized_outputs[source.node_name] = insert[-1]
    if placement.group_outputs:
        for node in graph.topological_sort():
            if roles.kind(node) != "concat":
                continue
            edges = sorted(roles.data_inputs(node), key=lambda e: e.input_port_id)
            producers = [roles.producer(e.from_node) for e in edges]
            if len(edges) < 2 or any(roles.op_role(p) not in TOKEN_OPS for p in producers):
                continue
            # a quantizer NNCF already put there (default mode) joins the shared range instead of a new one
            group = tuple(quantized_outputs.get(e.from_node.node_name)
                          or Insertion(e.from_node.node_name, node.node_name, e.input_port_id) for e in edges)
            insert += [i for i in group if isinstance(i, Insertion)]
            shared.append(group)
            quantized_outputs.update({e.from_node.node_name: g for e, g in zip(edges, group)})
        # one token op (an unconverted Mixer or ResMLP, gMLP's spatial gating): its output, before the transpose
        # back to the residual layout, so that the Transpose moves int8 data
        for node in graph.topological_sort():
            if roles.op_role(node) not in TOKEN_OPS:
                continue
            end = _epilogue_end(roles, node)
            if end.node_name in quantized_outputs or not _feeds_swap(roles, end):
                continue
            insert.append(Insertion(end.node_name))
            quantized_outputs[end.node_name] = insert[-1]
    return PlacementPlan(tuple(remove), tuple(insert), tuple(shared))


__all__ = ["Placement", "PlacementPlan", "Insertion", "plan"]
