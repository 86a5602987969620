"""The HTTP side: /metrics, /healthz and what later endpoints hang off."""
