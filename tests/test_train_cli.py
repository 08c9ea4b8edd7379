"""`mobilenetv3 train`: writes a classifier preset with its class names."""

from __future__ import annotations

import json

import numpy as np

import mobilenetv3
from mobilenetv3.cli import main
from mobilenetv3.datasets import make_classification_folder, render_image
from mobilenetv3.presets import folders

CLASSES = ["circle", "stripes", "square"]


# One training run checks the preset and then the resume from its checkpoint
# (a training run each cost 20-50 s on the shared 2-core box).
def test_train_writes_a_classifier_preset_with_labels_and_resumes_from_its_checkpoint(tmp_path, capsys):
    data = make_classification_folder(tmp_path / "data", classes=CLASSES, per_class=6, size=32)
    out = tmp_path / "model"
    args = ["train", str(data), "--preset", "mobilenet_v3_small", "--out", str(out), "--image-size", "32",
            "--batch-size", "8", "--head-epochs", "1", "--fine-tune-epochs", "1", "--unfreeze-blocks", "2",
            "--train-batchnorm", "--quiet", "--checkpoint-dir", str(tmp_path / "ck")]
    assert main(args) == 0
    printed = capsys.readouterr().out
    assert "validation accuracy:" in printed and "circle, square, stripes" in printed
    assert (out / "labels.txt").read_text().splitlines() == sorted(CLASSES)
    assert json.loads((out / "metadata.json").read_text())["class_names"] == sorted(CLASSES)
    assert folders.read_class_names(out) == sorted(CLASSES)
    model = mobilenetv3.MobileNetV3ImageClassifier.from_preset(str(out))
    assert model.num_classes == 3
    image = np.asarray(render_image("circle", 0, 32), "float32")[None]
    assert model.predict(image, verbose=0).shape == (1, 3)

    state = json.loads((tmp_path / "ck" / "state.json").read_text())["state"]
    assert (state["phase"], state["epoch"], state["step"]) == ("fine_tune", 2, 0)  # 2 epochs done in all
    assert main([*args, "--resume"]) == 0  # nothing left to train: same result
    assert capsys.readouterr().out == printed


def test_train_bad_input_fails_clearly_and_writes_nothing(tmp_path, capsys):
    out = tmp_path / "model"
    assert main(["train", str(tmp_path / "missing"), "--preset", "mobilenet_v3_small", "--out", str(out)]) == 2
    assert "`data_dir`" in capsys.readouterr().err
    data = make_classification_folder(tmp_path / "data", classes=CLASSES, per_class=2, size=32)
    assert main(["train", str(data), "--out", str(out), "--image-size", "16"]) == 2
    assert "--image-size" in capsys.readouterr().err
    assert not out.exists()
    assert [p.name for p in tmp_path.iterdir()] == ["data"]


def test_train_job_and_resume_flags_fail_clearly(tmp_path, capsys):
    data = make_classification_folder(tmp_path / "data", classes=CLASSES, per_class=2, size=32)
    base = ["train", str(data), "--preset", "mobilenet_v3_small", "--out", str(tmp_path / "model"), "--image-size", "32"]
    assert main([*base, "--resume"]) == 2
    assert "--resume needs --checkpoint-dir" in capsys.readouterr().err
    assert main([*base, "--num-processes", "2"]) == 2
    assert "--job-addresses" in capsys.readouterr().err
    assert main([*base, "--job-addresses", "127.0.0.1", "--num-processes", "2"]) == 2
    assert "'host:port'" in capsys.readouterr().err
    assert main([*base, "--job-addresses", "127.0.0.1:1,127.0.0.1:2", "--num-processes", "2", "--process-id", "2"]) == 2
    assert "`process_id` must be an integer from 0 to 1" in capsys.readouterr().err
    assert not (tmp_path / "model").exists()
