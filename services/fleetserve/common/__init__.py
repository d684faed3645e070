"""Settings, the metrics registry and the clock: shared plumbing without business logic."""
