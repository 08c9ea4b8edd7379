"""ExecuTorch export: a `.pte` program delegated to XNNPACK, fp32 or int8.

The Keras model runs on the PyTorch backend, `torch.export` traces what its
`call` computes (Keras' layers; BatchNorm is fused into the convolutions by
XNNPACK's lowering, and by the quantizer for int8), and ExecuTorch lowers
the traced program with `to_edge_transform_and_lower` and the
`XnnpackPartitioner`. int8 is ExecuTorch's XNNPACK post-training
quantization (pt2e: `prepare_pt2e` / `convert_pt2e` with the
`XNNPACKQuantizer`, symmetric int8, weights per channel), calibrated on
images.

The export needs Keras on the PyTorch backend. On another backend (the
command line's default is TensorFlow) `export_executorch` saves the model as
a `.keras` file in a scratch folder and repeats the export in a child Python
process with `KERAS_BACKEND=torch` (a Keras process cannot switch backends);
the child's own start (PyTorch, Keras, ExecuTorch imports) adds about 10 s.

Layout: Keras traces NHWC and the PyTorch backend runs each convolution
NCHW, so the traced graph transposes around every layer; `_tidy_layout`
moves those transposes through elementwise operations until pairs cancel
(ExecuTorch's own permute passes work on its edge dialect only, after the
point where pt2e quantization needs the graph), and rewrites NHWC global
means into the NCHW ones XNNPACK takes, so the whole network is one XNNPACK
delegate with transposes left at its input and outputs only.
"""

from __future__ import annotations

import contextlib
import os
import sys
from collections.abc import Callable, Iterator, Sequence
from pathlib import Path
from typing import Any

import numpy as np

from mobilenetv3.core.utils import atomic_path, import_optional
from mobilenetv3.export.calibration import check_calibration

EXTRA = "executorch"
XNNPACK = "XnnpackBackend"
# The numpy file the parent process hands calibration images to the child in.
_CALIBRATION_FILE = "calibration.npy"


def export_executorch(
    model: Any,
    path: str | os.PathLike,
    *,
    input_size: int | tuple[int, int] | None = None,
    channels_first: bool = False,
    int8: bool = False,
    calibration: Any = None,
    batch_size: int = 1,
) -> Path:
    """Write a Keras model (backbone, classifier, segmenter, detector) as an
    ExecuTorch program (`.pte`) delegated to XNNPACK.

    The program has one method, `forward`, taking float32 images of a fixed
    shape, `(batch_size, height, width, 3)` (or `(batch_size, 3, height,
    width)` with `channels_first=True`), raw 0..255 pixels like the Keras
    model (its rescaling is inside), and returning the model's outputs: a
    classifier's logits, a segmenter's per-pixel logits (NCHW with
    `channels_first`), a detector's raw `(bbox_regression, cls_logits)`
    (decode them with `decode_raw_outputs` and the default boxes
    `export_model` writes beside the file). Outputs are within 1e-4 of Keras
    in float32; int8 (XNNPACK's quantizer: symmetric int8 activations, int8
    weights per channel) is about 1e-1 in logits.

    Runs on any Keras backend: off PyTorch the export is done by a child
    process on the PyTorch backend (about 10 s more).

    Args:
        model: a functional Keras model with one image input.
        path: the `.pte` file to write (atomically).
        input_size: the image size `N` or `(height, width)` the program
            takes; default the model's fixed size, else the image size its
            preset records.
        channels_first: take NCHW input (what PyTorch users feed).
        int8: quantize with XNNPACK's int8 quantizer.
        calibration: with `int8`: float32 images `(N, height, width, 3)` in
            the model's input range (raw 0..255 for presets), e.g. from
            `mobilenetv3.export.load_images`; 100-300 typical images.
        batch_size: the program's batch size (ExecuTorch programs have
            fixed shapes; `open_executorch` runs larger batches in chunks).

    Returns:
        The path written.

    Example:

    ```python
    # not run: needs `pip install "mobilenetv3[executorch]"`
    import numpy as np
    from mobilenetv3.export.executorch_export import export_executorch, open_executorch
    model = mobilenetv3.MobileNetV3ImageClassifier.from_preset("mobilenet_v3_small_imagenet")
    export_executorch(model, "small.pte")
    run = open_executorch("small.pte")
    logits = run(np.random.uniform(0, 255, (1, 224, 224, 3)).astype("float32"))  # (1, 1000)
    ```
    """
    import keras

    target = Path(path)
    if target.suffix != ".pte":
        raise ValueError(f"`path` must end in .pte; got {str(target)!r}.")
    size = _input_size(model, input_size)
    if not isinstance(batch_size, int) or batch_size < 1:
        raise ValueError(f"`batch_size` must be a positive integer; got {batch_size!r}.")
    images = check_calibration(calibration, size) if int8 else None
    import_optional("executorch", EXTRA, "Exporting to ExecuTorch")
    import_optional("torch", EXTRA, "Exporting to ExecuTorch")
    options = {"input_size": list(size), "channels_first": bool(channels_first), "int8": bool(int8),
               "batch_size": batch_size}
    with atomic_path(target) as staging:
        if keras.config.backend() == "torch":
            with _torch_beside_tensorflow():
                staging.write_bytes(_program_bytes(model, images, **options))
        else:
            _export_in_torch_process(model, staging, images, options)
    return target


