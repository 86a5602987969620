"""Local inference workers: HTTP checks, engine metric mappings, the worker sampler, `probe`."""
