"""Fuzzing the constructors (issue #14, "Done means"): the backbone and the
classifier, segmenter and detector heads, one argument perturbed per
example, drawn from a pool of valid values (numpy scalars among them) and
one of invalid ones (NaN, Inf, bools, strings, floats for integers, absurd
sizes, unknown keywords). Every outcome must be a model that builds and
runs on a small image (valid values only), or a ValueError/TypeError whose
message names the perturbed argument (invalid values only).

The CI run keeps few examples on the Small backbone at 32-64 pixels;
`pytest -m heavy tests/test_fuzz.py -s` runs many more and prints the
counts (tried / built / clear error / crash / nonsense built / valid refused).
"""

from __future__ import annotations

import collections
import functools

import keras
import numpy as np
import pytest
from helpers import SMALL
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from mobilenetv3 import MobileNetV3Backbone
from mobilenetv3.tasks import MobileNetV3ImageClassifier, MobileNetV3ImageSegmenter
from mobilenetv3.tasks.detector import MobileNetV3ObjectDetector

NAN, INF = float("nan"), float("inf")
UNKNOWN = "<unknown keyword>"

# argument -> (valid values, invalid values); `stackwise_*[i]` perturbs entry i.
BACKBONE = {
    "include_rescaling": ([True, False, np.bool_(False)], ["no", 1, None]),
    "alpha": ([0.25, 0.5, np.float32(0.75), 1, np.float64(0.35)], [0, -1, NAN, INF, 1e3, "1", None, True]),
    "bn_epsilon": ([1e-5, 1e-3, np.float32(1e-3)], [0, NAN, INF, True, -1e-3, "0.001"]),
    "stackwise_filters[]": ([np.int64(24), 8, 32], [16.0, 0, -3, NAN, INF, 10**7, "16", None]),
    "stackwise_expansion[]": ([1, 2.5, np.float32(4.0)], [0, NAN, INF, 1e6, "3", None]),
    "stackwise_kernel_size[]": ([1, 3, 5, np.int64(7)], [0, 3.0, 100, NAN, "3"]),
    "stackwise_stride[]": ([1, 2, np.int64(2)], [0, 3, 1.5, NAN]),
    "stackwise_se_ratio[]": ([None, 0.25, np.float32(0.5), 1], [0, 1.5, NAN, "0.25", -0.1]),
    "stackwise_activation[]": (["relu", "hard_swish", "gelu"], ["swishy", None, 3]),
    "stackwise_filters": ([], [None, 5, "abc", [], {"a": 1}]),
    "stackwise_se_ratio": ([], [None, 0.25]),
    "input_shape": ([(32, 32, 3), (None, None, 3), (np.int64(40), 48, 1)],
                    [5, (16, 32, 3), (32, 32), (32, 32, 0), (30000, 30000, 3), "224", (32.0, 32, 3)]),
    "output_stride": ([8, 16, 32, np.int32(16)], [4, 16.0, "16", None]),
    "drop_path_rate": ([0, 0.1, np.float32(0.2)], [1, -0.1, NAN, "0.1"]),
    "stem_filters": ([8, np.int64(16)], [0, 16.0, 10**6]),
    "depth_multiplier": ([1.0, 0.5, 1.2], [0, NAN, 1e3]),
    "preprocessing": (["unit", "symmetric", "imagenet"], ["caffe", None]),
    "padding": (["same", "symmetric"], ["valid", 1]),
    "reduced_tail": ([True, False], ["yes", None]),
    "dilation_style": (["torchvision", "deeplab"], ["tf"]),
    UNKNOWN: ([], ["include_rescalling", "bogus_argument", "dropuot"]),
}
CLASSIFIER = {
    "num_classes": ([1, 5, np.int64(3)], [0, 3.0, -1, None, "3", 10**7]),
    "dropout": ([0, 0.5, np.float32(0.2)], [1, NAN, -0.1, "0.2"]),
    "head": (["paper", "dense"], ["linear", None]),
    "head_filters": ([None, 16, np.int32(32)], [0, 10**6, 16.5]),
    "pooling": (["avg", "max"], ["mean"]),
    "activation": ([None, "softmax"], ["softmaxx", 3]),
    "head_activation": (["relu", "hard_swish"], ["swishy", None]),
    UNKNOWN: ([], ["dropuot", "include_rescaling"]),
}
SEGMENTER = {
    "num_classes": ([1, 4, np.int64(2)], [0, 2.0, None, 10**7]),
    "inter_channels": ([8, np.int64(16)], [0, 8.0, 10**6]),
    "bn_epsilon": ([1e-5, np.float32(1e-3)], [0, NAN, INF]),
    "low_level": ([None, "P2", "block_0"], ["P9", 3]),
    "high_level": (["last", "P4"], ["nope", None]),
    "activation": ([None, "softmax"], ["softmaxx"]),
    UNKNOWN: ([], ["low_levle"]),
}
DETECTOR = {
    "num_classes": ([2, np.int64(4)], [0, 2.5, None]),
    "bounding_box_format": (["xyxy", "rel_yxyx", "center_xywh"], ["xyz", None]),
    "image_size": ([64, (64, 96), np.int64(64), [np.int32(64), 64]], [16, 64.0, (64,), "64", 10**5, None]),
    "score_threshold": ([0.001, np.float32(0.5), 0], [NAN, 2, -1, "0.5"]),
    "iou_threshold": ([0.55, 1], [NAN, 1.5]),
    "max_detections": ([10, np.int64(5)], [0, 10.5]),
    "topk_candidates": ([20, np.int64(30)], [0, NAN]),
    "negative_ratio": ([3, 0, np.float32(1.5)], [-1, NAN, INF]),
    "classification_loss": (["focal", "cross_entropy"], ["hinge"]),
    UNKNOWN: ([], ["num_class", "bogus"]),
}


