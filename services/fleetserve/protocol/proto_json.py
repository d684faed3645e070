"""Protobuf messages as the JSON Triton's REST API answers: proto field names, numbers as numbers."""

from __future__ import annotations

from typing import Any

from google.protobuf import json_format
from google.protobuf.descriptor import FieldDescriptor
from google.protobuf.message import Message

_INT64 = {
    FieldDescriptor.TYPE_INT64,
    FieldDescriptor.TYPE_UINT64,
    FieldDescriptor.TYPE_SINT64,
    FieldDescriptor.TYPE_FIXED64,
    FieldDescriptor.TYPE_SFIXED64,
}


def to_dict(message: Message) -> dict[str, Any]:
    """The message as a dict, every field printed, 64-bit integers as JSON numbers."""
    raw = json_format.MessageToDict(
        message, preserving_proto_field_name=True, always_print_fields_with_no_presence=True
    )
    return _numbers(message.DESCRIPTOR, raw)


def _numbers(descriptor: Any, value: dict[str, Any]) -> dict[str, Any]:
    for key, item in value.items():
        field = descriptor.fields_by_name.get(key)
        if field is None:
            continue
        if field.message_type is not None and field.message_type.GetOptions().map_entry:
            vfield = field.message_type.fields_by_name["value"]
            if vfield.message_type is not None:
                value[key] = {k: _numbers(vfield.message_type, v) for k, v in item.items()}
            elif vfield.type in _INT64:
                value[key] = {k: int(v) for k, v in item.items()}
        elif field.message_type is not None:
            if isinstance(item, list):
                value[key] = [_numbers(field.message_type, v) for v in item]
            else:
                value[key] = _numbers(field.message_type, item)
        elif field.type in _INT64:
            value[key] = [int(v) for v in item] if isinstance(item, list) else int(item)
    return value
