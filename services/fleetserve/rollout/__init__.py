"""Progressive rollout: the plan per model, where it is stored, the router that applies it, and
the controller that moves it (shadow, canary steps, promote, rollback)."""
