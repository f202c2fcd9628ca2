"""Fixtures for the CIM document layer tests: the official specs and the Statnett samples."""

from __future__ import annotations

from pathlib import Path

import pytest

from tests.conftest import require


@pytest.fixture(scope="session")
def cim_specs(specs: Path) -> Path:
    """The official CIM schemas and samples (../shared/specs/cim, see its SOURCE.md)."""
    path = specs / "cim"
    require((path / "esmp").is_dir(), f"official CIM specs not found at {path} (GRIDGATE_SPECS)")
    return path


@pytest.fixture(scope="session")
def statnett(cim_specs: Path) -> Path:
    """Statnett's mFRR example documents (samples/SOURCE.md)."""
    return cim_specs / "samples" / "esmp" / "statnett-mfrr"
