"""Shared fixtures: where the official specs live, and the real services of this machine."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
IN_CI = os.environ.get("CI", "").lower() in {"1", "true", "yes"}


def specs_dir() -> Path:
    """The official schemas: GRIDGATE_SPECS, else ../shared/specs beside the checkout."""
    return Path(os.environ.get("GRIDGATE_SPECS", ROOT.parent / "shared" / "specs")).resolve()


def require(condition: bool, reason: str) -> None:
    """Skip a test whose service or file is missing, but only outside CI; in CI, fail."""
    if condition:
        return
    if IN_CI:
        pytest.fail(f"required in CI: {reason}")
    pytest.skip(reason)


@pytest.fixture(scope="session")
def specs() -> Path:
    path = specs_dir()
    require(
        (path / "uftp" / "3.1.0").is_dir(), f"official specs not found at {path} (GRIDGATE_SPECS)"
    )
    return path


def pytest_configure(config: pytest.Config) -> None:
    """Pin shapeshifter-uftp's XML parser to its own classes, for every test in the run.

    Its `transport.from_xml` parses without naming a class, so xsdata takes the most recently
    defined dataclass with the root element's name anywhere in the process: after gridgate is
    imported that is `gateway.model.FlexRequest` and friends, and the peer refuses every
    payload ("Xml Element does not support typing timedelta"). Pinning it here makes the
    interop tests independent of the order modules are imported in.
    """
    try:
        from shapeshifter_uftp import transport
    except ImportError:  # the test extra is not installed: the interop tests will say so
        return
    transport.parser.context.models_package = "shapeshifter_uftp"
    transport.parser.context.reset()
