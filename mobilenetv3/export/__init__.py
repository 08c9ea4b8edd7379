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

from mobilenetv3.core.lazy import lazy_attributes as _lazy_attributes

# Public name -> the module defining it (imported on first use: the
# `export` command reads `formats` without loading Keras).
_EXPORTS = {
    name: f"mobilenetv3.export.{module}"
    for name, module in {
        "DEFAULT_FLOAT_OPS": "tflite_export",
        "EXPORTERS": "formats",
        "Exporter": "formats",
        "compile_openvino": "openvino_export",
        "export_executorch": "executorch_export",
        "export_model": "formats",
        "export_onnx": "onnx_export",
        "export_openvino": "openvino_export",
        "export_saved_model": "saved_model",
        "export_tflite": "tflite_export",
        "export_tflite_detector": "tflite_detection",
        "load_calibration_images": "calibration",
        "load_images": "calibration",
        "open_executorch": "executorch_export",
        "quantize_onnx": "onnx_int8",
        "speed_table": "speed",
        "time_runtimes": "speed",
    }.items()
}
__all__ = sorted(_EXPORTS)
__getattr__, __dir__ = _lazy_attributes(__name__, _EXPORTS)
