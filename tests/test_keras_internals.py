"""The private Keras API the package uses is all in `core.keras_internals`,
and the installed Keras still has each piece (checked on `CHECKED_ON`)."""

from __future__ import annotations

import ast
from pathlib import Path

import keras
import numpy as np
import pytest

import mobilenetv3
from mobilenetv3.core import keras_internals as internals

PACKAGE = Path(mobilenetv3.__file__).parent


@pytest.mark.core
def test_no_module_but_keras_internals_imports_keras_src():
    offenders = []
    for path in PACKAGE.rglob("*.py"):
        if path.name == "keras_internals.py":
            continue
        for node in ast.walk(ast.parse(path.read_text())):
            names = [alias.name for alias in node.names] if isinstance(node, ast.Import) else []
            if isinstance(node, ast.ImportFrom):
                names = [node.module or ""]
            offenders += [f"{path.relative_to(PACKAGE)}: {name}" for name in names if name.startswith("keras.src")]
    assert offenders == []


@pytest.mark.core
def test_every_internal_works_on_the_installed_keras():
    print(f"keras {keras.__version__}; checked on {internals.CHECKED_ON}")
    inputs = keras.Input((4, 4, 3), name="image")
    conv = keras.layers.Conv2D(2, 1, name="conv")
    x = keras.layers.BatchNormalization(name="norm")(conv(inputs))
    model = keras.Model(inputs, {"out": x})
    assert internals.is_functional(model) and not internals.is_functional(conv)
    names = [node.operation.name for node in internals.graph_nodes(model) if not node.is_input]
    assert names == ["conv", "norm"]
    assert set(internals.outputs_structure(model)) == {"out"}
    assert internals.producer_name(x) == "norm"
    assert internals.inbound_node_count(conv) == 1
    assert [layer.name for layer in internals.all_layers(model)] == ["image", "conv", "norm"]
    assert internals.call_has_training_arg(model.get_layer("norm"))
    assert internals.is_functional_call(type(model).call)
    images = np.ones((1, 4, 4, 3), "float32")
    direct = internals.run_graph(model, images, lambda operation: operation)
    assert np.allclose(keras.ops.convert_to_numpy(direct["out"]), keras.ops.convert_to_numpy(model(images)["out"]))
    assert np.allclose(keras.ops.convert_to_numpy(internals.raw_value(conv.kernel)), conv.get_weights()[0])
    assert internals.raw_values([conv.kernel])[0] is internals.raw_value(conv.kernel)
    assert not internals.in_stateless_scope() and internals.autocast_scope() is None
    assert internals.current_call_context() is None
    internals.assert_input_compatibility(model, images)
    with pytest.raises(ValueError):
        internals.assert_input_compatibility(model, np.ones((1, 4, 4, 5), "float32"))
    assert internals.compute_fans((3, 3, 8, 16)) == (72, 144)
    resized = internals.resize_images(np.ones((1, 2, 3, 1), "float32"), (4, 6), interpolation="bilinear", antialias=False)
    np.testing.assert_allclose(keras.ops.convert_to_numpy(resized), np.ones((1, 4, 6, 1)))


@pytest.mark.core
def test_weights_h5_bytes_load_like_save_weights(tmp_path):
    # Built in memory (HDF5 never writes to a disk that can fill mid-file);
    # Keras' own `load_weights` reads the bytes back exactly.
    model = keras.Sequential([keras.Input((3,)), keras.layers.Dense(2, name="dense")])
    file = tmp_path / "model.weights.h5"
    file.write_bytes(internals.weights_h5_bytes(model))
    other = keras.Sequential([keras.Input((3,)), keras.layers.Dense(2, name="dense")])
    other.load_weights(str(file))
    for a, b in zip(model.get_weights(), other.get_weights(), strict=True):
        np.testing.assert_array_equal(a, b)
