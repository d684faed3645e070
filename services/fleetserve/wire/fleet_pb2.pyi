from google.protobuf import descriptor as _descriptor
from google.protobuf import message as _message
from typing import ClassVar as _ClassVar, Optional as _Optional

DESCRIPTOR: _descriptor.FileDescriptor

class PredictionRecord(_message.Message):
    __slots__ = ("record_id", "request_id", "item_index", "time_unix_ns", "model", "version", "route", "latency_seconds", "route_key")
    RECORD_ID_FIELD_NUMBER: _ClassVar[int]
    REQUEST_ID_FIELD_NUMBER: _ClassVar[int]
    ITEM_INDEX_FIELD_NUMBER: _ClassVar[int]
    TIME_UNIX_NS_FIELD_NUMBER: _ClassVar[int]
    MODEL_FIELD_NUMBER: _ClassVar[int]
    VERSION_FIELD_NUMBER: _ClassVar[int]
    ROUTE_FIELD_NUMBER: _ClassVar[int]
    LATENCY_SECONDS_FIELD_NUMBER: _ClassVar[int]
    ROUTE_KEY_FIELD_NUMBER: _ClassVar[int]
    record_id: str
    request_id: str
    item_index: int
    time_unix_ns: int
    model: str
    version: str
    route: str
    latency_seconds: float
    route_key: str
    def __init__(self, record_id: _Optional[str] = ..., request_id: _Optional[str] = ..., item_index: _Optional[int] = ..., time_unix_ns: _Optional[int] = ..., model: _Optional[str] = ..., version: _Optional[str] = ..., route: _Optional[str] = ..., latency_seconds: _Optional[float] = ..., route_key: _Optional[str] = ...) -> None: ...