def _input_size(model: Any, input_size: int | Sequence[int] | None) -> tuple[int, int]:
    if len(getattr(model, "inputs", None) or ()) != 1 or len(model.inputs[0].shape) != 4:
        raise ValueError("`model` must be a functional Keras model with one image input (batch, height, width, 3); "
                         f"got {type(model).__name__}.")
    height, width = model.inputs[0].shape[1:3]
    fixed = (int(height), int(width)) if height is not None and width is not None else None
    if input_size is None:
        if fixed is not None:
            return fixed
        from mobilenetv3.presets.preprocessing import preprocessing_for_model

        size = preprocessing_for_model(model).image_size
        return size, size
    size = (input_size, input_size) if isinstance(input_size, int) else tuple(input_size)
    if len(size) != 2 or not all(isinstance(s, int) and s >= 32 for s in size):
        raise ValueError(f"`input_size` must be an integer >= 32 or a (height, width) pair of them; got {input_size!r}.")
    if fixed is not None and size != fixed:
        raise ValueError(f"`input_size` {size} differs from the model's fixed input size {fixed}; "
                         "build the model with `input_shape=(None, None, 3)` to export it at another size.")
    return int(size[0]), int(size[1])


def _export_in_torch_process(model: Any, staging: Path, images: np.ndarray | None, options: dict) -> None:
    """The export, by a child process on the PyTorch backend (see the module docstring)."""
    from mobilenetv3.export.backend_process import export_in_backend

    export_in_backend(__name__, "torch", model, staging, options, "The ExecuTorch export",
                      {_CALIBRATION_FILE: images} if images is not None else None)


def _main(argv: Sequence[str]) -> None:
    """The child process: `python -m mobilenetv3.export.executorch_export MODEL.keras OUT.pte OPTIONS_JSON`."""
    from mobilenetv3.export.backend_process import load_child_arguments

    model, out, options, folder = load_child_arguments(list(argv), "torch")
    calibration = folder / _CALIBRATION_FILE
    images = np.load(calibration) if calibration.is_file() else None
    out.write_bytes(_program_bytes(model, images, **options))


