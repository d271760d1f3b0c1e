"""Roles of quantizer sites, detected on NNCF's backend-neutral ``NNCFGraph`` (both the torch and the OpenVINO
backend build one), from NNCF's operator metatypes and the graph's topology.

A *site* is one place that holds a quantizer: on the torch backend a hook slot (a post-hook on an op's output or
a pre-hook on one of its inputs; port 1 of a Linear/Conv is its weight), on the OpenVINO backend a FakeQuantize
node (see ``quantization.openvino``). Each site gets a set of roles; rules match on them. Roles:

- ``weights`` plus the role of the op it belongs to: ``token_mixing``, ``channel_mixing``,
  ``spatial_gating`` (gMLP's token projection), ``classifier``, ``patch_embedding``, ``norm``
  (a LayerNorm's gamma, which NNCF's default torch mode quantizes);
- activations, by consumer: ``token_mixing_input`` (gMLP's gating projection included),
  ``channel_mixing_input``, ``classifier_input`` (through the pooling), ``patch_embedding_input``,
  ``spatial_gating_input`` (the gate's projected half), ``residual_add`` (the residual stream
  and the branch outputs added to it, after ResMLP's layer scale);
- activations, by producer: ``norm_output`` (LayerNorm, or ResMLP's Affine, the norm that Q-MLP
  turns into LayerNorm; an Affine output also gets ``affine_output``), ``activation_output`` (GELU or a bounded
  activation), ``spatial_gating_product`` (gMLP's u * v), ``residual_add``, ``token_mixing_output`` (a token
  group's output, where ``placement`` quantizes the Concat's inputs).

Token mixing is told from channel mixing by topology: a Linear that runs on the transposed
(B, C, N) layout, i.e. after an odd number of transposes counted from the patch embedding.

Every op gets a *kind* from its metatype (``KIND_OF_METATYPE``; ``KIND_OF_NODE_TYPE`` for the few torch functions
NNCF has no metatype for). Where one backend spells an op as several nodes, the pattern is matched here, in
:meth:`GraphRoles._refine`, and nowhere else:

- OpenVINO's LayerNorm is ``MVN -> Multiply(gamma) -> Add(beta)``: the Multiply and Add get kind ``norm``;
- ResMLP's Affine is one ``addcmul`` in torch and ``Multiply(alpha) -> Add(beta)`` in OpenVINO: the Multiply is a
  ``scale``, the Add an ``affine``;
- a Linear's bias is inside the torch op and an ``Add(const)`` after OpenVINO's MatMul; a layer scale that
  OpenVINO folded into the Linear before it is a ``Multiply(const)`` there: both are the Linear's ``epilogue``;
- OpenVINO folds a transpose of a Linear's input into the MatMul (``transpose_a``): it counts as a transpose;
- constants: torch's ``nncf_model_const``, OpenVINO's ``Constant`` and anything computed from constants only
  (``Convert`` of an f16 weight).
"""
from __future__ import annotations

from dataclasses import dataclass, field

from nncf.common.graph import NNCFGraph, NNCFNode
from nncf.openvino.graph.metatypes import openvino_metatypes as _ov
from nncf.torch.function_hook.hook_storage import decode_hook_name
from nncf.torch.graph import operator_metatypes as _pt

ROLES = ("weights", "token_mixing", "channel_mixing", "spatial_gating", "classifier", "patch_embedding", "norm",
         "token_mixing_input", "channel_mixing_input", "classifier_input", "patch_embedding_input",
         "spatial_gating_input", "residual_add", "norm_output", "affine_output", "activation_output",
         "spatial_gating_product", "token_mixing_output")


def _table(module, kinds: dict[str, tuple[str, ...]]) -> dict:
    return {getattr(module, name): kind for kind, names in kinds.items() for name in names if hasattr(module, name)}


