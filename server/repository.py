"""The model repository: ``<root>/<name>/model.onnx`` + optional ``config.json``, or Triton's layout
``<root>/<name>/<version>/model.onnx`` + ``config.pbtxt`` (:mod:`.triton`: the highest version, or the
one its ``version_policy`` names), or ``<root>/<name>/remote.json``: a model served by an Open Inference
Protocol endpoint (:mod:`.remote`; black-box methods only). What the export and the files beside it say (labels, a Hugging Face
``preprocessor_config.json``, ...) is merged under the config (:mod:`onnxplain.explainers.model.sources`).

A folder whose ``config.json`` says ``{"kind": "companion"}`` holds a **companion model** (a generator, an
autoencoder: :mod:`onnxplain.explainers.model.companions`): it is loaded like the others but cannot be
explained; methods use it by name (``cdeepex``'s ``generator``), resolved by :meth:`ModelRepository.companion`.

A model that fails to load is kept with its reason (state FAILED) and never stops the server.
Paths are confined to the repository root: names are plain identifiers, symlinks may not escape
the root, and ONNX external-data files must stay inside the model's directory.
"""

from __future__ import annotations

import json
import logging
import re
import threading
from collections.abc import Callable
from dataclasses import dataclass
from enum import Enum
from pathlib import Path

import onnx
from onnx.external_data_helper import uses_external_data

from onnxplain.explainers import CompanionModel, ModelConfig, OnnxClassifier
from onnxplain.explainers.errors import (
    Cancelled,
    FailedPrecondition,
    InvalidArgument,
    InvalidModel,
    NotFound,
    OnnxplainError,
    PermissionDenied,
    Unavailable,
)
from onnxplain.explainers.model.companions import CompanionConfig, is_companion_config
from onnxplain.explainers.model.remote import RemoteClassifier
from onnxplain.explainers.model.sources import is_foreign_config, read_sources

from .model_guard import all_tensors, check_external_data_confined, check_tensor_sizes, refuse_external_data
from .remote import REMOTE_FILE, OipEndpoint, RemoteSpec
from .triton import is_model_folder, read_model_folder
from .warm_up import warm_up, warm_up_methods

log = logging.getLogger("onnxplain.server")

NAME_PATTERN = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,127}$")
MODEL_FILE = "model.onnx"
CONFIG_FILE = "config.json"


class State(str, Enum):
    UNLOADED = "unloaded"
    LOADING = "loading"
    READY = "ready"
    FAILED = "failed"


@dataclass
class Entry:
    """One model: where it comes from, its state, and the classifier (or the companion) once READY."""

    name: str
    directory: Path | None
    state: State = State.UNLOADED
    error: str = ""
    classifier: OnnxClassifier | None = None
    loading: bool = False
    """A (re)load is under way; a READY model keeps serving its current version meanwhile."""
    companion: CompanionModel | None = None
    """Set instead of ``classifier`` for a companion model (``"kind": "companion"``)."""

    @property
    def loaded(self) -> bool:
        return self.classifier is not None or self.companion is not None


def check_name(name: str, field: str = "model") -> str:
    if not NAME_PATTERN.match(name or ""):
        raise InvalidArgument(field, f"{name!r} is not a model name; allowed: letters, digits, '_', '.', '-' (max 128)")
    return name


def parse_model(data: bytes, what: str = "the uploaded bytes") -> onnx.ModelProto:
    """Bytes → ModelProto without reading any external data."""
    try:
        return onnx.load_model_from_string(data)
    except Exception as exc:
        raise InvalidModel(f"not an ONNX model: cannot parse {what} ({type(exc).__name__})") from exc


