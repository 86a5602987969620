"""Threshold rules: schema, expressions, the state machine, and the Prometheus bridges."""
