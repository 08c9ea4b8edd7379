"""Preset folders and handles: resolving, reading and writing them.

A preset handle is one of:
- a registry name (`mobilenet_v3_small_imagenet`),
- a local folder in keras-cv's layout (`config.json`, `model.weights.h5`,
  `metadata.json`), written by keras-cv or by `save_to_preset`,
- `kaggle://owner/model/framework/variation/version` or `hf://owner/repo`.

Which model class a folder becomes is `mobilenetv3.presets.loader`' business; this
module only reads and writes the files.
"""

from __future__ import annotations

import dataclasses
import datetime
import json
import os
import re
from pathlib import Path
from typing import Any

import keras

from mobilenetv3.core import keras_internals as internals
from mobilenetv3.core.normalization import ImagePolicy
from mobilenetv3.core.utils import atomic_path
from mobilenetv3.version import __version__
from mobilenetv3.weights import canonical, detect_format

CONFIG_FILE = "config.json"
WEIGHTS_FILE = "model.weights.h5"
METADATA_FILE = "metadata.json"
LABELS_FILE = "labels.txt"  # class names of a classifier, one per line
PREPROCESSOR_FILE = "preprocessor.json"  # how images are prepared: `normalization.ImagePolicy`


class PresetError(ValueError):
    """A preset cannot be resolved or read."""


@dataclasses.dataclass(frozen=True)
class FolderSpec:
    """What a preset folder's `config.json` says.

    Attributes:
        class_name: the serialized class name (keras-cv's package prefix
            dropped), e.g. "MobileNetV3Backbone".
        config: the class's config.
        config_path: the `config.json` path, for messages.
        weights_path: the weights file the config names (a plain name
            inside the folder; checked).
        weights_named: whether the config names its weights file (then it
            must exist, unless weights are not loaded).
    """

    class_name: str
    config: dict
    config_path: Path
    weights_path: Path
    weights_named: bool = False


def resolve_handle(preset: str | os.PathLike) -> str:
    """A preset name or local folder; `kaggle://` / `hf://` handles are
    downloaded first."""
    if not isinstance(preset, (str, os.PathLike)):
        raise TypeError(f"`preset` must be a preset name, folder or handle; got {preset!r}.")
    preset = str(preset)
    if preset.startswith(("kaggle://", "hf://")):
        return fetch_handle(preset)
    return preset


def read_folder(path: str | os.PathLike) -> FolderSpec:
    """Read a preset folder's `config.json`."""
    folder = Path(path)
    config_path = folder / CONFIG_FILE
    if not config_path.is_file():
        raise PresetError(f"Preset folder {folder} has no {CONFIG_FILE}; it is not a preset folder.")
    try:
        spec = json.loads(config_path.read_text())
        class_name = spec["registered_name"].split(">")[-1]
        config = dict(spec["config"])
    except (ValueError, KeyError, TypeError, AttributeError) as error:
        raise PresetError(f"{config_path} is not a valid preset config ({error!r}).") from None
    _check_dtypes(config, config_path)
    weights_path = _folder_weights(folder, spec.get("weights", WEIGHTS_FILE), config_path)
    return FolderSpec(class_name, config, config_path, weights_path, "weights" in spec)


# Class names of serialized dtype policies (`keras.dtype_policies`).
_DTYPE_POLICY_CLASSES = frozenset(
    name for name in dir(keras.dtype_policies) if name.endswith("DTypePolicy") or name == "DTypePolicyMap"
)


def _check_dtypes(config: Any, config_path: Path, where: str = "config") -> None:
    """Every "dtype" in a preset config (nested configs too) is a dtype
    policy: a name ("float32", "mixed_float16") or a DTypePolicy config.
    Anything else (a layer config, say) is a PresetError naming the field,
    raised before Keras deserializes anything."""
    if isinstance(config, list):
        for index, item in enumerate(config):
            _check_dtypes(item, config_path, f"{where}[{index}]")
        return
    if not isinstance(config, dict):
        return
    for key, value in config.items():
        field = f"{where}.{key}"
        if key == "dtype" and value is not None:
            _check_dtype(value, config_path, field)
        else:
            _check_dtypes(value, config_path, field)


