"""The prediction log: records, sinks (Redis Streams; a local file sink), the Parquet writer."""
