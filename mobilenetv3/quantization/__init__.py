"""Quantization-aware training: a model's int8-simulating twin
(`quantize_aware`), its range calibration, and its layers.

Layer of the package: above `tasks` and `keras_hub` (it transforms built
task models), below `training` and `export` (which train and export twins).
"""

from mobilenetv3.quantization.layers import (
    FakeQuant,
    QuantConv,
    QuantHardSigmoid,
    QuantHardSwish,
    QuantSqueezeExcite,
    fake_quantize,
    fake_quantize_weights,
    quantization_grid,
)
from mobilenetv3.quantization.twin import (
    DEFAULT_FLOAT_OPS,
    HARD_SWISH_FORMS,
    QATModel,
    calibrate_ranges,
    fake_quant_layers,
    quantize_aware,
)

__all__ = [
    "DEFAULT_FLOAT_OPS",
    "FakeQuant",
    "HARD_SWISH_FORMS",
    "QATModel",
    "QuantConv",
    "QuantHardSigmoid",
    "QuantHardSwish",
    "QuantSqueezeExcite",
    "calibrate_ranges",
    "fake_quant_layers",
    "fake_quantize",
    "fake_quantize_weights",
    "quantization_grid",
    "quantize_aware",
]
