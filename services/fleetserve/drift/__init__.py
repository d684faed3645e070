"""Monitoring of what the served models do: live model quality once labels arrive (`quality`,
`windows`, `quality_monitor`) and input / output drift against each version's reference profile
(`features`, `profile`, `detectors`, `scoring`, `alerts`, `retrain`, `drift_monitor`); the
`fleetserve drift` sidecar (`service`) that reads the prediction and feedback streams (or the
gateway's local files: `file_source`). Never on the serving path."""