# kinds: matmul, conv, norm, affine, add, mul, concat, swap (a transpose: swaps tokens and channels), layout (any other
# op that only moves or selects values), activation, mean, const, input, output; other for the rest
KIND_OF_METATYPE = {
    **_table(_pt, {
        "matmul": ("PTLinearMetatype", "PTMatMulMetatype", "PTAddmmMetatype"),
        "conv": ("PTConv2dMetatype",),
        "norm": ("PTLayerNormMetatype",),
        "add": ("PTAddMetatype",), "mul": ("PTMulMetatype",),
        "swap": ("PTTransposeMetatype",),
        "concat": ("PTCatMetatype",),
        "layout": ("PTReshapeMetatype", "PTSqueezeMetatype", "PTSplitMetatype", "PTGatherMetatype",
                   "PTDropoutMetatype"),
        "activation": ("PTGELUMetatype", "PTRELUMetatype", "PTRELU6Metatype", "PTHardTanhMetatype",
                       "PTSILUMetatype", "PTLeakyRELUMetatype"),
        "mean": ("PTMeanMetatype",),
        "const": ("PTConstNoopMetatype",), "input": ("PTInputNoopMetatype",), "output": ("PTOutputNoopMetatype",),
    }),
    **_table(_ov, {
        "matmul": ("OVMatMulMetatype",),
        "conv": ("OVConvolutionMetatype",),
        "norm": ("OVMVNMetatype",),
        "add": ("OVAddMetatype",), "mul": ("OVMultiplyMetatype",),
        "swap": ("OVTransposeMetatype",),
        "concat": ("OVConcatMetatype",),
        "layout": ("OVReshapeMetatype", "OVSqueezeMetatype", "OVUnsqueezeMetatype", "OVSplitMetatype",
                   "OVVariadicSplitMetatype", "OVSliceMetatype", "OVStridedSliceMetatype", "OVGatherMetatype",
                   "OVFakeQuantizeMetatype", "OVFakeConvertMetatype"),
        "activation": ("OVGeluMetatype", "OVReluMetatype", "OVClampMetatype", "OVSwishMetatype",
                       "OVHSwishMetatype", "OVMinimumMetatype", "OVMaximumMetatype", "OVPReluMetatype"),
        "mean": ("OVReduceMeanMetatype",),
        "const": ("OVConstantMetatype",), "input": ("OVParameterMetatype",), "output": ("OVResultMetatype",),
    }),
}
# torch functions NNCF gives no metatype (UnknownMetatype), or one that does not say enough
KIND_OF_NODE_TYPE = {
    **{t: "layout" for t in ("narrow", "contiguous", "clone", "identity", "chunk", "unbind", "__getitem__",
                             "getitem", "view", "reshape", "flatten", "squeeze", "unsqueeze", "dropout")},
    **{t: "activation" for t in ("clamp", "clip", "relu_", "minimum", "maximum", "gelu", "relu", "relu6",
                                 "hardtanh", "silu")},
    "addcmul": "affine", "permute": "swap", "transpose": "swap",
}
WALK_THROUGH = {"layout", "swap", "epilogue"}  # a tensor keeps its role through these
SCALES = {"scale", "mean", "epilogue"}  # no new tensor role for the ops that read it (layer scale, pooling)
OUTPUT_KINDS = {"output"}


def module_of(node_name: str) -> str:
    """The torch module path an op belongs to, in either backend: ``blocks.0.mlp_tokens.fc1`` from torch's
    ``blocks/0/mlp_tokens/fc1/linear/0`` and from OpenVINO's ``__module.blocks.0.mlp_tokens.fc1/aten::linear/MatMul``
    (how ``ov.convert_model`` names the ops of a torch module)."""
    if node_name.startswith("__module.") or "/aten::" in node_name:
        head = node_name.split("/", 1)[0]
        return head[len("__module."):] if head.startswith("__module.") else ""
    return ".".join(node_name.split("/")[:-2])


@dataclass(frozen=True)
class Site:
    """One quantizer slot: ``hook_name`` (NNCF's hook storage name on torch, the FakeQuantize's name on OpenVINO),
    and its detected roles. ``handle``: what a backend's ``sites()`` returned to reach the quantizer again (the
    FakeQuantize node on OpenVINO; None on torch, whose hooks are found by name); not part of the site's identity."""

    hook_name: str
    op: str  # NNCF node name of the op the quantizer is attached to
    port: int
    is_weight: bool
    roles: frozenset
    consumers: tuple  # matmul/conv ops (name) that read this tensor, through layout-only ops
    handle: object = field(default=None, compare=False, repr=False)