@contextlib.contextmanager
def _torch_beside_tensorflow() -> Iterator[None]:
    """Import ExecuTorch (and through it `torch._dynamo`) in a process that has loaded TensorFlow.

    `torch._dynamo` imports Triton when it is installed (it comes with the
    PyTorch wheels), and importing Triton's native library after
    TensorFlow's crashes the process (a segmentation fault in
    `triton/knobs.py`: TensorFlow 2.21, Triton 3.8.0, torch 2.14.1; Triton
    first, then TensorFlow, works). Inference on the CPU needs no Triton, so
    while TensorFlow is loaded and Triton is not, Triton is hidden for the
    import: PyTorch records it as absent (`torch.utils._triton`).
    """
    hide = "tensorflow" in sys.modules and "triton" not in sys.modules
    if hide:
        sys.modules["triton"] = None  # type: ignore[assignment]  (`import triton` raises ImportError)
    try:
        yield
    finally:
        if hide and sys.modules.get("triton", 0) is None:
            del sys.modules["triton"]


# -- tracing and lowering (PyTorch backend) --------------------------------------------


def _program_bytes(model: Any, images: np.ndarray | None, *, input_size: Sequence[int], channels_first: bool,
                   int8: bool, batch_size: int) -> bytes:
    """The `.pte` bytes of `model` (Keras on the PyTorch backend)."""
    import torch
    from executorch.backends.xnnpack.partition.xnnpack_partitioner import XnnpackPartitioner
    from executorch.exir import to_edge_transform_and_lower

    module = _TorchModel(model, channels_first)
    height, width = input_size
    shape = (batch_size, 3, height, width) if channels_first else (batch_size, height, width, 3)
    example = (torch.zeros(shape, dtype=torch.float32),)
    graph = _trace(module, example)
    if int8:
        graph = _quantize(graph, example, images, channels_first)
    program = torch.export.export(graph, example, strict=False)
    lowered = to_edge_transform_and_lower(program, partitioner=[XnnpackPartitioner()])
    return lowered.to_executorch().buffer


