"""Roles of quantizer sites, detected from the NNCF graph (op types, names and topology).

A *site* is one NNCF hook slot that holds a quantizer: a post-hook on an op's output or a
pre-hook on one of its inputs (port 1 of a Linear/Conv = its weight). Each site gets a set of
roles; rules match on them. Roles:

- ``weights`` plus the role of the op it belongs to: ``token_mixing``, ``channel_mixing``,
  ``spatial_gating`` (gMLP's token projection), ``classifier``, ``patch_embedding``, ``norm``
  (a LayerNorm's gamma, which NNCF's default mode quantizes);
- activations, by consumer: ``token_mixing_input`` (gMLP's gating projection included),
  ``channel_mixing_input``, ``classifier_input`` (through the pooling), ``patch_embedding_input``,
  ``spatial_gating_input`` (the gate's projected half), ``residual_add`` (the residual stream
  and the branch outputs added to it, after ResMLP's layer scale);
- activations, by producer: ``norm_output`` (LayerNorm, or ResMLP's Affine, the norm that Q-MLP
  turns into LayerNorm; an Affine output also gets ``affine_output``), ``activation_output`` (GELU or a bounded activation),
  ``spatial_gating_product`` (gMLP's u * v), ``residual_add``.

Token mixing is told from channel mixing by topology: a Linear that runs on the transposed
(B, C, N) layout, i.e. after an odd number of transposes counted from the patch embedding.
"""
from __future__ import annotations

from dataclasses import dataclass

from nncf.common.graph import NNCFGraph, NNCFNode
from nncf.torch.function_hook.hook_storage import decode_hook_name

ROLES = ("weights", "token_mixing", "channel_mixing", "spatial_gating", "classifier", "patch_embedding", "norm",
         "token_mixing_input", "channel_mixing_input", "classifier_input", "patch_embedding_input",
         "spatial_gating_input", "residual_add", "norm_output", "affine_output", "activation_output",
         "spatial_gating_product")

TRANSPARENT = {"transpose", "permute", "reshape", "view", "flatten", "split", "chunk", "__getitem__", "getitem",
               "dropout", "contiguous", "unbind", "squeeze", "unsqueeze", "identity", "clone", "narrow"}
SWAPS_LAYOUT = {"transpose", "permute"}
MATMUL_OPS = {"linear", "matmul", "bmm"}
CONV_OPS = {"conv2d"}
ACTIVATIONS = {"gelu", "relu", "relu6", "hardtanh", "clamp", "clip", "silu", "minimum", "maximum", "relu_"}
CONST = "nncf_model_const"


@dataclass(frozen=True)
class Site:
    """One quantizer slot: ``hook_name`` as in NNCF's hook storage, and its detected roles."""

    hook_name: str
    op: str  # NNCF node name of the op the hook is attached to
    port: int
    is_weight: bool
    roles: frozenset
    consumers: tuple  # matmul/conv ops (name) that read this tensor, through layout-only ops


