"""torchvision models with random weights as oracles, and NCHW/NHWC helpers."""

from __future__ import annotations

from pathlib import Path

import keras
import numpy as np
import pytest

torch = pytest.importorskip("torch")
torchvision = pytest.importorskip("torchvision")


def randomized(model: torch.nn.Module, seed: int = 0) -> torch.nn.Module:
    """`model` in eval mode with random weights *and* random BatchNorm
    statistics and affine terms, so a wrong mapping or epsilon shows."""
    generator = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for module in model.modules():
            if isinstance(module, torch.nn.BatchNorm2d):
                module.running_mean.copy_(torch.rand(module.num_features, generator=generator) - 0.5)
                module.running_var.copy_(torch.rand(module.num_features, generator=generator) + 0.5)
                module.weight.copy_(torch.rand(module.num_features, generator=generator) + 0.5)
                module.bias.copy_(torch.rand(module.num_features, generator=generator) - 0.5)
            elif isinstance(module, torch.nn.Linear):
                # torchvision's N(0, 0.01) init would make logits too small to test.
                scale = module.in_features**-0.5
                module.weight.copy_(torch.randn(module.weight.shape, generator=generator) * scale)
            if isinstance(module, (torch.nn.Conv2d, torch.nn.Linear)) and module.bias is not None:
                module.bias.copy_(torch.rand(module.bias.shape, generator=generator) * 0.2 - 0.1)
    return model.eval()


def save_state_dict(model: torch.nn.Module, folder: Path, name: str = "model.pth") -> str:
    path = folder / name
    torch.save(model.state_dict(), path)
    return str(path)


def images_nchw(height: int, width: int, batch: int = 1, seed: int = 0) -> np.ndarray:
    return np.random.default_rng(seed).normal(size=(batch, 3, height, width)).astype("float32")


def torch_forward(module: torch.nn.Module, x_nchw: np.ndarray) -> np.ndarray:
    """Run `module` and return its output as NHWC numpy (dict outputs: "out")."""
    with torch.no_grad():
        out = module(torch.from_numpy(x_nchw))
    out = out["out"] if isinstance(out, dict) else out
    out = out.numpy()
    return out.transpose(0, 2, 3, 1) if out.ndim == 4 else out


def keras_forward(model: keras.Model, x_nchw: np.ndarray) -> np.ndarray:
    return keras.ops.convert_to_numpy(model(x_nchw.transpose(0, 2, 3, 1), training=False))


def max_abs_diff(a: np.ndarray, b: np.ndarray) -> float:
    assert a.shape == b.shape, (a.shape, b.shape)
    return float(np.max(np.abs(a - b)))


def trainable_count(model: keras.Model) -> int:
    return sum(int(np.prod(v.shape)) for v in model.trainable_weights)


def torch_param_count(module: torch.nn.Module) -> int:
    return sum(p.numel() for p in module.parameters())


def lraspp_oracle(folder: Path) -> tuple[torch.nn.Module, str]:
    """torchvision's LR-ASPP (Large, 21 classes) with random weights and
    perturbed BatchNorm statistics, and its state dict saved in `folder`."""
    factory = torchvision.models.segmentation.lraspp_mobilenet_v3_large
    oracle = randomized(factory(num_classes=21, weights=None, weights_backbone=None), seed=7)
    return oracle, save_state_dict(oracle, folder)


def deeplabv3_oracle(folder: Path, aux_loss: bool = True) -> tuple[torch.nn.Module, str]:
    """torchvision's DeepLabV3 (Large, 21 classes; with `aux_loss=True` the
    auxiliary classifier, as the published file) with random weights and
    perturbed BatchNorm statistics, and its state dict saved in `folder`."""
    factory = torchvision.models.segmentation.deeplabv3_mobilenet_v3_large
    oracle = randomized(factory(num_classes=21, weights=None, weights_backbone=None, aux_loss=aux_loss), seed=11)
    return oracle, save_state_dict(oracle, folder)


def faster_rcnn_oracle(folder: Path, name: str = "fasterrcnn_mobilenet_v3_large_fpn") -> tuple[torch.nn.Module, str]:
    """A torchvision Faster R-CNN with a MobileNetV3 body whose BatchNorm is
    `FrozenBatchNorm2d` (as with the published weights), random weights and
    statistics, and its state dict saved in `folder`."""
    from torchvision.ops import FrozenBatchNorm2d

    factory = getattr(torchvision.models.detection, name)
    # With no weights torchvision uses nn.BatchNorm2d (same epsilon 1e-5);
    # give the body FrozenBatchNorm2d as the published model has.
    backbone = torchvision.models.mobilenet_v3_large(weights=None, norm_layer=FrozenBatchNorm2d)
    oracle = factory(weights=None, weights_backbone=None, num_classes=91)
    body = oracle.backbone.body
    for index, module in enumerate(backbone.features[: len(body)]):
        body[str(index)] = module
    generator = torch.Generator().manual_seed(13)
    with torch.no_grad():
        for module in oracle.modules():
            if isinstance(module, FrozenBatchNorm2d):
                channels = module.weight.shape[0]
                module.running_mean.copy_(torch.rand(channels, generator=generator) - 0.5)
                module.running_var.copy_(torch.rand(channels, generator=generator) + 0.5)
                module.weight.copy_(torch.rand(channels, generator=generator) + 0.5)
                module.bias.copy_(torch.rand(channels, generator=generator) - 0.5)
    return oracle.eval(), save_state_dict(oracle, folder)