def _check_dtype(value: Any, config_path: Path, field: str) -> None:
    expected = 'a dtype policy name such as "float32" or "mixed_float16", or a DTypePolicy config'
    if isinstance(value, dict):
        class_name = value.get("class_name")
        if class_name not in _DTYPE_POLICY_CLASSES:
            what = f"a {class_name!r} config" if isinstance(class_name, str) else f"{_one_line(value, 80)}"
            raise PresetError(f'{config_path}: "{field}" is {what}, not a dtype policy; it must be {expected}.')
    elif not isinstance(value, str):
        raise PresetError(f'{config_path}: "{field}" is {value!r}, not a dtype policy; it must be {expected}.')
    try:
        keras.dtype_policies.get(value)
    except Exception as error:  # Keras raises ValueError / TypeError for bad policies
        raise PresetError(f'{config_path}: "{field}" is not a valid dtype policy ({_one_line(error, 200)}).') from None


def _folder_weights(folder: Path, name: object, config_path: Path) -> Path:
    """The weights file a folder's config names: a plain relative path that
    stays inside the folder."""
    if not isinstance(name, str) or not name:
        raise PresetError(f"{config_path}: \"weights\" must be a file name; got {name!r}.")
    # Checked on the name here; where a link leads is checked before loading
    # (`_check_inside`): hub caches (hf://) link their files to blobs elsewhere.
    if os.path.isabs(name) or Path(name).is_absolute() or ".." in Path(name.replace("\\", "/")).parts:
        raise PresetError(
            f"{config_path}: \"weights\" is {name!r}, a path outside the preset folder; it must "
            f"name a file inside {folder} (e.g. {WEIGHTS_FILE!r})."
        )
    return folder / name


def load_folder_weights(model: keras.Model, spec: FolderSpec, load_weights: bool | None) -> None:
    """Load a folder's weights file into the model built from its config
    (None: when there is one; True: required; False: skip)."""
    if load_weights is False:
        return
    if not spec.weights_path.is_file():
        if load_weights or spec.weights_named:
            raise PresetError(
                f"Preset folder {spec.config_path.parent} has no weights file {spec.weights_path.name} "
                f"(named by {spec.config_path.name}); pass load_weights=False for random weights."
            )
        return
    _check_inside(spec)
    try:
        model.load_weights(str(spec.weights_path))
    except Exception as error:  # Keras raises several types for bad files.
        raise PresetError(
            f"Could not load {spec.weights_path} into {spec.class_name} built from {spec.config_path}: "
            f"{_load_failure(error)}"
        ) from None
    canonical.check_tensors(canonical.model_weights(model), str(spec.weights_path))


# Keras' message when a layer's variables are missing from a weights file.
_MISSING_VARIABLES = re.compile(
    r"Layer '(?P<layer>[^']+)' expected (?P<expected>\d+) variables, but received (?P<received>\d+)"
)
_FAILED_OBJECTS = re.compile(r"A total of (?P<count>\d+) objects could not be loaded")


def _load_failure(error: Exception) -> str:
    """Why `model.load_weights` failed, on one line."""
    text = str(error)
    missing = _MISSING_VARIABLES.search(text)
    if missing:
        failed = _FAILED_OBJECTS.search(text)
        others = int(failed["count"]) - 1 if failed else 0
        also = f" (and {others} more layer{'s' if others != 1 else ''})" if others > 0 else ""
        return (
            f"the file lacks weights: layer '{missing['layer']}' has {missing['received']} of its "
            f"{missing['expected']} variables in it{also}. The file is incomplete, or of another network."
        )
    # h5py's messages ("Unable to synchronously open object ...", "truncated file")
    if isinstance(error, (OSError, KeyError, RuntimeError)) or "Unable to" in text:
        return (
            f"the file is corrupted or truncated (HDF5: {_one_line(error, 200).strip(chr(34))}); "
            "download or save it again."
        )
    return f"{type(error).__name__}: {_one_line(error, 300)}"


