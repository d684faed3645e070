"""The ways to run the gateway: a local process (and, later, Ray Serve deployments)."""
