"""Deployment: ONNX, TFLite, SavedModel and OpenVINO export, int8 quantization.

Example:

```python
import mobilenetv3
from mobilenetv3.export import export_onnx, export_saved_model, export_tflite

model = mobilenetv3.MobileNetV3ImageClassifier.from_preset("mobilenet_v3_small_imagenet")
export_onnx(model, "small.onnx")
export_tflite(model, "small.tflite")
export_saved_model(model, "small_saved_model")
```
"""

from mobilenetv3.export.calibration import load_calibration_images, load_images
from mobilenetv3.export.formats import EXPORTERS, Exporter, export_model
from mobilenetv3.export.onnx_export import export_onnx
from mobilenetv3.export.onnx_int8 import quantize_onnx
from mobilenetv3.export.openvino_export import compile_openvino, export_openvino
from mobilenetv3.export.saved_model import export_saved_model
from mobilenetv3.export.tflite_export import DEFAULT_FLOAT_OPS, export_tflite

__all__ = [
    "DEFAULT_FLOAT_OPS",
    "EXPORTERS",
    "Exporter",
    "compile_openvino",
    "export_model",
    "export_onnx",
    "export_openvino",
    "export_saved_model",
    "export_tflite",
    "load_calibration_images",
    "load_images",
    "quantize_onnx",
]
