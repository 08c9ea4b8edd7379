"""Issue #25, "Downloads" and "Preset folders": every way a download or a
preset folder goes wrong ends in one clear error naming the URL or file.

Downloads are served by a real HTTP server on 127.0.0.1 (a thread of this
process) whose handlers misbehave on purpose: trickling, cutting a chunked
transfer short, lying in `Content-Length`, serving an HTML page. Every
handler loop is bounded and stops by itself. The full-disk case writes into
a real 64 KiB tmpfs (skipped where it cannot be mounted).
"""

from __future__ import annotations

import hashlib
import http.server
import subprocess
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from mobilenetv3.weights import download

BODY = bytes(range(256)) * 64  # 16 KiB of "weights"
SHA256 = hashlib.sha256(BODY).hexdigest()


# -- the misbehaving server ---------------------------------------------------------


class _Handler(http.server.BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    stop: threading.Event  # set at teardown: ends every handler loop

    def log_message(self, *args: object) -> None:  # keep pytest output clean
        pass

    def _head(self, *lines: str) -> None:
        self.wfile.write(("HTTP/1.1 200 OK\r\n" + "".join(f"{line}\r\n" for line in lines) + "\r\n").encode())

    def do_GET(self) -> None:  # noqa: N802 - the name http.server calls
        name = self.path.rsplit("/", 1)[-1]
        behave = getattr(self, "_" + name.split(".")[0].replace("-", "_"), None)
        if behave is None:
            self.send_error(404)
            return
        try:
            behave()
        except (BrokenPipeError, ConnectionResetError):
            pass  # the client gave up: what the test wanted.
        self.close_connection = True

    def _good(self) -> None:
        self._head("Content-Type: application/octet-stream", f"Content-Length: {len(BODY)}", "Connection: close")
        self.wfile.write(BODY)

    def _trickle(self) -> None:
        """One byte every 0.25 s of 10000 promised (bounded: 80 bytes, 20 s)."""
        self._head("Content-Type: application/octet-stream", "Content-Length: 10000", "Connection: close")
        for _ in range(80):
            self.wfile.write(b"x")
            if self.stop.wait(0.25):
                return

    def _slow(self) -> None:
        """One byte every 20 s (bounded: 3 bytes, or until teardown)."""
        self._head("Content-Type: application/octet-stream", "Content-Length: 10000", "Connection: close")
        for _ in range(3):
            self.wfile.write(b"x")
            if self.stop.wait(20):
                return

    def _chunked_cut(self) -> None:
        """A chunked transfer that closes after its first chunk (no last chunk)."""
        self._head("Content-Type: application/octet-stream", "Transfer-Encoding: chunked", "Connection: close")
        self.wfile.write(b"%x\r\n%s\r\n" % (4096, BODY[:4096]))

    def _chunked_mid(self) -> None:
        """A chunked transfer that closes in the middle of a chunk."""
        self._head("Content-Type: application/octet-stream", "Transfer-Encoding: chunked", "Connection: close")
        self.wfile.write(b"%x\r\n%s" % (len(BODY), BODY[:1000]))

    def _bad_length(self) -> None:
        self._head("Content-Type: application/octet-stream", "Content-Length: 12abc", "Connection: close")
        self.wfile.write(BODY)

    def _short(self) -> None:
        """Half of what `Content-Length` promises, then close."""
        self._head("Content-Type: application/octet-stream", f"Content-Length: {len(BODY)}", "Connection: close")
        self.wfile.write(BODY[: len(BODY) // 2])

    def _unframed_short(self) -> None:
        """No Content-Length, no chunks: half the body, then close."""
        self._head("Content-Type: application/octet-stream", "Connection: close")
        self.wfile.write(BODY[: len(BODY) // 2])

    def _page(self) -> None:
        page = b"<!doctype html><html><body>Sign in to continue</body></html>"
        self._head("Content-Type: text/html; charset=utf-8", f"Content-Length: {len(page)}", "Connection: close")
        self.wfile.write(page)

    def _big(self) -> None:
        """256 KiB, more than the tmpfs holds."""
        size = 256 * 1024
        self._head("Content-Type: application/octet-stream", f"Content-Length: {size}", "Connection: close")
        for _ in range(size // len(BODY)):
            self.wfile.write(BODY)


@pytest.fixture(scope="module")
def server() -> Iterator[str]:
    """The base URL of the misbehaving server."""
    stop = threading.Event()
    handler = type("Handler", (_Handler,), {"stop": stop})
    httpd = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
    httpd.daemon_threads = True
    thread = threading.Thread(target=httpd.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{httpd.server_address[1]}"
    stop.set()
    httpd.shutdown()
    httpd.server_close()
    thread.join(10)


@pytest.fixture(autouse=True)
def cache(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    monkeypatch.setenv("MOBILENETV3_CACHE", str(tmp_path / "cache"))
    monkeypatch.delenv("MOBILENETV3_DOWNLOAD_TIMEOUT", raising=False)
    return tmp_path / "cache"


def _leftovers(cache: Path) -> list[str]:
    return sorted(p.name for p in cache.rglob("*")) if cache.exists() else []


# -- downloads --------------------------------------------------------------------


def test_good_download_records_its_hash_and_is_cached(server: str, cache: Path) -> None:
    path = download.fetch(f"{server}/good.bin")
    assert path == cache / "good.bin" and path.read_bytes() == BODY
    assert (cache / "good.bin.sha256").read_text().split()[0] == SHA256
    assert _leftovers(cache) == ["good.bin", "good.bin.sha256"]
    assert download.fetch(f"{server}/good.bin") == path  # a cache hit, checked


def test_trickling_server_ends_at_the_deadline(server: str, cache: Path) -> None:
    url = f"{server}/trickle.bin"
    start = time.monotonic()
    with pytest.raises(download.DownloadError) as info:
        download.fetch(url, timeout=2)
    elapsed = time.monotonic() - start
    message = str(info.value)
    assert url in message and "passed its deadline of 2 s with " in message and " of 10000 bytes arrived" in message
    arrived = int(message.split(" of 10000 bytes arrived")[0].rsplit(" ", 1)[-1])
    assert 1 <= arrived < 10000
    assert elapsed < 15  # the server would take 20 s for 80 bytes, 2500 s for all of them
    assert _leftovers(cache) == []


def test_one_byte_every_20_seconds_ends_at_the_environment_deadline(
    server: str, cache: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv(download.TIMEOUT_ENV, "1.5")
    url = f"{server}/slow.bin"
    start = time.monotonic()
    with pytest.raises(download.DownloadError, match=r"passed its deadline of 1.5 s with 1 of 10000 bytes arrived") as info:
        download.fetch(url)
    assert url in str(info.value) and download.TIMEOUT_ENV in str(info.value)
    assert time.monotonic() - start < 15
    assert _leftovers(cache) == []


def test_stalled_server_ends_after_one_read_timeout(
    server: str, cache: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(download, "READ_TIMEOUT", 1.0)  # 30 s by default
    url = f"{server}/slow.bin"
    with pytest.raises(download.DownloadError, match=r"stalled: no data for 1 s, with 1 of 10000 bytes arrived") as info:
        download.fetch(url)  # the default deadline (10 minutes) is far away
    assert url in str(info.value)
    assert _leftovers(cache) == []


def test_default_deadline_scales_with_size_and_is_overridable(monkeypatch: pytest.MonkeyPatch) -> None:
    assert download.download_deadline(10_000_000) == download.MIN_DEADLINE
    assert download.download_deadline(10**10) == 10**10 / download.MIN_RATE
    assert download.download_deadline(None) == download.UNKNOWN_SIZE_DEADLINE
    assert download.download_deadline(10**10, timeout=5) == 5
    monkeypatch.setenv(download.TIMEOUT_ENV, "42")
    assert download.download_deadline(10**10) == 42
    monkeypatch.setenv(download.TIMEOUT_ENV, "soon")
    with pytest.raises(ValueError, match=r"\$MOBILENETV3_DOWNLOAD_TIMEOUT must be a number of seconds; got 'soon'"):
        download.fetch("http://127.0.0.1:9/x.bin")
    monkeypatch.delenv(download.TIMEOUT_ENV)
    for bad in (0, -1, "10", True):
        with pytest.raises(ValueError, match="`timeout` must be a positive number of seconds"):
            download.fetch("http://127.0.0.1:9/x.bin", timeout=bad)


@pytest.mark.parametrize("name", ["chunked-cut.bin", "chunked-mid.bin"])
def test_chunked_transfer_cut_short(server: str, cache: Path, name: str) -> None:
    url = f"{server}/{name}"
    with pytest.raises(download.DownloadError, match=r"the connection broke after \d+ bytes \(IncompleteRead\)") as info:
        download.fetch(url)
    assert url in str(info.value)
    assert _leftovers(cache) == []


def test_invalid_content_length(server: str, cache: Path) -> None:
    url = f"{server}/bad-length.bin"
    with pytest.raises(download.DownloadError, match=r"invalid Content-Length header '12abc'") as info:
        download.fetch(url)
    assert url in str(info.value)
    assert _leftovers(cache) == []


def test_body_shorter_than_content_length(server: str, cache: Path) -> None:
    url = f"{server}/short.bin"
    with pytest.raises(download.DownloadError, match=rf"got {len(BODY) // 2} of {len(BODY)} bytes") as info:
        download.fetch(url)
    assert url in str(info.value)
    assert _leftovers(cache) == []


def test_unframed_body_ending_early_is_caught_by_a_hash_only(server: str, cache: Path) -> None:
    """The documented limitation: without Content-Length or chunks, only a
    hash tells a cut body from a whole one."""
    url = f"{server}/unframed-short.bin"
    with pytest.raises(download.DownloadError, match="sha256 is"):
        download.fetch(url, sha256=SHA256)
    assert _leftovers(cache) == []
    assert download.fetch(url).read_bytes() == BODY[: len(BODY) // 2]  # no hash: undetectable
    assert "cannot be detected" in download.fetch.__doc__


def test_missing_file_names_the_http_status(server: str, cache: Path) -> None:
    url = f"{server}/missing.bin"
    with pytest.raises(download.DownloadError, match=r"the server answered HTTP 404 Not Found") as info:
        download.fetch(url, local_hint="pass weights_file=")
    assert url in str(info.value) and "weights_file=" in str(info.value) and "offline" not in str(info.value)
    assert _leftovers(cache) == []


def test_html_page_is_not_a_weights_file(server: str, cache: Path) -> None:
    url = f"{server}/page.h5"
    with pytest.raises(download.DownloadError, match=r"sent a text/html page, not a weights file") as info:
        download.fetch(url)
    assert url in str(info.value)
    assert _leftovers(cache) == []


def test_hash_mismatch_names_url_and_both_hashes(server: str, cache: Path) -> None:
    url = f"{server}/good.bin"
    expected = "0" * 64
    with pytest.raises(download.DownloadError) as info:
        download.fetch(url, sha256=expected)
    message = str(info.value)
    assert url in message and expected in message and SHA256 in message
    assert ".mobilenetv3" not in message and "staging" not in message and "nothing was cached" in message
    assert _leftovers(cache) == []


def test_cache_file_changed_after_download_is_refused(server: str, cache: Path) -> None:
    url = f"{server}/good.bin"
    path = download.fetch(url)
    path.write_bytes(BODY[:-1] + b"!")  # tampered with, or a disk error
    with pytest.raises(download.DownloadError) as info:
        download.fetch(url)
    message = str(info.value)
    assert str(path) in message and "changed since it was downloaded" in message and f"Delete {path}" in message
    assert hashlib.sha256(path.read_bytes()).hexdigest() in message and SHA256 in message
    path.unlink()
    assert download.fetch(url).read_bytes() == BODY  # deleted: downloaded again


def test_file_put_in_the_cache_by_hand_is_recorded(server: str, cache: Path) -> None:
    cache.mkdir()
    (cache / "good.bin").write_bytes(b"my own copy")
    assert download.fetch(f"{server}/good.bin").read_bytes() == b"my own copy"
    assert (cache / "good.bin.sha256").read_text().split()[0] == hashlib.sha256(b"my own copy").hexdigest()
    (cache / "good.bin").write_bytes(b"changed")
    with pytest.raises(download.DownloadError, match="changed since it was downloaded"):
        download.fetch(f"{server}/good.bin")


def test_cache_with_a_wrong_published_hash_is_downloaded_again(server: str, cache: Path) -> None:
    cache.mkdir()
    (cache / "good.bin").write_bytes(b"stale")
    assert download.fetch(f"{server}/good.bin", sha256=SHA256).read_bytes() == BODY
    assert _leftovers(cache) == ["good.bin"]  # the published hash is the record


@pytest.fixture
def tiny_disk(tmp_path: Path) -> Iterator[Path]:
    """A real 64 KiB tmpfs, unmounted afterwards."""
    mount = tmp_path / "tiny"
    mount.mkdir()
    result = subprocess.run(
        ["mount", "-t", "tmpfs", "-o", "size=64k", "tmpfs", str(mount)], capture_output=True, text=True
    )
    if result.returncode:
        pytest.skip(f"cannot mount a 64 KiB tmpfs (needs root): {result.stderr.strip() or result.returncode}")
    try:
        yield mount
    finally:
        subprocess.run(["umount", str(mount)], check=False)


def test_full_disk_names_the_disk(server: str, tiny_disk: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    cache = tiny_disk / "cache"
    monkeypatch.setenv("MOBILENETV3_CACHE", str(cache))
    url = f"{server}/big.bin"
    with pytest.raises(download.DownloadError) as info:
        download.fetch(url)
    message = str(info.value)
    assert "is full" in message and str(cache) in message and url in message
    assert "offline" not in message.lower()
    assert _leftovers(cache) == []  # nothing half-written


# -- preset folders ------------------------------------------------------------------


@pytest.fixture(scope="module")
def preset(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A small backbone preset folder, written once; tests copy it."""
    from mobilenetv3 import MobileNetV3Backbone

    folder = tmp_path_factory.mktemp("presets") / "small"
    MobileNetV3Backbone.from_preset("mobilenet_v3_small", input_shape=(64, 64, 3)).save_to_preset(folder)
    return folder


def _copy(preset: Path, where: Path) -> Path:
    import shutil

    shutil.copytree(preset, where)
    return where


def _load(folder: Path):
    from mobilenetv3 import MobileNetV3Backbone

    return MobileNetV3Backbone.from_preset(str(folder))


def _one_clear_line(info: pytest.ExceptionInfo, *names: object) -> str:
    message = str(info.value)
    assert "\n" not in message, message
    for name in names:
        assert str(name) in message, (name, message)
    return message


def test_weights_link_leaving_the_folder_is_refused(preset: Path, tmp_path: Path) -> None:
    from mobilenetv3.presets.folders import PresetError

    folder = _copy(preset, tmp_path / "p")
    outside = tmp_path / "elsewhere" / "secret.h5"
    outside.parent.mkdir()
    (folder / "model.weights.h5").rename(outside)
    (folder / "model.weights.h5").symlink_to(outside)
    with pytest.raises(PresetError, match="outside the preset folder") as info:
        _load(folder)
    _one_clear_line(info, folder / "model.weights.h5", outside)
    from mobilenetv3 import MobileNetV3Backbone

    MobileNetV3Backbone.from_preset(str(folder), load_weights=False)  # nothing read: fine


def test_weights_link_inside_the_folder_is_followed(preset: Path, tmp_path: Path) -> None:
    folder = _copy(preset, tmp_path / "p")
    (folder / "store").mkdir()
    (folder / "model.weights.h5").rename(folder / "store" / "w.h5")
    (folder / "model.weights.h5").symlink_to(Path("store") / "w.h5")
    assert _load(folder).count_params() == _load(preset).count_params()


def test_hugging_face_snapshot_links_to_its_blobs(preset: Path, tmp_path: Path) -> None:
    """The hub cache layout: snapshots/<rev>/<file> -> ../../blobs/<hash>."""
    import numpy as np

    from mobilenetv3.presets.folders import PresetError

    repo = tmp_path / "hub" / "models--someone--mobilenet"
    snapshot = _copy(preset, repo / "snapshots" / "0123abcd")
    (repo / "blobs").mkdir()
    (snapshot / "model.weights.h5").rename(repo / "blobs" / "9f86d08")
    (snapshot / "model.weights.h5").symlink_to(Path("..") / ".." / "blobs" / "9f86d08")
    got, want = _load(snapshot).get_weights(), _load(preset).get_weights()
    assert all(np.array_equal(a, b) for a, b in zip(got, want))
    # a snapshot linking out of its repository's blobs is refused all the same
    stray = tmp_path / "hub" / "stray.h5"
    (repo / "blobs" / "9f86d08").rename(stray)
    (snapshot / "model.weights.h5").unlink()
    (snapshot / "model.weights.h5").symlink_to(stray)
    with pytest.raises(PresetError, match="outside the preset folder"):
        _load(snapshot)


def test_keras_cv_weights_missing_a_tensor(preset: Path, tmp_path: Path) -> None:
    import h5py

    from mobilenetv3 import weights
    from mobilenetv3.presets.folders import PresetError
    from mobilenetv3.weights import keras3_h5

    folder = _copy(preset, tmp_path / "p")
    path = folder / "model.weights.h5"
    with h5py.File(path, "r+") as f:
        del f["layers/batch_normalization_2/vars/0"]
    with pytest.raises(ValueError, match=r"lacking variable\(s\) \[0\]") as info:
        keras3_h5.read_groups(path)  # was: KeyError "Unable to synchronously open object"
    _one_clear_line(info, path, "layers/batch_normalization_2/vars")
    assert weights.detect_format(str(path)) is None  # was: the same KeyError
    with pytest.raises(PresetError, match=r"the file lacks weights: layer '\w+' has 3 of its 4 variables") as info:
        _load(folder)  # was: Keras' seven-line report
    _one_clear_line(info, path)


def test_flipped_keras_cv_file_says_corrupted(preset: Path, tmp_path: Path) -> None:
    from mobilenetv3.presets.folders import PresetError

    folder = _copy(preset, tmp_path / "p")
    path = folder / "model.weights.h5"
    data = bytearray(path.read_bytes())
    for index in range(96, 4096):  # the HDF5 metadata at the head of the file
        data[index] ^= 0xFF
    path.write_bytes(bytes(data))
    with pytest.raises(PresetError, match=r"the file is corrupted or truncated \(HDF5: .+\); download or save it again") as info:
        _load(folder)
    _one_clear_line(info, path)


def test_torchvision_file_with_one_key(tmp_path: Path) -> None:
    import torch

    from mobilenetv3 import weights

    path = tmp_path / "mobilenet_v3_small.pth"
    torch.save({"features.0.0.weight": torch.zeros(16, 3, 3, 3)}, path)
    with pytest.raises(ValueError, match="is not a whole torchvision MobileNetV3 state dict") as info:
        weights.read(str(path), "torchvision")  # was: "not enough values to unpack (expected at least 2, got 1)"
    message = _one_clear_line(info, path, "1 module(s)")
    assert "unpack" not in message


@pytest.mark.parametrize("layer", ["Dense", "Lambda"])
def test_dtype_that_is_a_layer_config(preset: Path, tmp_path: Path, layer: str) -> None:
    import json

    from mobilenetv3.presets.folders import PresetError

    folder = _copy(preset, tmp_path / "p")
    spec = json.loads((folder / "config.json").read_text())
    config = {"units": 3} if layer == "Dense" else {"function": {"class_name": "__lambda__", "config": {}}}
    spec["config"]["dtype"] = {"module": "keras.layers", "class_name": layer, "config": config, "registered_name": None}
    (folder / "config.json").write_text(json.dumps(spec))
    with pytest.raises(PresetError, match=rf'"config.dtype" is a \'{layer}\' config, not a dtype policy') as info:
        _load(folder)  # was: "Cannot convert '{layer}' to a mixed precision DTypePolicy"
    _one_clear_line(info, folder / "config.json")


def test_dtype_in_a_nested_config_is_named(tmp_path: Path) -> None:
    import json

    from mobilenetv3 import MobileNetV3ImageClassifier
    from mobilenetv3.presets.folders import PresetError

    folder = tmp_path / "classifier"
    MobileNetV3ImageClassifier.from_preset("mobilenet_v3_small", num_classes=3, input_shape=(64, 64, 3)).save_to_preset(
        folder
    )
    spec = json.loads((folder / "config.json").read_text())
    spec["config"]["backbone"]["config"]["dtype"] = 32
    (folder / "config.json").write_text(json.dumps(spec))
    with pytest.raises(PresetError, match=r'"config.backbone.config.dtype" is 32, not a dtype policy') as info:
        MobileNetV3ImageClassifier.from_preset(str(folder))
    _one_clear_line(info, folder / "config.json")
    spec["config"]["backbone"]["config"]["dtype"] = "mixed_float16"  # a policy name is fine
    (folder / "config.json").write_text(json.dumps(spec))
    assert MobileNetV3ImageClassifier.from_preset(str(folder)).backbone.dtype_policy.name == "mixed_float16"
