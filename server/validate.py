"""Checks every request passes before any work: fields protobuf itself lets through.

Proto3 enums are open: an unknown number (``occlusion.baseline = 99``) decodes without complaint
and would reach the library as nothing it knows. A client's ``request_id`` is echoed in every
response, in error details and in log lines, so it is bounded and printable.
"""

from __future__ import annotations

from google.protobuf.descriptor import FieldDescriptor
from google.protobuf.message import Message

from onnxplain.explainers.errors import InvalidArgument, listing
from onnxplain.v1.wire import enum_short_names

from .errors import MAX_REQUEST_ID_CHARS


def check_request(message: Message) -> None:
    """Raise :class:`InvalidArgument` for the first bad enum value or ``request_id`` in ``message``."""
    request_id = getattr(message, "request_id", "")
    if len(request_id) > MAX_REQUEST_ID_CHARS or not request_id.isprintable():
        raise InvalidArgument("request_id", f"at most {MAX_REQUEST_ID_CHARS} printable characters "
                                            f"(got {len(request_id)} characters)")
    check_enums(message)


def check_enums(message: Message, path: str = "") -> None:
    """Every set enum field, at any depth, holds a value its enum declares."""
    for field, value in message.ListFields():
        name = f"{path}{field.name}"
        if field.type == FieldDescriptor.TYPE_ENUM:
            for number in (value if field.is_repeated else [value]):
                if number not in field.enum_type.values_by_number:
                    allowed = ["unspecified (0)", *enum_short_names(field.enum_type)]
                    raise InvalidArgument(name, f"{number} is not a {field.enum_type.name} value; allowed: "
                                                f"{listing(allowed)} (or their numbers)")
        elif field.type == FieldDescriptor.TYPE_MESSAGE and not field.message_type.GetOptions().map_entry:
            for item in (value if field.is_repeated else [value]):
                check_enums(item, f"{name}.")