class GraphRoles:
    """Role detection over one model's NNCF graph (``nncf.build_graph(model, example_input=x)``)."""

    def __init__(self, graph: NNCFGraph):
        self.graph = graph
        self._parity: dict[str, int] = {}
        for node in graph.topological_sort():
            inputs = [e.from_node.node_name for e in self._data_inputs(node)]
            parity = max((self._parity.get(n, 0) for n in inputs), default=0)
            self._parity[node.node_name] = parity ^ (node.node_type in SWAPS_LAYOUT)
        stems = [n for n in graph.get_all_nodes() if n.node_type in CONV_OPS]
        self._stem_parity = self._parity[self._next_matmul_parity_anchor(stems)] if stems else 0

    # --------------------------------------------------------------- graph walking
    def _data_inputs(self, node: NNCFNode):
        return [e for e in self.graph.get_input_edges(node) if e.from_node.node_type != CONST]

    def _next_matmul_parity_anchor(self, stems) -> str:
        """Name of the first op after the stem's layout ops: the (B, N, C) residual stream."""
        node = stems[0]
        while True:
            nxt = self.graph.get_next_nodes(node)
            if not nxt or (node is not stems[0] and node.node_type not in TRANSPARENT):
                return node.node_name
            node = nxt[0]

    def producer(self, node: NNCFNode) -> NNCFNode:
        while node.node_type in TRANSPARENT:
            inputs = self._data_inputs(node)
            if not inputs:
                break
            node = inputs[0].from_node
        return node

    def _is_scale(self, node: NNCFNode) -> bool:
        """Pooling or a multiply by a constant (ResMLP's layer scale): no new tensor role."""
        return node.node_type == "mean" or (node.node_type == "mul" and len(self._data_inputs(node)) == 1)

    def consumers(self, node: NNCFNode) -> list[NNCFNode]:
        out, stack = [], list(self.graph.get_next_nodes(node))
        while stack:
            n = stack.pop(0)
            if n.node_type in TRANSPARENT or self._is_scale(n):
                stack.extend(self.graph.get_next_nodes(n))
            elif n not in out:
                out.append(n)
        return out

    # --------------------------------------------------------------- op roles
    def op_role(self, node: NNCFNode) -> str:
        """token_mixing | channel_mixing | spatial_gating | classifier | patch_embedding | other."""
        if node.node_type in CONV_OPS:
            return "patch_embedding"
        if node.node_type == "layer_norm":
            return "norm"
        if node.node_type not in MATMUL_OPS:
            return "other"
        if any(c.node_type == "nncf_model_output" for c in self.consumers(node)):
            return "classifier"
        inp = self._data_inputs(node)
        parity = self._parity[inp[0].from_node.node_name] if inp else 0
        if parity == self._stem_parity:
            return "channel_mixing"
        if any(self._is_gating_product(c) for c in self.consumers(node)):
            return "spatial_gating"
        return "token_mixing"

    def _is_gating_product(self, node: NNCFNode) -> bool:
        return node.node_type == "mul" and len(self._data_inputs(node)) == 2

    # --------------------------------------------------------------- sites
    def _port_edges(self, node: NNCFNode, port: int) -> list:
        return [e for e in self.graph.get_input_edges(node) if e.input_port_id == port]

    def weight_parameter(self, hook_name: str) -> str | None:
        """The parameter name (``blocks.0.mlp_channels.fc1.weight``) a weight hook reads, else None."""
        hook_type, op_name, port = decode_hook_name(hook_name)
        if hook_type != "pre_hooks":
            return None
        edges = self._port_edges(self.graph.get_node_by_name(op_name), port)
        return edges[0].from_node.layer_attributes.name if edges and edges[0].from_node.node_type == CONST else None

    def site(self, hook_name: str) -> Site:
        hook_type, op_name, port = decode_hook_name(hook_name)
        node = self.graph.get_node_by_name(op_name)
        if hook_type == "pre_hooks":
            edges = self._port_edges(node, port)
            if edges and edges[0].from_node.node_type == CONST:  # a weight
                return Site(hook_name, op_name, port, True, frozenset({"weights", self.op_role(node)}), ())
            producer = self.producer(edges[0].from_node) if edges else node
            consumers = [node]
        else:
            producer, consumers = self.producer(node), self.consumers(node)
        roles = set()
        if producer.node_type in ("layer_norm", "addcmul"):
            roles.add("norm_output")
            if producer.node_type == "addcmul":
                roles.add("affine_output")
        elif producer.node_type in ACTIVATIONS:
            roles.add("activation_output")
        elif self._is_gating_product(producer):
            roles.add("spatial_gating_product")
        elif producer.node_type == "add":
            roles.add("residual_add")
        for c in consumers:
            role = self.op_role(c)
            if role in ("token_mixing", "channel_mixing", "classifier", "patch_embedding"):
                roles.add(role + "_input")
            elif role == "spatial_gating":
                roles.add("token_mixing_input")
            elif c.node_type == "add":
                roles.add("residual_add")
            elif self._is_gating_product(c):
                roles.add("spatial_gating_input")
        matmuls = tuple(c.node_name for c in consumers if c.node_type in MATMUL_OPS | CONV_OPS)
        return Site(hook_name, op_name, port, False, frozenset(roles), matmuls)
