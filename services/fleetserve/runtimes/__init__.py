"""Model runtimes: one file per backend behind the `Runtime` protocol."""
