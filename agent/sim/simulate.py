"""gpu.simulate: simulated GPUs on the NVML stand-in where it is built, else on the fake."""

from __future__ import annotations

import ctypes
import json
import os
from pathlib import Path
from typing import Any

import pynvml

from agent.config import Config
from agent.nvml import Loader
from agent.sim.fake_nvml import FakeNvml
from agent.sim.scenarios import scenario

SHIM = "build/nvml-shim/libnvidia-ml.so.1"


def shim_path() -> Path | None:
    """Return the built NVML stand-in: $NVML_SHIM_LIBRARY, or make nvml-shim's in a checkout."""
    named = os.environ.get("NVML_SHIM_LIBRARY")
    path = Path(named) if named else Path(__file__).resolve().parents[2] / SHIM
    return path if path.is_file() else None


def on_shim(shim: Path, spec: dict[str, Any], where: Path) -> Any:
    """Load pynvml on the stand-in with this scenario (written to `where`)."""
    where.parent.mkdir(parents=True, exist_ok=True)
    where.write_text(json.dumps(spec))
    os.environ["NVML_SHIM_CONFIG"] = str(where)  # read by the stand-in at each nvmlInit
    ctypes.CDLL(str(shim), mode=ctypes.RTLD_GLOBAL)  # pynvml's dlopen by soname finds it loaded
    return pynvml


def simulated_nvml(cfg: Config) -> Loader | None:
    """Return the loader of simulated GPUs when gpu.simulate asks for them, else None (NVML).

    On the NVML stand-in where it is built, so the agent's real NVML path runs; else the fake.
    """
    gpu = cfg.gpu
    if not gpu.simulate:
        return None
    spec = scenario(gpu.simulate, gpu.scenario)
    shim = shim_path()
    if shim is None:
        return lambda: FakeNvml.from_spec(spec)
    where = cfg.agent.state_dir / "simulated-gpus.json"
    return lambda: on_shim(shim, spec, where)
