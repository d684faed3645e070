"""The model repository: Triton's layout, config.pbtxt, version policy, loading and hot swap."""