def _draws(table):
    """(argument, value, valid) triples."""
    return st.sampled_from(
        [(arg, v, True) for arg, (good, _) in table.items() for v in good]
        + [(arg, v, False) for arg, (_, bad) in table.items() for v in bad]
    )


def _backbone_kwargs(argument, value, index):
    kwargs = {**SMALL, "input_shape": (32, 32, 3)}
    if argument == UNKNOWN:
        return {**kwargs, value: False}, value
    if argument.endswith("[]"):
        column = argument[:-2]
        kwargs[column] = list(kwargs[column])
        kwargs[column][index] = value
        return kwargs, f"{column}[{index}]"
    return {**kwargs, argument: value}, argument


@functools.cache
def _shared_backbone():
    return MobileNetV3Backbone(**{**SMALL, "include_rescaling": True, "input_shape": (None, None, 3)})


def _run(model, shape):
    outputs = model(np.full((1, *shape), 100.0, "float32"), training=False)
    return all(np.all(np.isfinite(keras.ops.convert_to_numpy(o))) for o in keras.tree.flatten(outputs))


def _classify(build, named, valid, shape):
    """One of: built, clear error, crash, nonsense built, valid refused."""
    try:
        model = build()
    except (ValueError, TypeError) as error:
        if valid:
            return "valid refused", f"{named}: {error}"
        return ("clear error", None) if f"`{named.split('[')[0]}" in str(error) else ("crash", f"{named}: {error}")
    except Exception as error:  # noqa: BLE001 - what the fuzzer is here to find
        return "crash", f"{named}: {type(error).__name__}: {error}"
    if not valid:
        return "nonsense built", f"{named}"
    if not _run(model, shape):
        return "crash", f"{named}: non-finite output"
    return "built", None


def _backbone_outcome(draw, index):
    argument, value, valid = draw
    kwargs, named = _backbone_kwargs(argument, value, index)
    shape = tuple(s or 32 for s in kwargs["input_shape"]) if valid and argument == "input_shape" else (32, 32, 3)
    return _classify(lambda: MobileNetV3Backbone(**kwargs), named, valid, shape)


def _head_outcome(task, draw, required):
    argument, value, valid = draw
    kwargs = dict(required)
    named = value if argument == UNKNOWN else argument
    kwargs[named] = False if argument == UNKNOWN else value
    shape = (48, 64, 3)
    return _classify(lambda: task(_shared_backbone(), **kwargs), named, valid, shape)


TASKS = (
    (MobileNetV3ImageClassifier, CLASSIFIER, {"num_classes": 3}),
    (MobileNetV3ImageSegmenter, SEGMENTER, {"num_classes": 3}),
    (MobileNetV3ObjectDetector, DETECTOR, {"num_classes": 3, "image_size": 64}),
)


def _check(outcome):
    kind, detail = outcome
    assert kind in ("built", "clear error"), f"{kind}: {detail}"


_FAST = settings(max_examples=12, deadline=None, derandomize=True,
                 suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large])


@pytest.mark.core
@_FAST
@given(draw=_draws(BACKBONE), index=st.integers(0, len(SMALL["stackwise_filters"]) - 1))
def test_backbone_constructor_fuzz(draw, index):
    _check(_backbone_outcome(draw, index))


@pytest.mark.slow
@pytest.mark.parametrize("task, table, required", TASKS, ids=lambda t: getattr(t, "__name__", ""))
def test_head_constructor_fuzz(task, table, required):
    @_FAST
    @given(draw=_draws(table))
    def fuzz(draw):
        _check(_head_outcome(task, draw, required))

    fuzz()


@pytest.mark.heavy
def test_fuzz_counts():
    """Every value of every pool once (not sampled), with the counts."""
    counts, problems = collections.Counter(), []
    for draws, outcome in (
        *(((a, v, ok), functools.partial(_backbone_outcome, index=i))
          for a, (good, bad) in BACKBONE.items() for ok, pool in ((True, good), (False, bad)) for v in pool
          for i in ((0, 4, 10) if a.endswith("[]") else (0,))),
        *(((a, v, ok), functools.partial(_head_outcome, task, required=req))
          for task, table, req in TASKS for a, (good, bad) in table.items()
          for ok, pool in ((True, good), (False, bad)) for v in pool),
    ):
        kind, detail = outcome(draws)
        counts["tried"] += 1
        counts[kind] += 1
        if detail:
            problems.append(f"{kind}: {detail}")
    print(dict(counts))
    print("\n".join(problems))
    assert counts["tried"] == counts["built"] + counts["clear error"], problems
