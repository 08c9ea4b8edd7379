"""The roofline model of the benchmark harness (benchmarks/roofline.py; conftest puts that folder on
sys.path): MAC counts against the published figures, the bound's arithmetic."""

from __future__ import annotations

import math

import keras
import pytest
import roofline

import mobilenetv3


@pytest.mark.core
@pytest.mark.parametrize("backbone, macs", [(mobilenetv3.MobileNetV3LargeBackbone, 217e6),
                                            (mobilenetv3.MobileNetV3SmallBackbone, 56.5e6)])
def test_macs_at_224_match_the_published_counts(backbone, macs):
    model = mobilenetv3.MobileNetV3ImageClassifier(backbone(input_shape=(224, 224, 3)), num_classes=1000)
    costs = roofline.layer_costs(model)
    assert roofline.total_macs(costs) == pytest.approx(macs, rel=0.003)  # facts sheet: 217M, 56.5M
    kinds = {c.name: c.kind for c in costs}
    assert kinds["Conv"] == "gemm" and kinds["expanded_conv_depthwise"] == "vector"
    assert not any(isinstance(layer, keras.layers.BatchNormalization) and layer.name in kinds
                   for layer in model.backbone.layers)  # BatchNorm is folded: no cost
    flops = sum(c.flops for c in costs)
    assert 2 * macs < flops < 2.2 * macs  # activations, adds, pooling on top of 2 FLOPs per MAC


@pytest.mark.core
def test_lower_bound_takes_the_slower_of_compute_and_memory_per_layer():
    costs = [roofline.LayerCost("conv", "gemm", flops=100.0, weight_bytes=64.0, activation_bytes=8.0),
             roofline.LayerCost("dw", "vector", flops=10.0, weight_bytes=0.0, activation_bytes=40.0)]
    rates = roofline.MachineRates(gemm_flops=10.0, bandwidth=4.0)
    # conv: compute 10 s vs memory (8 + 64) / 4 = 18 s at batch 1, (8 + 2) / 4 = 2.5 s at batch 32
    # dw: compute 1 s (every kind at the sgemm rate) vs memory 10 s
    assert roofline.lower_bound_seconds(costs, rates, batch=1) == pytest.approx(28.0)
    assert roofline.lower_bound_seconds(costs, rates, batch=32) == pytest.approx(20.0)
    assert roofline.breakdown(costs, rates, batch=32) == pytest.approx({"gemm": 10.0, "vector": 0.0, "memory": 10.0})
    assert roofline.roofline_fraction(0.025, 20.0) == pytest.approx(0.5)
    with pytest.raises(ValueError, match="`batch`"):
        roofline.lower_bound_seconds(costs, rates, batch=0)


@pytest.mark.core
def test_machine_rates_are_finite_and_the_bound_is_positive():
    rates = roofline.measure_machine(seconds=0.02)
    assert all(math.isfinite(v) and v > 1e6 for v in (rates.gemm_flops, rates.bandwidth, rates.dram_bandwidth))
    model = mobilenetv3.MobileNetV3SmallBackbone(input_shape=(96, 96, 3))
    assert 0 < roofline.model_lower_bound(model, rates, batch=32) < roofline.model_lower_bound(model, rates)


@pytest.mark.core
def test_dynamic_input_and_bad_element_size_are_refused():
    with pytest.raises(ValueError, match="fixed input size"):
        roofline.layer_costs(mobilenetv3.MobileNetV3SmallBackbone())
    with pytest.raises(ValueError, match="`element_bytes`"):
        roofline.layer_costs(mobilenetv3.MobileNetV3SmallBackbone(input_shape=(96, 96, 3)), element_bytes=3)
