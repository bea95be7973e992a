"""A Triton-layout model folder: ``<name>/config.pbtxt`` + ``<name>/<version>/model.onnx``.

``config.pbtxt`` is parsed with protobuf's ``text_format`` into the vendored Triton ``ModelConfig``
(:mod:`onnxplain.triton.model_config_pb2`; fields onnxplain does not read are skipped). Read:
``name`` (must match the folder, as Triton requires), ``max_batch_size`` (caps ``max_batch``),
``input[0].format`` (FORMAT_NCHW/NHWC → the layout), ``output[].label_filename`` (labels, one per
line, in the model folder) and ``version_policy``: ``latest`` (the default: the highest version),
``specific`` (the highest listed version present), ``all`` (the highest). Version folders are
positive integers; ``default_model_filename`` overrides ``model.onnx``.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from google.protobuf import text_format

from onnxplain.explainers.errors import InvalidArgument, InvalidModel
from onnxplain.explainers.model.config import read_labels
from onnxplain.explainers.model.provenance import METADATA, Origin
from onnxplain.explainers.model.sources import Found, confined
from onnxplain.triton import model_config_pb2 as triton_pb2

TRITON_CONFIG = "config.pbtxt"
_FORMATS = {triton_pb2.ModelInput.FORMAT_NCHW: "NCHW", triton_pb2.ModelInput.FORMAT_NHWC: "NHWC"}
_MAX_BATCH = 4096


@dataclass(frozen=True)
class TritonModel:
    """What a Triton model folder says: the version served, its model file, and the settings read."""

    version: int | None
    model_file: Path
    settings: Found | None


def read_config(path: Path) -> triton_pb2.ModelConfig:
    """Parse ``config.pbtxt``.

    Raises:
        InvalidArgument: the file is not valid protobuf text for a Triton ModelConfig.
    """
    config = triton_pb2.ModelConfig()
    try:
        text_format.Parse(confined(path).read_text(encoding="utf-8"), config, allow_unknown_field=True)
    except (OSError, UnicodeDecodeError, text_format.ParseError) as exc:
        raise InvalidArgument(TRITON_CONFIG, f"cannot parse {path.parent.name}/{TRITON_CONFIG}: {exc}") from exc
    return config


def versions(folder: Path) -> list[int]:
    """The version folders (positive integers) of a model folder, ascending (none if it cannot be listed)."""
    try:
        children = list(folder.iterdir())
    except OSError:
        return []
    return sorted(int(child.name) for child in children
                  if child.is_dir() and child.name.isascii() and child.name.isdigit() and int(child.name) > 0)


def choose_version(available: list[int], policy: triton_pb2.ModelVersionPolicy) -> int:
    """The version to serve under ``policy`` (onnxplain serves one version: the highest allowed).

    Raises:
        InvalidModel: no version folder, or none that the policy allows.
    """
    if not available:
        raise InvalidModel("no version folder (<name>/<version>/model.onnx) and no model.onnx")
    if policy.WhichOneof("policy_choice") == "specific":
        allowed = [v for v in available if v in set(policy.specific.versions)]
        if not allowed:
            raise InvalidModel(f"version_policy specific {list(policy.specific.versions)} names no version present; "
                               f"present: {available}", field="version_policy")
        return allowed[-1]
    return available[-1]


def model_file_name(config: triton_pb2.ModelConfig | None, default: str) -> str:
    name = config.default_model_filename if config is not None and config.default_model_filename else default
    if Path(name).name != name:
        raise InvalidArgument("default_model_filename", f"{name!r}; allowed: a file name inside the version folder")
    return name


def settings(config: triton_pb2.ModelConfig, folder: Path) -> Found:
    """The settings ``config.pbtxt`` gives, as a partial onnxplain config.

    Raises:
        InvalidModel: ``name`` differs from the folder's name.
        InvalidArgument: a ``label_filename`` outside the folder or unreadable.
    """
    if config.name and config.name != folder.name:
        raise InvalidModel(f"{TRITON_CONFIG} names the model {config.name!r} but its folder is {folder.name!r}",
                           field="name")
    values: dict = {}
    formats = [_FORMATS[i.format] for i in config.input if i.format in _FORMATS]
    if formats:
        values["layout"] = formats[0]
    if config.max_batch_size > 0:
        values["max_batch"] = min(config.max_batch_size, _MAX_BATCH)
    label_files = [o.label_filename for o in config.output if o.label_filename]
    if label_files:
        path = (folder / label_files[0]).resolve()
        if not path.is_relative_to(folder.resolve()):
            raise InvalidArgument("label_filename", f"{label_files[0][:80]!r} is outside the model's folder")
        values["labels"] = list(read_labels(path))
        scored = next(o.name for o in config.output if o.label_filename)
        values["output"] = scored
    return Found(Origin(METADATA, TRITON_CONFIG), values)


def read_model_folder(folder: Path, default_file: str) -> TritonModel:
    """Which file to load from a model folder: ``<folder>/<default_file>`` when present (onnxplain's flat
    layout), else the chosen version's; and what ``config.pbtxt`` (if any) says."""
    config_path = folder / TRITON_CONFIG
    config = read_config(config_path) if config_path.is_file() else None
    found = settings(config, folder) if config is not None else None
    name = model_file_name(config, default_file)
    if (folder / name).is_file() and not versions(folder):
        return TritonModel(None, folder / name, found)
    version = choose_version([v for v in versions(folder) if (folder / str(v) / name).is_file()],
                             config.version_policy if config is not None else triton_pb2.ModelVersionPolicy())
    return TritonModel(version, folder / str(version) / name, found)


def is_model_folder(folder: Path, default_file: str) -> bool:
    """A flat model folder, or a Triton one (a version folder holding an ``.onnx`` file)."""
    if (folder / default_file).is_file():
        return True
    return folder.is_dir() and any(path.suffix == ".onnx" for v in versions(folder) for path in (folder / str(v)).iterdir())
