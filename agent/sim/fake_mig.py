"""MIG and device numbering for the fake NVML: the calls that tell MIG devices apart."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from pynvml import NVMLError

from agent.nvml import NOT_FOUND
from agent.sim.scenarios import mig_uuid

MIG_SLOTS = 7  # an A100/H100 holds at most seven MIG devices


@dataclass(frozen=True)
class FakeMig:
    """One MIG device of a fake GPU."""

    parent_index: int
    slot: int
    profile: str  # 3g.40gb...

    @property
    def uuid(self) -> str:
        """A stable MIG UUID per GPU and slot."""
        return mig_uuid(self.parent_index, self.slot)


class MigCalls:
    """MIG mode, MIG device handles and minor numbers; mixed into FakeNvml."""

    def _dev(self, h: Any, feature: str | None = None) -> Any:
        raise NotImplementedError

    def nvmlDeviceGetMigMode(self, h: Any) -> list[int]:
        """Return the current and pending MIG mode: on when the scenario splits the GPU."""
        on = int(bool(self._dev(h, "mig").mig))
        return [on, on]

    def nvmlDeviceGetMaxMigDeviceCount(self, h: Any) -> int:
        """How many MIG slots the GPU has (0 with MIG off)."""
        return MIG_SLOTS if self._dev(h, "mig").mig else 0

    def nvmlDeviceGetMigDeviceHandleByIndex(self, h: Any, slot: int) -> FakeMig:
        """Return the MIG device in a slot, or raise NVML_ERROR_NOT_FOUND for an empty one."""
        g = self._dev(h, "mig")
        if slot >= len(g.mig):
            raise NVMLError(NOT_FOUND)
        return FakeMig(g.index, slot, g.mig[slot])

    def nvmlDeviceGetGpuInstanceId(self, h: FakeMig) -> int:
        """GPU instance id: the slot plus one."""
        return h.slot + 1

    def nvmlDeviceGetComputeInstanceId(self, h: FakeMig) -> int:
        """Compute instance id: one per GPU instance here."""
        return 0

    def nvmlDeviceGetMinorNumber(self, h: Any) -> int:
        """Return the /dev/nvidiaN number: the index here."""
        return int(self._dev(h).index)
