from google.protobuf.internal import containers as _containers
from google.protobuf import descriptor as _descriptor
from google.protobuf import message as _message
from collections.abc import Iterable as _Iterable, Mapping as _Mapping
from typing import ClassVar as _ClassVar, Optional as _Optional, Union as _Union

DESCRIPTOR: _descriptor.FileDescriptor

class TensorProfile(_message.Message):
    __slots__ = ("name", "mean", "std", "min", "max")
    NAME_FIELD_NUMBER: _ClassVar[int]
    MEAN_FIELD_NUMBER: _ClassVar[int]
    STD_FIELD_NUMBER: _ClassVar[int]
    MIN_FIELD_NUMBER: _ClassVar[int]
    MAX_FIELD_NUMBER: _ClassVar[int]
    name: str
    mean: _containers.RepeatedScalarFieldContainer[float]
    std: _containers.RepeatedScalarFieldContainer[float]
    min: _containers.RepeatedScalarFieldContainer[float]
    max: _containers.RepeatedScalarFieldContainer[float]
    def __init__(self, name: _Optional[str] = ..., mean: _Optional[_Iterable[float]] = ..., std: _Optional[_Iterable[float]] = ..., min: _Optional[_Iterable[float]] = ..., max: _Optional[_Iterable[float]] = ...) -> None: ...

class ClassScore(_message.Message):
    __slots__ = ("index", "score", "label")
    INDEX_FIELD_NUMBER: _ClassVar[int]
    SCORE_FIELD_NUMBER: _ClassVar[int]
    LABEL_FIELD_NUMBER: _ClassVar[int]
    index: int
    score: float
    label: str
    def __init__(self, index: _Optional[int] = ..., score: _Optional[float] = ..., label: _Optional[str] = ...) -> None: ...

class SampledTensor(_message.Message):
    __slots__ = ("name", "datatype", "shape", "raw")
    NAME_FIELD_NUMBER: _ClassVar[int]
    DATATYPE_FIELD_NUMBER: _ClassVar[int]
    SHAPE_FIELD_NUMBER: _ClassVar[int]
    RAW_FIELD_NUMBER: _ClassVar[int]
    name: str
    datatype: str
    shape: _containers.RepeatedScalarFieldContainer[int]
    raw: bytes
    def __init__(self, name: _Optional[str] = ..., datatype: _Optional[str] = ..., shape: _Optional[_Iterable[int]] = ..., raw: _Optional[bytes] = ...) -> None: ...

class PredictionRecord(_message.Message):
    __slots__ = ("schema_version", "record_id", "request_id", "item_index", "time_unix_ns", "model", "version", "route", "latency_seconds", "route_key", "protocol", "inputs", "top", "confidence", "sample")
    SCHEMA_VERSION_FIELD_NUMBER: _ClassVar[int]
    RECORD_ID_FIELD_NUMBER: _ClassVar[int]
    REQUEST_ID_FIELD_NUMBER: _ClassVar[int]
    ITEM_INDEX_FIELD_NUMBER: _ClassVar[int]
    TIME_UNIX_NS_FIELD_NUMBER: _ClassVar[int]
    MODEL_FIELD_NUMBER: _ClassVar[int]
    VERSION_FIELD_NUMBER: _ClassVar[int]
    ROUTE_FIELD_NUMBER: _ClassVar[int]
    LATENCY_SECONDS_FIELD_NUMBER: _ClassVar[int]
    ROUTE_KEY_FIELD_NUMBER: _ClassVar[int]
    PROTOCOL_FIELD_NUMBER: _ClassVar[int]
    INPUTS_FIELD_NUMBER: _ClassVar[int]
    TOP_FIELD_NUMBER: _ClassVar[int]
    CONFIDENCE_FIELD_NUMBER: _ClassVar[int]
    SAMPLE_FIELD_NUMBER: _ClassVar[int]
    schema_version: int
    record_id: str
    request_id: str
    item_index: int
    time_unix_ns: int
    model: str
    version: str
    route: str
    latency_seconds: float
    route_key: str
    protocol: str
    inputs: _containers.RepeatedCompositeFieldContainer[TensorProfile]
    top: _containers.RepeatedCompositeFieldContainer[ClassScore]
    confidence: float
    sample: _containers.RepeatedCompositeFieldContainer[SampledTensor]
    def __init__(self, schema_version: _Optional[int] = ..., record_id: _Optional[str] = ..., request_id: _Optional[str] = ..., item_index: _Optional[int] = ..., time_unix_ns: _Optional[int] = ..., model: _Optional[str] = ..., version: _Optional[str] = ..., route: _Optional[str] = ..., latency_seconds: _Optional[float] = ..., route_key: _Optional[str] = ..., protocol: _Optional[str] = ..., inputs: _Optional[_Iterable[_Union[TensorProfile, _Mapping]]] = ..., top: _Optional[_Iterable[_Union[ClassScore, _Mapping]]] = ..., confidence: _Optional[float] = ..., sample: _Optional[_Iterable[_Union[SampledTensor, _Mapping]]] = ...) -> None: ...

class FeedbackRecord(_message.Message):
    __slots__ = ("schema_version", "record_id", "request_id", "item_index", "label", "time_unix_ns", "replaced", "model", "version")
    SCHEMA_VERSION_FIELD_NUMBER: _ClassVar[int]
    RECORD_ID_FIELD_NUMBER: _ClassVar[int]
    REQUEST_ID_FIELD_NUMBER: _ClassVar[int]
    ITEM_INDEX_FIELD_NUMBER: _ClassVar[int]
    LABEL_FIELD_NUMBER: _ClassVar[int]
    TIME_UNIX_NS_FIELD_NUMBER: _ClassVar[int]
    REPLACED_FIELD_NUMBER: _ClassVar[int]
    MODEL_FIELD_NUMBER: _ClassVar[int]
    VERSION_FIELD_NUMBER: _ClassVar[int]
    schema_version: int
    record_id: str
    request_id: str
    item_index: int
    label: int
    time_unix_ns: int
    replaced: bool
    model: str
    version: str
    def __init__(self, schema_version: _Optional[int] = ..., record_id: _Optional[str] = ..., request_id: _Optional[str] = ..., item_index: _Optional[int] = ..., label: _Optional[int] = ..., time_unix_ns: _Optional[int] = ..., replaced: _Optional[bool] = ..., model: _Optional[str] = ..., version: _Optional[str] = ...) -> None: ...
