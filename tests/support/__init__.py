"""Helpers shared by the test suites: real server processes and small generated models."""
