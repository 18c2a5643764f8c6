"""Fixtures of the plugin tests."""

from __future__ import annotations

from collections.abc import Callable

import pytest


@pytest.fixture
def fail_next_cholesky(monkeypatch: pytest.MonkeyPatch) -> Callable[[], list[int]]:
    """A function that makes ``torch.linalg.cholesky_ex`` report its next factorization as failed (as for a
    covariance that is not numerically positive definite) and work after; it returns a list that gets an entry
    when the failure was served."""
    torch = pytest.importorskip("torch")

    def arm() -> list[int]:
        failed: list[int] = []
        real = torch.linalg.cholesky_ex

        def failing_once(a, **kw):
            factor, info = real(a, **kw)
            if not failed:
                failed.append(1)
                return factor, torch.ones_like(info)
            return factor, info

        monkeypatch.setattr(torch.linalg, "cholesky_ex", failing_once)
        return failed

    return arm
