"""Shared pytest settings: tests are marked by the folder they live in."""

from __future__ import annotations

from pathlib import Path

import pytest

HERE = Path(__file__).parent


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    for item in items:
        folder = Path(str(item.fspath)).relative_to(HERE).parts[0]
        if folder in ("unit", "integration") and not item.get_closest_marker(folder):
            item.add_marker(getattr(pytest.mark, folder))
