"""Built gradient graphs on disk, so that a restarted process does not build them again.

Building a gradient graph is the first request's latency (0.1–2 s; more before the builder
stopped copying weights). The cache keeps each built graph in one file named by its key, the
SHA-256 of: the model's content (:func:`model_digest`), the variant's fields, the input shape,
the versions of onnx and onnxruntime and the builder's own source (:func:`builder_fingerprint`:
the code under ``autodiff/`` and ``graph/``, so an edited rule in a source checkout, whose
package version does not change, never reads a graph the old rule built).

**Never trusted blindly.** An entry is a JSON header line — the key, the payload's SHA-256 and
length, and the graph's input/output names — then the serialized graph. It is used only if the
header parses, names the key asked for, the payload's length and digest match, the graph parses,
and its inputs and outputs are exactly those the header names; anything else (a torn write, a
flipped bit, a file from another version) is deleted and the graph rebuilt. The folder is created
private (0700) and not used when another user owns it or others may write to it, since the
checks above detect corruption, not a crafted entry.

**Writes are atomic** (a temporary file in the folder, then ``os.replace``): concurrent writers
of one key each leave a whole entry, and a reader sees an old whole entry or a new whole one.
**Bounded:** after each write the least recently used entries (by modification time, touched on
every hit) are deleted beyond ``max_bytes``; an entry larger than the bound is not written.

Configuration: ``ONNXPLAIN_GRAPH_CACHE`` names the folder (``off`` or empty: no cache), default
``$XDG_CACHE_HOME/onnxplain/graphs`` (``~/.cache/onnxplain/graphs``); ``ONNXPLAIN_GRAPH_CACHE_BYTES``
the bound (default 2 GiB). The server's ``--graph-cache`` flag sets the folder.
"""

from __future__ import annotations

import functools
import hashlib
import json
import logging
import os
import stat
import tempfile
import time
from collections.abc import Mapping
from dataclasses import dataclass
from importlib import metadata
from pathlib import Path

import onnx
import onnxruntime as ort

from ..graph.skeleton import skeleton

FOLDER_ENV = "ONNXPLAIN_GRAPH_CACHE"
BYTES_ENV = "ONNXPLAIN_GRAPH_CACHE_BYTES"
DEFAULT_MAX_BYTES = 2 * 2**30
_FORMAT = "onnxplain-graph-cache/1"
_SUFFIX = ".graph"
STALE_TEMPORARY_S = 3600.0
"""A temporary file this old is a dead writer's: deleted at the next eviction."""
_log = logging.getLogger(__name__)


def _version(package: str) -> str:
    try:
        return metadata.version(package)
    except metadata.PackageNotFoundError:
        return "unknown"


@functools.cache
def builder_fingerprint() -> str:
    """SHA-256 of the source of the code that builds gradient graphs (``autodiff/`` and ``graph/``), read once."""
    root = Path(__file__).resolve().parent.parent
    digest = hashlib.sha256()
    for path in sorted([*root.joinpath("autodiff").rglob("*.py"), *root.joinpath("graph").rglob("*.py")]):
        digest.update(path.relative_to(root).as_posix().encode())
        digest.update(path.read_bytes())
    return digest.hexdigest()


def model_digest(model: onnx.ModelProto) -> str:
    """SHA-256 of ``model``'s content: its skeleton (nodes, small tensors, declared weights), its
    local functions and sparse initializers, and every large initializer's bytes, without
    serializing the whole model."""
    digest = hashlib.sha256(skeleton(model).SerializeToString(deterministic=True))
    for part in [*model.functions, *model.graph.sparse_initializer]:
        digest.update(part.SerializeToString(deterministic=True))
    for tensor in model.graph.initializer:
        digest.update(tensor.name.encode())
        digest.update(tensor.raw_data if tensor.HasField("raw_data") else tensor.SerializeToString(deterministic=True))
    return digest.hexdigest()


def cache_key(model_hash: str, variant: Mapping[str, object], input_shape: tuple[int, ...]) -> str:
    """The key of a graph: model content, variant fields, input shape and library versions."""
    parts = {"model": model_hash, "variant": dict(variant), "input_shape": list(input_shape),
             "onnxplain": _version("onnxplain"),
             "builder": builder_fingerprint(), "onnx": onnx.__version__, "onnxruntime": ort.__version__}
    return hashlib.sha256(json.dumps(parts, sort_keys=True, default=str).encode()).hexdigest()


@dataclass(frozen=True)
class Entry:
    """What a hit returns: the graph and the metadata stored with it."""

    model: onnx.ModelProto
    meta: dict


