"""Building blocks of the config sections: the frozen section base and durations."""

from __future__ import annotations

import re
from typing import Annotated

from pydantic import AfterValidator, BaseModel, BeforeValidator, ConfigDict, Field

from agent.durations import parse_duration

Duration = Annotated[float, BeforeValidator(parse_duration), Field(ge=0)]


def check_regex(value: str) -> str:
    """Refuse a regular expression that does not compile, naming why."""
    try:
        re.compile(value)
    except re.error as exc:
        raise ValueError(f"invalid regular expression: {exc}") from None
    return value


Regex = Annotated[str, AfterValidator(check_regex)]


class Section(BaseModel):
    """Base of every section: frozen, unknown keys refused."""

    model_config = ConfigDict(frozen=True, extra="forbid")
