"""The genre network evaluated with plain numpy: input normalization, dense layers, softmax.

The normalization's mean and variance are learned from the training data.
Evaluating the network needs no TensorFlow; the numpy forward pass agrees
with Keras's to float32 precision.  A network is described by a list of
layers (``{"type": "normalization"}`` or ``{"type": "dense", "units": ...,
"activation": ...}``) and its arrays, named ``"<layer index>.<array>"``.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Mapping, Sequence

import numpy as np

from .errors import ModelError
from .textsafe import one_line

__all__ = ["ACTIVATIONS", "LAYER_ARRAYS", "DenseNetwork", "array_keys", "check_network_shapes", "network_from_layers"]

_EPSILON = 1e-7  # keras.backend.epsilon(), used by keras.layers.Normalization
#: The activations a dense layer may have.
ACTIVATIONS = ("linear", "relu", "softmax")


def _softmax(x: np.ndarray) -> np.ndarray:
    z = x - x.max(axis=-1, keepdims=True)
    e = np.exp(z)
    return e / e.sum(axis=-1, keepdims=True)


#: The arrays each kind of layer has.
LAYER_ARRAYS = {"normalization": ("mean", "variance"), "dense": ("kernel", "bias")}


def check_network_shapes(layers: Sequence[dict], shapes: Mapping[str, tuple[int, ...]], *,
                         n_inputs: int | None = None, n_outputs: int | None = None) -> None:
    """Check that arrays of these ``shapes`` make a network of ``layers`` (``n_inputs`` to ``n_outputs`` when given).

    Works on shapes alone, so that an archive's arrays can be checked from
    their headers before their data is read.  Raises :class:`ModelError`.
    """
    width = n_inputs  # the size of the vectors flowing into the current layer, once known
    for i, layer in enumerate(layers):
        if layer["type"] == "normalization":
            mean, var = shapes[f"{i}.mean"], shapes[f"{i}.variance"]
            size = math.prod(mean)
            if len(mean) > 2 or len(var) > 2 or size != math.prod(var) or width not in (None, size):
                raise ModelError(f"layer {i}: normalization arrays of shapes {mean} and {var} do not fit the network")
            width = size
        else:
            kernel, bias = shapes[f"{i}.kernel"], shapes[f"{i}.bias"]
            if (len(kernel) != 2 or len(bias) > 2 or math.prod(bias) != kernel[1] or width not in (None, kernel[0])
                    or layer.get("units", kernel[1]) != kernel[1]):
                raise ModelError(f"layer {i}: dense arrays of shapes {kernel} and {bias} do not fit the network")
            width = kernel[1]
    if n_outputs is not None and width != n_outputs:
        raise ModelError(f"the network has {width} outputs but the metadata lists {n_outputs} labels")


@dataclass
class DenseNetwork:
    """Normalization, dense layers and softmax, evaluated with numpy (float32).

    ``layers`` is a list of ``{"type": ..., ...}`` dicts; ``arrays`` holds
    each layer's arrays under ``"<index>.<name>"``.
    """

    layers: list[dict]
    arrays: dict[str, np.ndarray]

    def __post_init__(self) -> None:
        for i, layer in enumerate(self.layers):
            if not isinstance(layer, dict):
                raise ModelError(f"layer {i}: not a layer description ({type(layer).__name__})")
            kind = layer.get("type")
            if not isinstance(kind, str) or kind not in LAYER_ARRAYS:
                raise ModelError(f"layer {i}: unknown layer type {one_line(kind)[:40]!r}")
            if kind == "dense" and layer.get("activation", "linear") not in ACTIVATIONS:
                raise ModelError(f"layer {i}: unsupported activation {one_line(layer.get('activation'))[:40]!r}")
            for name in LAYER_ARRAYS[kind]:
                if f"{i}.{name}" not in self.arrays:
                    raise ModelError(f"layer {i}: array '{name}' is missing")
        check_network_shapes(self.layers, {k: np.shape(v) for k, v in self.arrays.items()})
        for i, layer in enumerate(self.layers):
            for name in LAYER_ARRAYS[layer["type"]]:
                if not np.isfinite(self.arrays[f"{i}.{name}"]).all():
                    raise ModelError(f"layer {i}: array '{name}' holds NaN or infinite values")
            if layer["type"] == "normalization" and (self.arrays[f"{i}.variance"] < 0).any():
                raise ModelError(f"layer {i}: normalization variance is negative")

    @property
    def n_inputs(self) -> int:
        """Length of the feature vectors the network takes."""
        if self.layers[0]["type"] == "normalization":
            return int(self.arrays["0.mean"].size)
        return int(self.arrays["0.kernel"].shape[0])

    def predict_proba(self, x: np.ndarray) -> np.ndarray:
        """Class probabilities for ``x`` of shape ``(n, n_inputs)``."""
        return self._forward(x, softmax=True)

    def _forward(self, x: np.ndarray, *, softmax: bool) -> np.ndarray:
        with np.errstate(all="ignore"):  # an overflow shows as a non-finite output; the caller refuses it
            return self._layers(x, softmax=softmax)

    def _layers(self, x: np.ndarray, *, softmax: bool) -> np.ndarray:
        h = np.asarray(x, dtype=np.float32)
        if h.ndim == 1:
            h = h[None, :]
        for i, layer in enumerate(self.layers):
            if layer["type"] == "normalization":
                mean = self.arrays[f"{i}.mean"].reshape(1, -1)
                std = np.maximum(np.sqrt(self.arrays[f"{i}.variance"].reshape(1, -1)), np.float32(_EPSILON))
                h = (h - mean) / std
            else:
                h = h @ self.arrays[f"{i}.kernel"] + self.arrays[f"{i}.bias"]
                act = layer.get("activation", "linear")
                if act == "relu":
                    h = np.maximum(h, 0)
                elif act == "softmax" and (softmax or i < len(self.layers) - 1):
                    h = _softmax(h)
        return h.astype(np.float32)


def network_from_layers(layers: Sequence[dict], arrays: Mapping[str, np.ndarray]) -> DenseNetwork:
    """Build a :class:`DenseNetwork`, converting arrays to float32."""
    return DenseNetwork(layers=list(layers), arrays={k: np.asarray(v, dtype=np.float32) for k, v in arrays.items()})


def array_keys(layers: Sequence[dict]) -> list[str]:
    """The names of the arrays a network of ``layers`` needs, in layer order."""
    return [f"{i}.{name}" for i, layer in enumerate(layers) for name in LAYER_ARRAYS[layer["type"]]]