class GraphCache:
    """Graphs by key in ``folder``, at most ``max_bytes`` of them (see the module docstring)."""

    def __init__(self, folder: str | Path, *, max_bytes: int = DEFAULT_MAX_BYTES):
        self.folder = Path(folder).expanduser()
        self.max_bytes = max_bytes

    @classmethod
    def from_environment(cls) -> GraphCache | None:
        """The cache the environment configures, or None when it is turned off or its folder is unsafe."""
        configured = os.environ.get(FOLDER_ENV)
        if configured is not None and configured.strip().lower() in ("", "off", "none", "0"):
            return None
        if configured:
            folder = Path(configured)
        else:
            folder = Path(os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache") / "onnxplain" / "graphs"
        try:
            max_bytes = int(os.environ.get(BYTES_ENV, DEFAULT_MAX_BYTES))
        except ValueError:
            _log.warning("%s is not a number of bytes; using %d", BYTES_ENV, DEFAULT_MAX_BYTES)
            max_bytes = DEFAULT_MAX_BYTES
        cache = cls(folder, max_bytes=max_bytes)
        return cache if cache.usable() else None

    def usable(self) -> bool:
        """Create the folder (0700) if needed; False when it cannot be, or is not private to this user."""
        try:
            self.folder.mkdir(mode=0o700, parents=True, exist_ok=True)
            info = self.folder.stat()
        except OSError as exc:
            _log.warning("graph cache %s unusable (%s); graphs are built on every start", self.folder, exc)
            return False
        if (hasattr(os, "getuid") and info.st_uid != os.getuid()) or info.st_mode & (stat.S_IWGRP | stat.S_IWOTH):
            _log.warning("graph cache %s is writable by others or owned by another user; not used", self.folder)
            return False
        return True

    def _path(self, key: str) -> Path:
        return self.folder / f"{key}{_SUFFIX}"

    def load(self, key: str) -> Entry | None:
        """The entry stored under ``key`` if it passes every check; a failing one is deleted."""
        path = self._path(key)
        try:
            data = path.read_bytes()
        except OSError:
            return None
        entry = _parse(data, key)
        if entry is None:
            _log.warning("graph cache entry %s is corrupt or stale; rebuilding it", path.name)
            path.unlink(missing_ok=True)
            return None
        try:
            os.utime(path)  # recently used: evicted last
        except OSError:
            pass
        return entry

    def store(self, key: str, model: onnx.ModelProto, meta: Mapping[str, object]) -> bool:
        """Write the entry atomically; False (nothing written) when it exceeds the bound or the disk refuses."""
        payload = model.SerializeToString()
        header = {"format": _FORMAT, "key": key, "sha256": hashlib.sha256(payload).hexdigest(),
                  "bytes": len(payload), "inputs": [v.name for v in model.graph.input],
                  "outputs": [v.name for v in model.graph.output], "meta": dict(meta)}
        data = json.dumps(header).encode() + b"\n" + payload
        if len(data) > self.max_bytes:
            return False
        temporary = None
        try:
            self.folder.mkdir(mode=0o700, parents=True, exist_ok=True)
            with tempfile.NamedTemporaryFile(dir=self.folder, prefix=".tmp-", suffix=_SUFFIX, delete=False) as out:
                temporary = Path(out.name)
                out.write(data)
                out.flush()
                os.fsync(out.fileno())
            os.replace(temporary, self._path(key))
        except OSError as exc:
            _log.warning("cannot write graph cache entry %s: %s", key, exc)
            if temporary is not None:
                temporary.unlink(missing_ok=True)
            return False
        self._evict(keep=self._path(key))
        return True

    def _evict(self, *, keep: Path) -> None:
        """Delete least recently used entries beyond ``max_bytes`` (never ``keep``), and temporary
        files older than :data:`STALE_TEMPORARY_S` (left by a process killed mid-write); younger ones
        (a write in progress) neither count nor go."""
        entries = []
        for path in self.folder.glob(f"*{_SUFFIX}"):
            try:
                info = path.stat()
            except OSError:  # deleted meanwhile by another process
                continue
            if path.name.startswith(".tmp-"):
                if time.time() - info.st_mtime > STALE_TEMPORARY_S:
                    path.unlink(missing_ok=True)
                continue
            entries.append((info.st_mtime, info.st_size, path))
        total = sum(size for _, size, _ in entries)
        for _, size, path in sorted(entries):
            if total <= self.max_bytes:
                return
            if path == keep:
                continue
            path.unlink(missing_ok=True)
            total -= size


def _parse(data: bytes, key: str) -> Entry | None:
    """An entry from a file's bytes, or None when any check fails."""
    newline = data.find(b"\n")
    if newline < 0:
        return None
    try:
        header = json.loads(data[:newline])
    except ValueError:
        return None
    payload = data[newline + 1:]
    if (not isinstance(header, dict) or header.get("format") != _FORMAT or header.get("key") != key
            or header.get("bytes") != len(payload) or header.get("sha256") != hashlib.sha256(payload).hexdigest()):
        return None
    model = onnx.ModelProto()
    try:
        model.ParseFromString(payload)
    except Exception:  # a DecodeError, or anything else the parser raises on garbage
        return None
    if ([v.name for v in model.graph.input] != header.get("inputs")
            or [v.name for v in model.graph.output] != header.get("outputs") or not model.graph.node):
        return None
    return Entry(model, header.get("meta") or {})