def _check_inside(spec: FolderSpec) -> None:
    """The weights file, links followed, lies inside its preset folder, or
    (a Hugging Face hub snapshot, `<repo>/snapshots/<revision>/`) in its
    repository's `blobs/`, where the hub links every snapshot file."""
    folder = spec.config_path.parent.resolve()
    real = spec.weights_path.resolve()
    if real.is_relative_to(folder):
        return
    repo = folder.parent.parent
    if folder.parent.name == "snapshots" and real.is_relative_to(repo / "blobs"):
        return
    raise PresetError(
        f"{spec.weights_path} links to {real}, outside the preset folder {spec.config_path.parent}; "
        "refusing to load it. Copy the file into the folder if you trust it."
    )


# What `identify` calls a preset folder in this package's (and keras-cv's)
# layout; also the `convert --from` name of such a folder.
PRESET_FOLDER = "keras-cv"


def identify(source: str | os.PathLike) -> str | None:
    """The one format sniffer: what a local file or folder holds.

    Returns `PRESET_FOLDER` for a preset folder in keras-cv's layout (ours
    too), or a `.weights.h5` file inside one; a `weights.FORMATS` name for
    a weights file or another library's folder (keras-hub preset, timm
    Hugging Face repo); None when nothing recognises it.

    Example:

    ```python
    identify("my_preset")  # 'keras-cv'
    identify("mobilenetv3_large_100.safetensors")  # 'timm'
    ```
    """
    path = Path(source)
    if path.is_dir():
        from mobilenetv3.weights import keras_hub_preset

        if keras_hub_preset.detect(path):  # its config.json looks like ours
            return "keras-hub"
        if is_preset_folder(path):
            return PRESET_FOLDER
    elif path.name.endswith(".weights.h5") and is_preset_folder(path.parent):
        return PRESET_FOLDER
    return detect_format(str(path)) if path.exists() else None


def is_preset_folder(folder: str | os.PathLike) -> bool:
    """Whether `folder` has a `config.json` in keras-cv's layout
    (`registered_name` + `config`)."""
    config = Path(folder) / CONFIG_FILE
    try:
        spec = json.loads(config.read_text())
    except (ValueError, OSError):
        return False
    return isinstance(spec, dict) and "registered_name" in spec and "config" in spec


# Where each hub downloads from (checked once before a download, so an
# offline machine fails in seconds instead of retrying).
HUB_HOSTS = {"kaggle": "www.kaggle.com", "hf": "huggingface.co"}
CONNECT_TIMEOUT = 3.0


def fetch_handle(handle: str) -> str:
    """Download a `kaggle://` or `hf://` preset into the local cache (a
    cached `hf://` preset loads offline)."""
    scheme, _, name = handle.partition("://")
    try:
        if scheme == "hf":
            cached = _hf_cached(name)
            if cached is not None:
                return cached
        _check_reachable(scheme, handle)
        if scheme == "kaggle":
            import kagglehub

            return kagglehub.model_download(name)
        import huggingface_hub

        return huggingface_hub.snapshot_download(repo_id=name)
    except ImportError as error:
        raise PresetError(
            f"Loading {handle} needs the `{error.name}` package (pip install {error.name})."
        ) from None
    except PresetError:
        raise
    except Exception as error:  # the hubs raise many types, often nested.
        raise PresetError(
            f"Could not download preset {handle}: {type(error).__name__}: {_one_line(error)}. "
            "If you are offline, download the preset folder elsewhere and pass its local path "
            "to from_preset()."
        ) from None


def _hf_cached(name: str) -> str | None:
    """The cached snapshot of Hugging Face repo `name`, or None."""
    import huggingface_hub

    try:
        return huggingface_hub.snapshot_download(repo_id=name, local_files_only=True)
    except Exception:  # not cached (LocalEntryNotFoundError and friends)
        return None


def _check_reachable(scheme: str, handle: str) -> None:
    """A PresetError at once when the hub's host cannot be reached."""
    import socket

    host = HUB_HOSTS[scheme]
    try:
        socket.create_connection((host, 443), timeout=CONNECT_TIMEOUT).close()
    except OSError as error:
        raise PresetError(
            f"Could not download preset {handle}: {host} cannot be reached ({error}); are you offline? "
            "Download the preset folder on a machine with network access and pass its local path instead."
        ) from None


