"""The gateway: one data plane, with thin REST and gRPC adapters in front of it."""
