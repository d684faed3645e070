"""The local cluster launcher: `fleetserve up` starts, health-checks and supervises Redis,
Prometheus, the gateway replicas, nginx in front and the sidecars on one machine."""
