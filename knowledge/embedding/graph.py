"""A BERT encoder's ONNX graph, written from its weights: no torch, no export step.

sentence-transformers models of the BERT family (all-MiniLM-L6-v2, bge-small/base, e5-small/
base, paraphrase-MiniLM …) are a `BertModel` and a pooling step. Their graph is small and
fixed: embeddings, then per layer self-attention and a feed-forward block, each with a residual
LayerNorm. `build_bert` writes that graph with the `onnx` helpers, the weights read from
`model.safetensors`; `save` writes it beside its weights; ONNX Runtime runs it. The output is the last
hidden state (batch × tokens × hidden); pooling and normalisation happen in `onnx.py`, the same
for this graph and for a model folder's own `onnx/model.onnx`.

Exporting through torch (`torch.onnx.export`) would need torch, the very dependency the default
install leaves out; the vector-equality test (`tests/knowledge/test_embedding_onnx.py`) holds
this graph to sentence-transformers' vectors.
"""

from __future__ import annotations

import json
import math
import os
import shutil
from pathlib import Path
from typing import Any

import numpy as np

GRAPH_VERSION = 2  # bump when the graph changes: cached graphs are rebuilt
OPSET = 17  # LayerNormalization


class UnsupportedModel(ValueError):
    """The model is not a BERT encoder this module can write a graph for."""


def is_bert(folder: Path) -> bool:
    """Whether `folder` holds a BERT model with safetensors weights."""
    config = folder / "config.json"
    if not (config.is_file() and (folder / "model.safetensors").is_file()):
        return False
    return str(json.loads(config.read_text()).get("model_type", "")) == "bert"


def build_bert(folder: Path) -> Any:
    """The ONNX graph (a ModelProto) of the BERT model in `folder` (inputs input_ids and
    attention_mask, int64 batch × tokens; output last_hidden_state, float32)."""
    import onnx
    from onnx import TensorProto, helper
    from safetensors.numpy import load_file

    config = json.loads((folder / "config.json").read_text())
    if config.get("model_type") != "bert" or config.get("hidden_act", "gelu") != "gelu":
        raise UnsupportedModel(f"{folder} is not a BERT model with GELU activations")
    if config.get("position_embedding_type", "absolute") != "absolute":
        raise UnsupportedModel(f"{folder} uses {config['position_embedding_type']} positions")
    weights = load_file(str(folder / "model.safetensors"))
    writer = _Writer(weights, prefix=_prefix(weights))
    heads = int(config["num_attention_heads"])
    hidden = int(config["hidden_size"])
    eps = float(config.get("layer_norm_eps", 1e-12))
    x = writer.embeddings(eps)
    mask = writer.attention_bias()
    for layer in range(int(config["num_hidden_layers"])):
        x = writer.layer(layer, x, mask, heads=heads, hidden=hidden, eps=eps)
    writer.nodes.append(helper.make_node("Identity", [x], ["last_hidden_state"]))
    graph = helper.make_graph(
        writer.nodes,
        "bert",
        [
            helper.make_tensor_value_info("input_ids", TensorProto.INT64, ["batch", "tokens"]),
            helper.make_tensor_value_info("attention_mask", TensorProto.INT64, ["batch", "tokens"]),
        ],
        [
            helper.make_tensor_value_info(
                "last_hidden_state", TensorProto.FLOAT, ["batch", "tokens", hidden]
            )
        ],
        writer.initializers,
    )
    model = helper.make_model(
        graph, opset_imports=[helper.make_opsetid("", OPSET)], producer_name="teambot"
    )
    model.ir_version = 8  # what every onnxruntime since 1.12 reads
    onnx.checker.check_model(model)
    return model


def save(model: Any, target: Path) -> None:
    """Write `model` as target/model.onnx plus its weights in target/model.onnx.data, a file
    ONNX Runtime maps into memory: weights it never reads (most of the vocabulary's rows for
    any one question) never take memory, and loading copies nothing. The folder appears whole
    or not at all: another process may be looking for it at the same moment."""
    import onnx

    partial = target.with_name(f"{target.name}.{os.getpid()}.partial")
    shutil.rmtree(partial, ignore_errors=True)
    partial.mkdir(parents=True)
    onnx.save_model(
        model,
        str(partial / "model.onnx"),
        save_as_external_data=True,
        all_tensors_to_one_file=True,
        location="model.onnx.data",
        size_threshold=1024,
    )
    try:
        os.rename(partial, target)
    except OSError:  # another process wrote it first: theirs is the same graph
        shutil.rmtree(partial, ignore_errors=True)


def _prefix(weights: dict[str, Any]) -> str:
    """ "bert." when the weights come from a task model (BertForMaskedLM …), else ""."""
    return "" if "embeddings.word_embeddings.weight" in weights else "bert."


