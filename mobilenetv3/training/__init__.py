"""Training: the fine-tuning recipe (`recipe`, whose public names this
package gives), the detector recipe (`detector`), resumable checkpoints
(`checkpointing`), multi-process data parallelism (`distributed`) and the
tf.data image-folder input (`data_pipeline`). Imported lazily: naming a
submodule does not load Keras.

Example:

```python
from mobilenetv3.training import fine_tune

result = fine_tune("my_images/", preset="mobilenet_v3_small_imagenet", out="my_classifier")
```
"""

from mobilenetv3.core.lazy import lazy_attributes as _lazy_attributes

_RECIPE = (
    "FineTuneResult", "build_classifier", "calibrate_batchnorm", "check_finite_weights", "fine_tune", "freeze_backbone",
    "load_image_folder", "make_optimizer", "save_classifier", "shard_by_data", "tf_autotune",
    "unfreeze_top_blocks",
)
__all__ = list(_RECIPE)
__getattr__, __dir__ = _lazy_attributes(__name__, {name: "mobilenetv3.training.recipe" for name in _RECIPE})
