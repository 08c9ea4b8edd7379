"""Fine-tune MobileNetV3 on a folder of images, then classify one image.

    python examples/fine_tune.py                       # generated shapes data
    python examples/fine_tune.py DATA_DIR --preset mobilenet_v3_small_imagenet

Without DATA_DIR a small generated shapes-and-textures folder is used with a
randomly initialized backbone (no download needed); pass an ImageNet preset
and 224-pixel images for real transfer learning.
"""

from __future__ import annotations

import argparse
import tempfile
from pathlib import Path

import numpy as np

from mobilenetv3 import MobileNetV3ImageClassifier
from mobilenetv3.datasets import make_classification_folder
from mobilenetv3.presets import folders
from mobilenetv3.training import fine_tune


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("data_dir", nargs="?", help="class-per-folder images (default: generated shapes)")
    parser.add_argument("--preset", default=None, help="backbone preset (default depends on data)")
    parser.add_argument("--out", default=None, help="output preset folder")
    args = parser.parse_args()

    work = Path(tempfile.mkdtemp(prefix="mobilenetv3_fine_tune_"))
    if args.data_dir is None:
        data_dir = make_classification_folder(work / "shapes", per_class=100, size=64)
        settings = dict(
            preset=args.preset or "mobilenet_v3_small",
            image_size=(64, 64),
            batch_size=16,
            head_epochs=1,
            fine_tune_epochs=12,
            unfreeze_blocks="all",
            train_batchnorm=True,  # random weights: BN statistics must be learned
            fine_tune_learning_rate=2e-3,
            augment=True,
        )
    else:
        data_dir = Path(args.data_dir)
        settings = dict(preset=args.preset or "mobilenet_v3_small_imagenet", image_size=(224, 224))
    out = Path(args.out or work / "classifier")

    result = fine_tune(data_dir, out=out, verbose=1, **settings)
    print(f"validation accuracy {result.val_accuracy:.3f}; classifier preset in {out}")

    model = MobileNetV3ImageClassifier.from_preset(str(out))
    names = folders.read_class_names(out)
    first_class = sorted(p for p in data_dir.iterdir() if p.is_dir())[0]
    image_path = sorted(first_class.iterdir())[0]
    from PIL import Image

    image = np.asarray(Image.open(image_path).convert("RGB").resize(settings["image_size"][::-1]), "float32")
    logits = model.predict(image[None], verbose=0)[0]
    print(f"{image_path.name} ({first_class.name}): predicted {names[int(np.argmax(logits))]}")


if __name__ == "__main__":
    main()
