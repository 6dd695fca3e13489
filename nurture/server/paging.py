"""Pages of a long admin list: which page the URL asks for, and links to its neighbours that keep the
URL's other parameters, so that a filtered view stays filtered as one pages through it."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from urllib.parse import urlencode

from nurture.errors import InputError

PER_PAGE = 50


def whole_number(params: Mapping[str, str], name: str, least: int | None = None) -> int | None:
    """The integer parameter `name`, None when absent or empty; InputError naming it otherwise."""
    raw = params.get(name, "").strip()
    if not raw:
        return None
    try:
        value = int(raw)
    except ValueError:
        raise InputError(f"{name}: expected a whole number, got {raw!r}") from None
    if least is not None and value < least:
        raise InputError(f"{name}: must be at least {least}, got {value}")
    return value


def page_wanted(params: Mapping[str, str]) -> int:
    """The page the URL asks for, from 1."""
    return whole_number(params, "page", least=1) or 1


def offset_of(params: Mapping[str, str], size: int = PER_PAGE) -> int:
    """How many rows come before the page the URL asks for."""
    return (page_wanted(params) - 1) * size


@dataclass(frozen=True)
class Paging:
    """Page `number` (from 1) of `total` rows, `size` a page, reached at `path` with `params`."""

    number: int
    total: int
    path: str
    params: tuple[tuple[str, str], ...]
    size: int = PER_PAGE

    @classmethod
    def of(cls, path: str, params: Mapping[str, str], total: int, size: int = PER_PAGE) -> Paging:
        return cls(page_wanted(params), total, path, tuple((key, value) for key, value in params.items() if value),
                   size)

    @property
    def pages(self) -> int:
        return max(1, -(-self.total // self.size))

    @property
    def first_row(self) -> int:
        return min((self.number - 1) * self.size + 1, self.total)

    @property
    def last_row(self) -> int:
        return min(self.number * self.size, self.total)

    @property
    def previous(self) -> str | None:
        return self.link(self.number - 1) if self.number > 1 else None

    @property
    def next(self) -> str | None:
        return self.link(self.number + 1) if self.number < self.pages else None

    def link(self, number: int, **changes: str) -> str:
        """This list's URL at page `number`, with `changes` to its parameters (an empty value drops one)."""
        params = {key: value for key, value in self.params if key != "page"} | changes
        if number > 1:
            params["page"] = str(number)
        query = urlencode([(key, value) for key, value in params.items() if value])
        return f"{self.path}?{query}" if query else self.path
