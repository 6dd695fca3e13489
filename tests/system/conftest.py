"""The browser the system tests share, one a module."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pytest

from tests.browsers import launched


@pytest.fixture(scope="module")
def browser() -> Iterator[Any]:
    yield from launched()