def _one_line(error: object, limit: int = 1000) -> str:
    """The error's message (or any value's text) on one line; marked when cut."""
    text = " ".join(str(error).split())
    return text if len(text) <= limit else text[:limit] + " [...]"


def save_preset(
    model: keras.Model,
    path: str | os.PathLike,
    class_names: list[str] | None = None,
    origin: dict[str, Any] | None = None,
    preprocessing: ImagePolicy | None = None,
) -> None:
    """Write `model` as a preset folder, atomically (see `save_to_preset`).

    `class_names` (a classifier's labels, in output order; default: the
    ones the model was loaded with) go to `labels.txt` and to
    `metadata.json`'s "class_names"; `origin` (where converted weights came
    from: source, file, tag) to its "origin"; `preprocessing` (default: the
    model's, see `ImagePolicy.of_model`) to `preprocessor.json`."""
    class_names = class_names if class_names is not None else getattr(model, "class_names", None)
    preprocessing = preprocessing or ImagePolicy.of_model(model)
    with atomic_path(path, directory=True) as staging:
        staging.mkdir()
        spec = keras.saving.serialize_keras_object(model)
        spec["weights"] = WEIGHTS_FILE
        (staging / CONFIG_FILE).write_text(json.dumps(spec, indent=4))
        # HDF5 builds the file in memory: on a full disk the write below fails
        # with a plain OSError instead of leaving HDF5 half-closed (a segfault).
        (staging / WEIGHTS_FILE).write_bytes(internals.weights_h5_bytes(model))
        metadata = {
            "keras_version": keras.__version__,
            "mobilenetv3_version": __version__,
            "parameter_count": model.count_params(),
            "date_saved": datetime.datetime.now().strftime("%Y-%m-%d@%H:%M:%S"),
        }
        if origin:
            metadata["origin"] = _json_safe(origin)
        if class_names is not None:
            metadata["class_names"] = list(class_names)
            (staging / LABELS_FILE).write_text("".join(f"{name}\n" for name in class_names))
        (staging / METADATA_FILE).write_text(json.dumps(metadata, indent=4))
        (staging / PREPROCESSOR_FILE).write_text(json.dumps(preprocessing.to_dict(), indent=4))


def read_preprocessing(path: str | os.PathLike) -> ImagePolicy:
    """How a preset folder's model expects images: its `preprocessor.json`;
    for folders written before it existed, timm's data config of the tag
    recorded in `metadata.json`, else what the config implies.

    Example:

    ```python
    read_preprocessing("converted_timm_preset").resize  # 'center_crop'
    ```
    """
    folder = Path(path)
    file = folder / PREPROCESSOR_FILE
    if file.is_file():
        try:
            return ImagePolicy.from_dict(json.loads(file.read_text()))
        except (ValueError, TypeError) as error:
            raise PresetError(f"{file} is not a valid image preprocessor ({error}).") from None
    origin = read_metadata(folder).get("origin") or {}
    from mobilenetv3.weights import timm

    policy = timm.data_config(origin.get("tag")) if origin.get("source") == "timm" else None
    if policy is not None:
        return policy
    config = read_folder(folder).config
    return ImagePolicy.for_backbone_config(config["backbone"]["config"] if "backbone" in config else config)


def _json_safe(value: Any) -> Any:
    if isinstance(value, dict):
        return {str(k): _json_safe(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_json_safe(v) for v in value]
    return value if isinstance(value, (str, int, float, bool)) or value is None else str(value)


def read_metadata(path: str | os.PathLike) -> dict[str, Any]:
    """A preset folder's `metadata.json` ({} when it has none)."""
    file = Path(path) / METADATA_FILE
    return json.loads(file.read_text()) if file.is_file() else {}


def read_class_names(path: str | os.PathLike) -> list[str] | None:
    """The class names saved in a preset folder (`labels.txt`, else
    `metadata.json`'s "class_names"), or None when it has none."""
    folder = Path(path)
    labels = folder / LABELS_FILE
    if labels.is_file():
        return [line for line in labels.read_text().splitlines() if line]
    metadata = folder / METADATA_FILE
    if metadata.is_file():
        names = json.loads(metadata.read_text()).get("class_names")
        return list(names) if names else None
    return None