class _Writer:
    """Appends nodes and initializers; each helper returns the name of its output."""

    def __init__(self, weights: dict[str, Any], prefix: str) -> None:
        self._weights = weights
        self._prefix = prefix
        self.nodes: list[Any] = []
        self.initializers: list[Any] = []
        self._count = 0

    def _name(self, hint: str) -> str:
        self._count += 1
        return f"{hint}_{self._count}"

    def const(self, name: str, value: Any) -> str:
        from onnx import numpy_helper

        self.initializers.append(numpy_helper.from_array(np.ascontiguousarray(value), name))
        return name

    def weight(self, key: str, *, transpose: bool = False) -> str:
        array = self._weights[self._prefix + key].astype(np.float32)
        return self.const(key, array.T if transpose else array)

    def op(self, kind: str, inputs: list[str], **attributes: Any) -> str:
        from onnx import helper

        out = self._name(kind.lower())
        self.nodes.append(helper.make_node(kind, inputs, [out], **attributes))
        return out

    def linear(self, x: str, key: str) -> str:
        product = self.op("MatMul", [x, self.weight(f"{key}.weight", transpose=True)])
        return self.op("Add", [product, self.weight(f"{key}.bias")])

    def norm(self, x: str, key: str, eps: float) -> str:
        scale, bias = self.weight(f"{key}.weight"), self.weight(f"{key}.bias")
        return self.op("LayerNormalization", [x, scale, bias], axis=-1, epsilon=eps)

    def embeddings(self, eps: float) -> str:
        """Word + position + token-type (all type 0) embeddings, normalised."""
        words = self.op("Gather", [self.weight("embeddings.word_embeddings.weight"), "input_ids"])
        length = self.op("Shape", ["input_ids"], start=1, end=2)  # [tokens]
        start = self.const("zero", np.array([0], np.int64))
        table = self.weight("embeddings.position_embeddings.weight")
        positions = self.op("Slice", [table, start, length, start])  # the first `tokens` rows
        placed = self.op("Add", [words, positions])
        types = self._weights[self._prefix + "embeddings.token_type_embeddings.weight"]
        typed = self.op("Add", [placed, self.const("token_type_0", types[0].astype(np.float32))])
        return self.norm(typed, "embeddings.LayerNorm", eps)

    def attention_bias(self) -> str:
        """0 where the mask is 1, the float minimum where it is 0; batch × 1 × 1 × tokens."""
        mask = self.op("Cast", ["attention_mask"], to=1)  # FLOAT
        inverted = self.op("Sub", [self.const("mask_one", np.array(1.0, np.float32)), mask])
        lowest = self.const("mask_min", np.array(np.finfo(np.float32).min, np.float32))
        bias = self.op("Mul", [inverted, lowest])
        return self.op("Unsqueeze", [bias, self.const("mask_axes", np.array([1, 2], np.int64))])

    def layer(self, index: int, x: str, mask: str, *, heads: int, hidden: int, eps: float) -> str:
        key = f"encoder.layer.{index}"
        size = hidden // heads
        split = self.const(f"split_{index}", np.array([0, 0, heads, size], np.int64))
        joined = self.const(f"join_{index}", np.array([0, 0, hidden], np.int64))

        def project(name: str, perm: list[int]) -> str:
            flat = self.linear(x, f"{key}.attention.self.{name}")
            return self.op("Transpose", [self.op("Reshape", [flat, split])], perm=perm)

        query = project("query", [0, 2, 1, 3])  # batch, heads, tokens, size
        keys = project("key", [0, 2, 3, 1])  # batch, heads, size, tokens
        values = project("value", [0, 2, 1, 3])
        scale = self.const(f"scale_{index}", np.array(1 / math.sqrt(size), np.float32))
        scores = self.op("Add", [self.op("Mul", [self.op("MatMul", [query, keys]), scale]), mask])
        context = self.op("MatMul", [self.op("Softmax", [scores], axis=-1), values])
        context = self.op("Reshape", [self.op("Transpose", [context], perm=[0, 2, 1, 3]), joined])
        attended = self.linear(context, f"{key}.attention.output.dense")
        x = self.norm(self.op("Add", [attended, x]), f"{key}.attention.output.LayerNorm", eps)
        inner = self.gelu(self.linear(x, f"{key}.intermediate.dense"))
        out = self.linear(inner, f"{key}.output.dense")
        return self.norm(self.op("Add", [out, x]), f"{key}.output.LayerNorm", eps)

    def gelu(self, x: str) -> str:
        """The exact GELU BERT uses: x · ½ · (1 + erf(x / √2))."""
        root = self.const(self._name("sqrt2"), np.array(math.sqrt(2.0), np.float32))
        erf = self.op("Erf", [self.op("Div", [x, root])])
        one = self.const(self._name("gelu_one"), np.array(1.0, np.float32))
        half = self.const(self._name("gelu_half"), np.array(0.5, np.float32))
        return self.op("Mul", [self.op("Mul", [x, self.op("Add", [erf, one])]), half])
