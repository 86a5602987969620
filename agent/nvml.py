"""The one owner of NVML: initialise once, shut down on exit, re-initialise after the driver."""

from __future__ import annotations

import functools
import importlib
import logging
import time
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass, field
from types import ModuleType
from typing import Any

import pynvml
from pynvml import NVMLError

from agent.store import Labels

log = logging.getLogger(__name__)

# pynvml error codes (stable in NVML's ABI); named here so the fake and the real module agree.
NOT_SUPPORTED, NOT_FOUND, FUNCTION_NOT_FOUND = 3, 6, 13  # NOT_FOUND: an empty MIG slot
UNINITIALIZED, DRIVER_NOT_LOADED, TIMEOUT, LIBRARY_NOT_FOUND = 1, 9, 10, 12
GPU_IS_LOST, RM_VERSION_MISMATCH = 15, 18
SESSION_DOWN = {UNINITIALIZED, DRIVER_NOT_LOADED, LIBRARY_NOT_FOUND, RM_VERSION_MISMATCH}


class GpuLost(Exception):
    """The GPU fell off the bus (NVML_ERROR_GPU_IS_LOST)."""


class NvmlDown(Exception):
    """NVML itself is gone (driver unloaded, library missing): re-initialise later."""


@dataclass(frozen=True)
class Device:
    """One GPU's handle, identity labels, and the fields it answered NotSupported for."""

    index: int
    handle: Any
    labels: Labels
    architecture: str = "unknown"  # hopper, ampere...: never mixed on one node, says the guide
    unsupported: set[str] = field(default_factory=set, compare=False)
    _labelled: dict[Labels, Labels] = field(default_factory=dict, compare=False, repr=False)

    def labelled(self, extra: Labels) -> Labels:
        """Return the GPU's labels plus extra ones, sorted once and remembered."""
        if not extra:
            return self.labels
        labels = self._labelled.get(extra)
        if labels is None:
            labels = self._labelled[extra] = tuple(sorted(self.labels + extra))
        return labels


Loader = Callable[[], Any]  # returns the pynvml module, or a fake with its call surface


def load_pynvml() -> ModuleType:
    """Import nvidia-ml-py's pynvml module."""
    return importlib.import_module("pynvml")


@functools.cache
def architecture_names() -> dict[int, str]:
    """Map NVML's architecture numbers to names, from the binding's NVML_DEVICE_ARCH_* constants."""
    prefix = "NVML_DEVICE_ARCH_"
    return {getattr(pynvml, n): n.removeprefix(prefix).lower() for n in dir(pynvml)
            if n.startswith(prefix) and isinstance(getattr(pynvml, n), int)}  # fmt: skip


def text(value: object) -> str:
    """Return an NVML string as str (older bindings answer bytes)."""
    return value.decode() if isinstance(value, bytes) else str(value)


class NvmlSession:
    """Holds NVML open and the device list; calls come through `field` and `guard`."""

    def __init__(self, loader: Loader = load_pynvml, retry_after: float = 30.0):
        self.loader = loader
        self.retry_after = retry_after
        self.nvml: Any = None
        self.devices: list[Device] = []
        self.error = ""
        self._next_try = 0.0

    @property
    def up(self) -> bool:
        """True while NVML is initialised."""
        return self.nvml is not None

    def open(self) -> bool:
        """Initialise NVML and list the GPUs; on failure remember why and when to retry."""
        if self.up:
            return True
        if time.monotonic() < self._next_try:
            return False
        self._next_try = time.monotonic() + self.retry_after
        try:
            nvml = self.loader()
            nvml.nvmlInit()
            self.devices = [self._device(nvml, i) for i in range(nvml.nvmlDeviceGetCount())]
        except (ImportError, OSError) as exc:
            self.error = f"NVML library not available: {exc}"
            return False
        except NVMLError as exc:
            self.error = f"NVML init failed: {exc}"
            return False
        self.nvml, self.error = nvml, ""
        models = Counter(dict(d.labels)["model"] for d in self.devices)
        log.info("NVML up: %s", ", ".join(f"{n} x {m}" for m, n in models.items()) or "no GPUs")
        return True

    @staticmethod
    def _device(nvml: Any, index: int) -> Device:
        handle = nvml.nvmlDeviceGetHandleByIndex(index)
        labels = {
            "gpu": str(index),
            "uuid": text(nvml.nvmlDeviceGetUUID(handle)),
            "model": text(nvml.nvmlDeviceGetName(handle)),
            "pci_bus_id": text(nvml.nvmlDeviceGetPciInfo(handle).busId).lower(),
        }
        try:
            arch = architecture_names().get(nvml.nvmlDeviceGetArchitecture(handle), "unknown")
        except NVMLError:  # drivers before 450
            arch = "unknown"
        return Device(index, handle, tuple(sorted(labels.items())), arch)

    def close(self) -> None:
        """Shut NVML down; safe to call twice."""
        nvml, self.nvml, self.devices = self.nvml, None, []
        if nvml is None:
            return
        try:
            nvml.nvmlShutdown()
        except NVMLError as exc:
            log.debug("nvmlShutdown: %s", exc)

    def lost_driver(self, exc: BaseException) -> None:
        """Drop the session after NVML itself failed; the next open() retries."""
        log.error("NVML went away (%s); re-initialising in %gs", exc, self.retry_after)
        self.close()
        self._next_try = time.monotonic() + self.retry_after


def classify(exc: NVMLError) -> Exception:
    """Map an NVMLError to GpuLost, NvmlDown or a plain 'field absent' LookupError."""
    code = exc.value
    if code == GPU_IS_LOST:
        return GpuLost(str(exc))
    if code in SESSION_DOWN:
        return NvmlDown(str(exc))
    return LookupError(str(exc))


def ask(dev: Device, key: str, call: Callable[..., Any], *args: Any) -> Any:
    """Read one NVML value of a GPU; None when it lacks the field (never a fake 0).

    A NotSupported answer holds for the session, so that field is not asked again: on real
    hardware each refused call is a driver round trip, and with the exception it raises,
    the dearest call of a round. So does a function this driver lacks (FunctionNotFound).
    """
    if key in dev.unsupported:
        return None
    try:
        return call(*args)
    except NVMLError as exc:
        if exc.value in (NOT_SUPPORTED, FUNCTION_NOT_FOUND):
            dev.unsupported.add(key)
            return None
        mapped = classify(exc)
        if isinstance(mapped, LookupError):
            return None
        raise mapped from exc
