"""Monitoring of what the served models do: live model quality once labels arrive (`quality`,
`windows`, `quality_monitor`) and, later, input / output drift; the `fleetserve drift` sidecar
(`service`) that reads the prediction and feedback streams. Never on the serving path."""
