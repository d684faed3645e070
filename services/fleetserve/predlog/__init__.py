"""The prediction log: one record per answered item, sent off the request path.

`PredictionLog` (log.py) is what the gateway holds: `submit` after each answered request,
`lookup` / `record_feedback` for the feedback API. Records go to a sink: Redis Streams
(redis_sink.py, with a local spill file while Redis is unreachable) or, without Redis, local
files (file_sink.py). The writer sidecar (writer.py) turns the streams into Parquet, and
join.py joins predictions with their latest label.
"""