def _TorchModel(model: Any, channels_first: bool) -> Any:  # noqa: N802  (a class factory)
    """`model` as a `torch.nn.Module` of images -> a tuple of outputs (a dict's in its order).

    Not `fold_batch_norm`ed: it cannot rebuild the segmenter (`ResizeLike`
    has no config), and XNNPACK fuses BatchNorm into the convolutions anyway."""
    import torch

    names = list(model.output) if isinstance(model.output, dict) else None

    class TorchModel(torch.nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.model = model

        def forward(self, images: torch.Tensor) -> Any:
            if channels_first:
                images = images.permute(0, 2, 3, 1)
            outputs = self.model(images, training=False)
            if names is not None:
                return tuple(outputs[name] for name in names)
            outputs = tuple(outputs) if isinstance(outputs, (list, tuple)) else (outputs,)
            if channels_first:
                outputs = tuple(x.permute(0, 3, 1, 2) if x.ndim == 4 else x for x in outputs)
            return outputs

    return TorchModel().eval()


def _trace(module: Any, example: tuple) -> Any:
    """`torch.export` of `module` as an ATen `GraphModule`, its layout tidied."""
    import torch
    from torchao.quantization.pt2e.constant_fold import constant_fold

    graph = torch.export.export(module, example, strict=False).module()
    _tidy_layout(graph)
    # The kernels' layout changes (HWIO -> OIHW) become constants: the quantizer then sees
    # plain weights, which it stores in int8, and the lowering has fewer nodes to go through.
    constant_fold(graph)
    for node in graph.graph.find_nodes(op="get_attr"):  # convert_pt2e folds into `_frozen_param<i>` names too
        if node.target.startswith("_frozen_param"):
            name, value = f"folded{node.target}", getattr(graph, node.target)
            delattr(graph, node.target)
            # a parameter: the quantizer's conv-BatchNorm fusion rewrites conv weights as parameters
            graph.register_parameter(name, torch.nn.Parameter(value, requires_grad=False))
            node.target = name
    graph.recompile()
    return graph


def _quantize(graph: Any, example: tuple, images: np.ndarray | None, channels_first: bool) -> Any:
    """XNNPACK's int8 post-training quantization of `graph`, calibrated on `images` (NHWC)."""
    import torch
    from executorch.backends.xnnpack.quantizer.xnnpack_quantizer import (
        XNNPACKQuantizer,
        get_symmetric_quantization_config,
    )
    from torchao.quantization.pt2e.quantize_pt2e import convert_pt2e, prepare_pt2e

    if images is None:
        raise ValueError("int8 needs `calibration` images.")
    quantizer = XNNPACKQuantizer().set_global(get_symmetric_quantization_config(is_per_channel=True))
    prepared = prepare_pt2e(graph, quantizer)
    batch = example[0].shape[0]
    with torch.no_grad():
        for start in range(0, len(images), batch):
            chunk = images[start:start + batch]
            if len(chunk) < batch:  # the traced graph has a fixed batch: pad the last chunk by repeating
                chunk = np.concatenate([chunk, images[:batch - len(chunk)]])
            tensor = torch.from_numpy(np.ascontiguousarray(chunk))
            prepared(tensor.permute(0, 3, 1, 2).contiguous() if channels_first else tensor)
    return convert_pt2e(prepared)


# -- layout tidying (ATen graph) ---------------------------------------------------------


def _tidy_layout(graph: Any) -> None:
    """Remove the NHWC <-> NCHW transposes of a traced Keras graph where they cancel.

    In place, on an ATen `GraphModule` (what `ExportedProgram.module()`
    gives): drops dtype conversions that convert nothing and metadata
    asserts, rewrites NHWC global means as NCHW ones between transposes,
    turns dense layers' `addmm` into `linear`, moves transposes below elementwise operations (through both operands of
    a binary one when the other is transposed alike, or is a size-1-spatial
    gate that a reshape lays out the same way), and fuses transposes that
    follow each other (cancelling to nothing where they compose to the
    identity). Repeats until nothing changes; what the graph computes is
    unchanged.
    """
    changed = True
    while changed:
        changed = False
        for node in list(graph.graph.nodes):
            if node.op != "call_function" or node.graph is None:
                continue
            for rewrite in (_drop_noop, _addmm_to_linear, _mean_to_nchw, _sink_permute, _fuse_permutes):
                if rewrite(graph.graph, node):
                    changed = True
                    break
        graph.graph.eliminate_dead_code()
    graph.graph.lint()
    graph.recompile()


def _aten() -> Any:
    import torch

    return torch.ops.aten


def _val(node: Any) -> Any:
    return node.meta.get("val") if hasattr(node, "meta") else None


def _drop_noop(graph: Any, node: Any) -> bool:
    aten = _aten()
    if node.target is aten._assert_tensor_metadata.default:
        graph.erase_node(node)
        return True
    if node.target in (aten.to.dtype, aten.to.dtype_layout, aten.to.device, aten.contiguous.default,
                       aten.alias.default, aten.clone.default, aten.lift_fresh_copy.default):
        source, value = node.args[0], _val(node)
        before = _val(source)
        if (before is not None and value is not None and before.dtype == value.dtype
                and before.device == value.device and tuple(before.shape) == tuple(value.shape)):
            node.replace_all_uses_with(source)
            graph.erase_node(node)
            return True
    return False


def _addmm_to_linear(graph: Any, node: Any) -> bool:
    """`addmm(bias, x, w)` -> `linear(x, w.T, bias)`: the form the int8 quantizer takes for dense layers."""
    aten = _aten()
    if node.target is not aten.addmm.default or node.kwargs.get("beta", 1) != 1 or node.kwargs.get("alpha", 1) != 1:
        return False
    bias, inputs, weight = node.args[:3]
    value = _val(weight)
    if value is None or value.ndim != 2 or _val(bias) is None or _val(bias).ndim != 1:
        return False
    transposed = _new(graph, node, aten.permute.default, (weight, [1, 0]), value.permute(1, 0))
    linear = _new(graph, node, aten.linear.default, (inputs, transposed, bias), _val(node))
    node.replace_all_uses_with(linear)
    graph.erase_node(node)
    return True


_TO_NCHW = [0, 3, 1, 2]
_TO_NHWC = [0, 2, 3, 1]


def _new(graph: Any, before: Any, target: Any, args: tuple, value: Any) -> Any:
    with graph.inserting_before(before):
        node = graph.call_function(target, args)
    node.meta["val"] = value
    return node


def _mean_to_nchw(graph: Any, node: Any) -> bool:
    """`mean(x, [1, 2])` of NHWC `x` -> `permute(mean(permute(x, NCHW), [2, 3], keepdim=True), NHWC)`."""
    aten = _aten()
    if node.target is not aten.mean.dim or node.kwargs.get("dtype") is not None:
        return False
    source = node.args[0]
    value = _val(source)
    if value is None or value.ndim != 4:
        return False
    dims = sorted(d % 4 for d in node.args[1])
    keepdim = bool(node.args[2]) if len(node.args) > 2 else bool(node.kwargs.get("keepdim", False))
    if dims != [1, 2]:
        return False
    nchw = _new(graph, node, aten.permute.default, (source, _TO_NCHW), value.permute(*_TO_NCHW))
    pooled = _new(graph, node, aten.mean.dim, (nchw, [2, 3], True), value.permute(*_TO_NCHW).mean((2, 3), True))
    result = _new(graph, node, aten.permute.default, (pooled, _TO_NHWC), _val(pooled).permute(*_TO_NHWC))
    if not keepdim:
        result = _new(graph, node, aten.reshape.default, (result, list(_val(node).shape)), _val(node))
    node.replace_all_uses_with(result)
    graph.erase_node(node)
    return True


def _unary_ops() -> set:
    aten = _aten()
    return {aten.relu.default, aten.hardswish.default, aten.hardsigmoid.default, aten.sigmoid.default,
            aten.clamp.default, aten.hardtanh.default, aten.relu6.default if hasattr(aten, "relu6") else None,
            aten.tanh.default, aten.neg.default} - {None}


def _binary_ops() -> set:
    aten = _aten()
    return {aten.add.Tensor, aten.mul.Tensor, aten.sub.Tensor, aten.div.Tensor}


def _is_permute(node: Any, order: list[int] | None = None) -> bool:
    aten = _aten()
    return (getattr(node, "op", None) == "call_function" and node.target is aten.permute.default
            and (order is None or list(node.args[1]) == list(order)))


def _reshape_permutes(shape: Sequence[int], order: Sequence[int]) -> bool:
    """Whether permuting `shape` by `order` keeps its non-1 dimensions in order (a reshape does it)."""
    kept = [axis for axis in order if shape[axis] != 1]
    return kept == sorted(kept)


def _sink_permute(graph: Any, node: Any) -> bool:
    """`op(permute(x, p), ...)` -> `permute(op(x, ...), p)` for an elementwise `op` (see `_tidy_layout`)."""
    aten = _aten()
    unary, binary = node.target in _unary_ops(), node.target in _binary_ops()
    if not (unary or binary) or not node.args or _val(node) is None or _val(node).ndim != 4:
        return False
    tensors = [i for i, a in enumerate(node.args) if hasattr(a, "op")]
    permuted = [i for i in tensors if _is_permute(node.args[i])]
    if not permuted or len(tensors) > (1 if unary else 2):
        return False
    order = list(node.args[permuted[0]].args[1])
    inverse = list(np.argsort(order))
    args = list(node.args)
    for i in tensors:
        operand = node.args[i]
        value = _val(operand)
        if _is_permute(operand, order):
            args[i] = operand.args[0]
        elif value is not None and value.ndim == 0:
            continue
        elif value is not None and value.ndim == 4 and _reshape_permutes(tuple(value.shape), inverse):
            args[i] = _new(graph, node, aten.reshape.default, (operand, [value.shape[a] for a in inverse]),
                           value.permute(*inverse))
        else:
            return False
    inner_value = _val(node).permute(*inverse)
    with graph.inserting_before(node):
        inner = graph.call_function(node.target, tuple(args), dict(node.kwargs))
    inner.meta["val"] = inner_value
    result = _new(graph, node, aten.permute.default, (inner, order), _val(node))
    node.replace_all_uses_with(result)
    graph.erase_node(node)
    return True


def _fuse_permutes(graph: Any, node: Any) -> bool:
    """`permute(permute(x, p), q)` -> `x` when they compose to the identity, else one permute."""
    if not _is_permute(node) or not _is_permute(node.args[0]):
        return False
    inner = node.args[0]
    first, second = list(inner.args[1]), list(node.args[1])
    composed = [first[axis] for axis in second]
    if composed == list(range(len(composed))):
        node.replace_all_uses_with(inner.args[0])
    else:
        node.replace_all_uses_with(_new(graph, node, node.target, (inner.args[0], composed), _val(node)))
    graph.erase_node(node)
    return True


# -- running a program -----------------------------------------------------------------


def delegates(path: str | os.PathLike) -> list[str]:
    """The backend ids of the delegates in the `.pte` program at `path`
    (`["XnnpackBackend"]` for one XNNPACK delegate), read from the program's
    flatbuffer with ExecuTorch's own schema.

    Example:

    ```python
    # not run: needs `pip install "mobilenetv3[executorch]"`
    delegates("small.pte")  # ['XnnpackBackend']
    ```
    """
    with _torch_beside_tensorflow():
        from executorch.exir._serialize._program import deserialize_pte_binary

    program = deserialize_pte_binary(Path(path).read_bytes())
    program = getattr(program, "program", program)
    return [delegate.id for plan in program.execution_plan for delegate in plan.delegates]


def open_executorch(path: str | os.PathLike) -> Callable[[np.ndarray], np.ndarray]:
    """The `.pte` program at `path`, loaded by ExecuTorch's runtime, as
    `run(images) -> first output` (numpy in, numpy out).

    `images` are float32 in the program's input layout; any number of them
    is run in chunks of the program's batch size (the last chunk padded).
    `run.outputs(images)` gives every output as a list.

    Example:

    ```python
    # not run: needs `pip install "mobilenetv3[executorch]"`
    run = open_executorch("small.pte")
    logits = run(np.zeros((4, 224, 224, 3), "float32"))
    ```
    """
    import_optional("executorch", EXTRA, "Running an ExecuTorch program")
    import torch

    with _torch_beside_tensorflow():
        from executorch.runtime import Runtime
    if not Path(path).is_file():
        raise OSError(f"No ExecuTorch program at {str(path)!r}.")
    method = Runtime.get().load_program(str(path)).load_method("forward")
    shape = tuple(method.metadata.input_tensor_meta(0).sizes())

    def outputs(images: np.ndarray) -> list[np.ndarray]:
        images = np.asarray(images, dtype=np.float32)
        if images.ndim != len(shape) or tuple(images.shape[1:]) != shape[1:]:
            raise ValueError(f"`images` must have shape (N, {', '.join(map(str, shape[1:]))}); got {images.shape}.")
        batch, count = shape[0], len(images)
        results: list[list[np.ndarray]] = []
        for start in range(0, count, batch):
            chunk = images[start:start + batch]
            if len(chunk) < batch:
                chunk = np.concatenate([chunk, np.zeros((batch - len(chunk), *shape[1:]), np.float32)])
            out = method.execute([torch.from_numpy(np.ascontiguousarray(chunk))])
            results.append([o.numpy().copy() for o in out])
        return [np.concatenate([r[i] for r in results])[:count] for i in range(len(results[0]))]

    def run(images: np.ndarray) -> np.ndarray:
        return outputs(images)[0]

    run.outputs = outputs  # type: ignore[attr-defined]
    run.input_shape = shape  # type: ignore[attr-defined]
    return run


if __name__ == "__main__":
    _main(sys.argv[1:])