class ModelRepository:
    """Thread-safe registry of models. Loading is blocking: call it from a worker thread."""

    def __init__(self, root: Path | None, *, providers: list[str] | None = None, threads: int = 0,
                 allow_uploads: bool = False, max_tensor_bytes: int = 256 * 2**20, warm_up: tuple[str, ...] = ()):
        self.root = root.resolve() if root else None
        self.providers = providers
        self.threads = threads
        self.warm_up = warm_up_methods(warm_up)
        """Methods each loaded model explains a probe image with before it is READY (:mod:`.warm_up`)."""
        self.allow_uploads = allow_uploads
        self.max_tensor_bytes = max_tensor_bytes
        self._entries: dict[str, Entry] = {}
        self._lock = threading.Lock()
        self.scan()

    def scan(self) -> list[str]:
        """Register every ``<root>/<name>/`` with a model (or a ``remote.json``) not yet known; returns all names."""
        if self.root is None:
            return self.names()
        if not self.root.is_dir():
            raise InvalidArgument("models", f"model repository {self.root} is not a directory")
        with self._lock:
            for directory in sorted(self.root.iterdir()):
                if NAME_PATTERN.match(directory.name) and (is_model_folder(directory, MODEL_FILE)
                                                           or (directory / REMOTE_FILE).is_file()):
                    self._entries.setdefault(directory.name, Entry(directory.name, directory))
        return self.names()

    def names(self) -> list[str]:
        with self._lock:
            return sorted(self._entries)

    def entries(self) -> list[Entry]:
        with self._lock:
            return [self._entries[name] for name in sorted(self._entries)]

    def entry(self, name: str) -> Entry:
        with self._lock:
            entry = self._entries.get(name)
            if entry is None:
                raise NotFound("model", name, self._entries)
            return entry

    def get(self, name: str) -> OnnxClassifier:
        """The READY classifier ``name`` (its current version while a reload runs), or an error saying why
        it cannot serve."""
        entry = self.entry(name)
        classifier = entry.classifier
        if entry.state is State.READY and classifier is not None:
            return classifier
        if entry.companion is not None:
            raise FailedPrecondition(f"model {name!r} is a companion model {entry.companion.describe()}, not a "
                                     "classifier: methods use it by name (e.g. cdeepex's generator); it cannot be explained")
        self._refuse_unready(entry)
        raise FailedPrecondition(f"model {name!r} is not loaded; call LoadModel first")

    def companion(self, name: str) -> CompanionModel:
        """The READY companion model ``name``, for a method that names it in its parameters.

        Raises:
            NotFound: no model of that name (the message lists the companions loaded).
            FailedPrecondition: it is a classifier, failed to load or is not loaded. Unavailable: loading.
        """
        with self._lock:
            entry = self._entries.get(name)
            ready = [e.name for e in self._entries.values() if e.companion is not None and e.state is State.READY]
        if entry is None:
            raise NotFound("companion model", name, ready)
        if entry.companion is not None and entry.state is State.READY:
            return entry.companion
        if entry.classifier is not None:
            raise FailedPrecondition(f"model {name!r} is a classifier, not a companion model (a folder whose "
                                     "config.json says \"kind\": \"companion\"); companions loaded: "
                                     f"{', '.join(ready) or 'none'}")
        self._refuse_unready(entry)
        raise FailedPrecondition(f"companion model {name!r} is not loaded; call LoadModel first")

    @staticmethod
    def _refuse_unready(entry: Entry) -> None:
        """Raise why a model that is not READY cannot serve (loading, failed); return when merely unloaded."""
        name = entry.name
        if entry.state is State.LOADING:
            raise Unavailable(f"model {name!r} is still loading; retry shortly")
        if entry.state is State.FAILED:
            raise FailedPrecondition(f"model {name!r} failed to load: {entry.error}")

    def load(self, name: str, *, abandoned: Callable[[], bool] = lambda: False) -> Entry:
        """(Re)load ``name`` from the repository; on failure the entry is FAILED with the reason (a READY
        model keeps serving its current version). ``abandoned`` is asked once the new version is built:
        when it says so (the caller went away), nothing is swapped in."""
        check_name(name)
        if self.root is not None and name not in self.names():
            self.scan()
        entry = self.entry(name)
        if entry.directory is None:
            raise FailedPrecondition(f"model {name!r} was uploaded; upload it again to reload it")
        return self._load(entry, lambda: self._read_from_directory(entry.directory), abandoned)

    def load_bytes(self, name: str, data: bytes, config_json: str = "", *,
                   abandoned: Callable[[], bool] = lambda: False) -> Entry:
        """Register uploaded model bytes under ``name`` (only when uploads are enabled)."""
        if not self.allow_uploads:
            raise PermissionDenied("model uploads are disabled on this server (start it with --allow-uploads)")
        check_name(name)
        with self._lock:
            existing = self._entries.get(name)
            if existing is not None and existing.directory is not None:
                raise InvalidArgument("name", f"{name!r} is a repository model; choose another name for an upload")
            fresh = existing is None
            entry = self._entries.setdefault(name, Entry(name, None))

        def build() -> OnnxClassifier:
            raw = {}
            if config_json:
                try:
                    raw = json.loads(config_json)
                except json.JSONDecodeError as exc:
                    raise InvalidArgument("config_json", f"not valid JSON: {exc}") from exc
                if not isinstance(raw, dict):
                    raise InvalidArgument("config_json", "must be a JSON object")
                ModelConfig.from_dict(raw)  # its own errors first, before the model is parsed
            model = parse_model(data)
            config = read_sources(model, [], configured=raw, configured_detail="config_json")
            refuse_external_data(model)
            check_tensor_sizes(model, self.max_tensor_bytes)
            return OnnxClassifier(model, config=config, name=name, providers=self.providers, threads=self.threads)

        try:
            return self._load(entry, build, abandoned)
        except Exception:
            if fresh:  # a failed first upload leaves nothing behind
                with self._lock:
                    self._entries.pop(name, None)
            raise

    def unload(self, name: str) -> None:
        """Stop serving ``name`` (an uploaded model is forgotten). Refused while it loads: the load would
        otherwise swap its new version back in after the unload."""
        entry = self.entry(name)
        with self._lock:
            if entry.loading:
                raise Unavailable(f"model {name!r} is loading; unload it once the load has ended")
            entry.classifier, entry.companion = None, None
            entry.state, entry.error = State.UNLOADED, ""
            if entry.directory is None:
                del self._entries[name]

    def _load(self, entry: Entry, build: Callable[[], OnnxClassifier | CompanionModel],
              abandoned: Callable[[], bool]) -> Entry:
        """Build a new version off the lock, then swap it in atomically; a failure keeps a serving version."""
        with self._lock:
            if entry.loading:
                raise Unavailable(f"model {entry.name!r} is already loading")
            entry.loading = True
            if not entry.loaded:
                entry.state = State.LOADING
        try:
            built = build()
            if isinstance(built, OnnxClassifier):
                warm_up(built, self.warm_up, entry.name, abandoned=abandoned)
            if abandoned():
                raise Cancelled(f"loading {entry.name!r} was abandoned (the caller cancelled or its deadline "
                                "passed); nothing was swapped in")
        except Exception as exc:
            error = exc if isinstance(exc, OnnxplainError) else InvalidModel(f"{type(exc).__name__}: {exc}")
            with self._lock:
                entry.loading = False
                if entry.loaded:  # a failed reload keeps the old version serving
                    entry.state, entry.error = State.READY, f"the last reload failed: {error}"
                elif isinstance(exc, Cancelled):
                    entry.state, entry.error = State.UNLOADED, ""
                else:
                    entry.state, entry.error = State.FAILED, str(error)
            if error is exc:
                raise
            raise error from exc
        with self._lock:
            if isinstance(built, CompanionModel):
                entry.classifier, entry.companion = None, built
            else:
                entry.classifier, entry.companion = built, None
            entry.state, entry.error, entry.loading = State.READY, "", False
        for warning in () if entry.companion is not None else built.info.warnings:  # once per load; every
            log.warning("model %s: %s", entry.name, warning)  # result repeats it to its caller
        return entry

    def _read_from_directory(self, directory: Path) -> OnnxClassifier | CompanionModel:
        """Load ``<name>/model.onnx`` (or the served version's) with its config merged with what the export,
        ``config.pbtxt`` and the files beside the model say; those are looked for beside the model file,
        then in the model folder."""
        model_dir = self._confined(directory)
        if (model_dir / REMOTE_FILE).is_file():
            return self._read_remote(model_dir)
        companion = self._companion_config(model_dir)
        found = read_model_folder(model_dir, MODEL_FILE)
        model_path = self._confined(found.model_file)
        model_home = model_path.parent
        model = parse_model(model_path.read_bytes(), model_path.name)
        check_external_data_confined(model, model_home)
        if any(uses_external_data(t) for t in all_tensors(model.graph)):
            onnx.load_external_data_for_model(model, str(model_home))
        check_tensor_sizes(model, self.max_tensor_bytes)
        if companion is not None:
            return CompanionModel(model, name=directory.name, config=companion, providers=self.providers,
                                  threads=self.threads)
        folders = [model_home] if model_home == model_dir else [model_home, model_dir]
        configured = next((raw for raw in map(self._own_config, folders) if raw is not None), None)
        config = read_sources(model, folders, configured=configured, serving=found.settings)
        return OnnxClassifier(model, config=config, name=directory.name, providers=self.providers, threads=self.threads)

    def _read_remote(self, model_dir: Path) -> RemoteClassifier:
        """A model served elsewhere: ``remote.json`` says where, the folder's config and files what it is."""
        spec = RemoteSpec.from_folder(model_dir, self._confined)
        config = read_sources(onnx.ModelProto(), [model_dir], configured=self._own_config(model_dir))
        endpoint = OipEndpoint(spec)
        try:
            return RemoteClassifier(endpoint, config=config, name=model_dir.name)
        except BaseException:
            endpoint.close()
            raise

    def _companion_config(self, folder: Path) -> CompanionConfig | None:
        """The folder's companion ``config.json`` (``"kind": "companion"``), or None for a classifier."""
        path = folder / CONFIG_FILE
        if not path.is_file():
            return None
        try:
            raw = json.loads(self._confined(path).read_text(encoding="utf-8"))
        except (OSError, json.JSONDecodeError):
            return None  # _own_config reports it
        return CompanionConfig.from_dict(raw) if is_companion_config(raw) else None

    def _own_config(self, folder: Path) -> dict | None:
        """onnxplain's ``config.json`` in ``folder`` as a mapping (checked), or None (absent, or a timm or
        transformers model config, which is read as metadata instead)."""
        path = folder / CONFIG_FILE
        if not path.exists():
            return None
        try:
            raw = json.loads(self._confined(path).read_text(encoding="utf-8"))
        except (OSError, json.JSONDecodeError) as exc:
            raise InvalidArgument("config", f"cannot read {path.name}: {exc}") from exc
        if isinstance(raw, dict) and is_foreign_config(raw):
            return None
        config = ModelConfig.from_file(path)  # every error of a config of ours, with its field
        if isinstance(raw.get("labels"), str):
            raw["labels"] = list(config.labels or ())
        return raw

    def _confined(self, path: Path) -> Path:
        resolved = path.resolve()
        if self.root is not None and not resolved.is_relative_to(self.root):
            raise PermissionDenied(f"{path} resolves outside the model repository")
        return resolved

