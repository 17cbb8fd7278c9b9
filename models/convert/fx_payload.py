"""A converted GraphModule as plain data: safe to ``torch.save`` and load with ``weights_only``.

The payload holds the fx nodes (functions by their ``runtime_ops.FUNCTIONS`` name, never
pickled code) and each submodule's kind and constructor arguments as one JSON string
(fast to load), and the state dict.
"""

from __future__ import annotations

import json
from typing import Any

import torch
from torch import fx, nn

from models.convert.fx_builder import MODULE_SPECS
from models.convert.runtime_ops import FUNCTIONS, make_module

__all__ = ["from_payload", "to_payload"]

_FUNCTION_NAMES = {fn: name for name, fn in FUNCTIONS.items()}


def _encode(arg: Any) -> Any:
    if isinstance(arg, fx.Node):
        return {"node": arg.name}
    if isinstance(arg, tuple):
        return {"tuple": [_encode(a) for a in arg]}
    if isinstance(arg, list):
        return [_encode(a) for a in arg]
    if arg is None or isinstance(arg, (bool, int, float, str)):
        return arg
    raise ValueError(f"cannot store argument {arg!r} of type {type(arg).__name__}")


def _decode(arg: Any, nodes: dict[str, fx.Node]) -> Any:
    if isinstance(arg, dict):
        if "node" in arg:
            return nodes[arg["node"]]
        return tuple(_decode(a, nodes) for a in arg["tuple"])
    if isinstance(arg, list):
        return [_decode(a, nodes) for a in arg]
    return arg


def _target(node: fx.Node) -> str:
    if node.op != "call_function":
        return str(node.target)
    if node.target not in _FUNCTION_NAMES:
        raise ValueError(f"function {node.target!r} is not in runtime_ops.FUNCTIONS")
    return _FUNCTION_NAMES[node.target]


def to_payload(module: fx.GraphModule) -> dict[str, Any]:
    """``module`` (made by ``FxBuilder.finish``) as lists, dicts, numbers and tensors."""
    nodes = [
        [
            node.op,
            node.name,
            _target(node),
            _encode(tuple(node.args)),
            {key: _encode(value) for key, value in node.kwargs.items()},
        ]
        for node in module.graph.nodes
    ]
    specs = {
        name: [kind, {key: _encode(value) for key, value in config.items()}]
        for name, (kind, config) in module.meta[MODULE_SPECS].items()
    }
    graph = {"class_name": type(module).__name__, "nodes": nodes, "modules": specs}
    return {"graph": json.dumps(graph), "state": module.state_dict()}


def from_payload(payload: dict[str, Any]) -> fx.GraphModule:
    """Rebuild the frozen eval-mode GraphModule that ``to_payload`` described."""
    state: dict[str, torch.Tensor] = payload["state"]
    described = json.loads(payload["graph"])
    root = nn.Module()
    specs = {
        name: (kind, {key: _decode(value, {}) for key, value in config.items()})
        for name, (kind, config) in described["modules"].items()
    }
    for name, (kind, config) in specs.items():
        prefix = f"{name}."
        own = {k[len(prefix) :]: v for k, v in state.items() if k.startswith(prefix)}
        root.add_module(name, make_module(kind, config, own))
    for key, tensor in state.items():
        if "." not in key:
            root.register_buffer(key, tensor)
    graph = fx.Graph()
    nodes: dict[str, fx.Node] = {}
    for op, name, target, args, kwargs in described["nodes"]:
        fn = FUNCTIONS[target] if op == "call_function" else target
        decoded_args = _decode(args, nodes)
        decoded_kwargs = {key: _decode(value, nodes) for key, value in kwargs.items()}
        if op == "output":
            graph.output(decoded_args[0])
            continue
        nodes[name] = graph.create_node(op, fn, decoded_args, decoded_kwargs, name=name)
    module = fx.GraphModule(root, graph, class_name=described["class_name"])
    module.meta[MODULE_SPECS] = specs
    module.requires_grad_(False)
    return module.eval()