class GraphRoles:
    """Role detection over one model's ``NNCFGraph``: ``nncf.build_graph(model, example_input=x)`` for torch,
    ``nncf.openvino.graph.nncf_graph_builder.GraphConverter.create_nncf_graph(ov_model)`` for OpenVINO."""

    def __init__(self, graph: NNCFGraph):
        self.graph = graph
        self.kinds: dict[str, str] = {}
        self._parity: dict[str, int] = {}
        for node in graph.topological_sort():
            self.kinds[node.node_name] = self._refine(node)
            inputs = [e.from_node.node_name for e in self.data_inputs(node)]
            parity = max((self._parity.get(n, 0) for n in inputs), default=0)
            self._parity[node.node_name] = parity ^ (self.kind(node) == "swap") ^ self._transposes_input(node)
        # the patch embedding makes (B, C, H*W); the residual stream (B, N, C) is one transpose away from it.
        # Not found by walking from the stem: OpenVINO may fold that transpose into a later one or into a MatMul
        stems = [n for n in graph.topological_sort() if self.kind(n) == "conv"]
        self._stem_parity = self._parity[stems[0].node_name] ^ 1 if stems else 0

    # --------------------------------------------------------------- kinds
    def kind(self, node: NNCFNode) -> str:
        return self.kinds[node.node_name]

    @staticmethod
    def base_kind(node: NNCFNode) -> str:
        return KIND_OF_NODE_TYPE.get(node.node_type) or KIND_OF_METATYPE.get(node.metatype, "other")

    def _refine(self, node: NNCFNode) -> str:
        """The kind of ``node`` in its context (inputs are refined first: topological order)."""
        kind = self.base_kind(node)
        inputs = [e.from_node for e in self.graph.get_input_edges(node)]
        if kind not in ("input", "const") and inputs and all(self.kinds.get(n.node_name) == "const" for n in inputs):
            return "const"  # e.g. OpenVINO's Convert of an f16 weight
        if kind not in ("add", "mul"):
            return kind
        data = self.data_inputs(node)
        if len(data) != 1:
            return kind
        source = self.kind(data[0].from_node)
        if source in ("matmul", "conv", "epilogue"):
            return "epilogue"  # a bias, or a layer scale folded into the Linear (OpenVINO)
        if source == "norm":
            return "norm"  # OpenVINO's LayerNorm: MVN -> Multiply(gamma) -> Add(beta)
        if kind == "mul":
            return "scale"  # a layer scale, SmoothQuant's scale, or the alpha of OpenVINO's Affine
        return "affine" if source == "scale" else kind  # OpenVINO's Affine: Multiply(alpha) -> Add(beta)

    def _transposes_input(self, node: NNCFNode) -> bool:
        """OpenVINO folds a transpose of a Linear's input into its MatMul (``transpose_a``): the layout swap is
        then an attribute of the MatMul, which NNCF keeps as ``layer_attributes.input_attributes``."""
        if self.kinds.get(node.node_name) != "matmul":
            return False
        attributes = getattr(node.layer_attributes, "input_attributes", None)
        return bool(attributes.get("transpose", False)) if isinstance(attributes, dict) else False

    # --------------------------------------------------------------- graph walking
    def data_inputs(self, node: NNCFNode):
        return [e for e in self.graph.get_input_edges(node) if self.kinds.get(e.from_node.node_name) != "const"]

    def producer(self, node: NNCFNode) -> NNCFNode:
        while self.kind(node) in WALK_THROUGH:
            inputs = self.data_inputs(node)
            if not inputs:
                break
            node = inputs[0].from_node
        return node

    def _is_scale(self, node: NNCFNode) -> bool:
        """Pooling, a multiply by a constant (ResMLP's layer scale), a Linear's epilogue: no new tensor role."""
        return self.kind(node) in SCALES

    def expand(self, nodes) -> list[NNCFNode]:
        """The ops that really read what ``nodes`` read: through layout ops, scales and epilogues."""
        out, stack = [], list(nodes)
        while stack:
            n = stack.pop(0)
            if self.kind(n) in WALK_THROUGH or self._is_scale(n):
                stack.extend(self.graph.get_next_nodes(n))
            elif n not in out:
                out.append(n)
        return out

    def consumers(self, node: NNCFNode) -> list[NNCFNode]:
        return self.expand(self.graph.get_next_nodes(node))

    # --------------------------------------------------------------- op roles
    def op_role(self, node: NNCFNode) -> str:
        """token_mixing | channel_mixing | spatial_gating | classifier | patch_embedding | norm | other."""
        kind = self.kind(node)
        if kind == "conv":
            return "patch_embedding"
        if kind == "norm":
            return "norm"
        if kind != "matmul":
            return "other"
        if any(self.kind(c) in OUTPUT_KINDS for c in self.consumers(node)):
            return "classifier"
        inp = self.data_inputs(node)
        parity = (self._parity[inp[0].from_node.node_name] if inp else 0) ^ self._transposes_input(node)
        if parity == self._stem_parity:
            return "channel_mixing"
        if any(self.is_gating_product(c) for c in self.consumers(node)):
            return "spatial_gating"
        return "token_mixing"

    def is_gating_product(self, node: NNCFNode) -> bool:
        return self.kind(node) == "mul" and len(self.data_inputs(node)) == 2

    # --------------------------------------------------------------- sites
    def _port_edges(self, node: NNCFNode, port: int) -> list:
        return [e for e in self.graph.get_input_edges(node) if e.input_port_id == port]

    def is_const(self, node: NNCFNode) -> bool:
        return self.kind(node) == "const"

    def weight_parameter(self, hook_name: str) -> str | None:
        """The parameter name (``blocks.0.mlp_channels.fc1.weight``) a weight hook reads, else None (torch)."""
        hook_type, op_name, port = decode_hook_name(hook_name)
        if hook_type != "pre_hooks":
            return None
        edges = self._port_edges(self.graph.get_node_by_name(op_name), port)
        return edges[0].from_node.layer_attributes.name if edges and self.is_const(edges[0].from_node) else None

    def weight_site(self, name: str, op: NNCFNode, port: int) -> Site:
        return Site(name, op.node_name, port, True, frozenset({"weights", self.op_role(op)}), ())

    def activation_site(self, name: str, op: NNCFNode, port: int, producer: NNCFNode, consumers,
                        walk: bool = True) -> Site:
        """The site ``name`` on a tensor that ``producer`` makes (looked through layout ops) and ``consumers`` read."""
        roles = set()
        producer = self.producer(producer) if walk else producer
        kind = self.kind(producer)
        if kind in ("norm", "affine"):
            roles.add("norm_output")
            if kind == "affine":
                roles.add("affine_output")
        elif kind == "activation":
            roles.add("activation_output")
        elif self.is_gating_product(producer):
            roles.add("spatial_gating_product")
        elif kind == "add" or kind == "conv":  # the patch embedding's output starts the residual stream
            roles.add("residual_add")
        elif kind == "matmul" and self.op_role(producer) in ("token_mixing", "spatial_gating"):
            roles.add("token_mixing_output")
        for c in consumers:
            role = self.op_role(c)
            if role in ("token_mixing", "channel_mixing", "classifier", "patch_embedding"):
                roles.add(role + "_input")
            elif role == "spatial_gating":
                roles.add("token_mixing_input")
            elif self.kind(c) == "add":
                roles.add("residual_add")
            elif self.is_gating_product(c):
                roles.add("spatial_gating_input")
        matmuls = tuple(c.node_name for c in consumers if self.kind(c) in ("matmul", "conv"))
        return Site(name, op.node_name, port, False, frozenset(roles), matmuls)

    def site(self, hook_name: str) -> Site:
        """The site of a torch hook name (``pre_hooks.<op>__<port>.<i>`` or ``post_hooks.<op>__0.<i>``)."""
        hook_type, op_name, port = decode_hook_name(hook_name)
        node = self.graph.get_node_by_name(op_name)
        if hook_type == "pre_hooks":
            edges = self._port_edges(node, port)
            if edges and self.is_const(edges[0].from_node):  # a weight
                return self.weight_site(hook_name, node, port)
            return self.activation_site(hook_name, node, port, edges[0].from_node if edges else node, [node],
                                        walk=bool(edges))
        return self.activation_site(hook_name, node, port, node, self.consumers(node))
