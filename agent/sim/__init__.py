"""Simulators for what these machines lack: the inference worker and the GPU."""
