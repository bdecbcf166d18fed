"""A missing tool or capability fails the suite under CI and only skips elsewhere."""

from __future__ import annotations

import pytest

from tests.harness.missing import unavailable


def test_missing_capability_fails_under_ci(monkeypatch):
    monkeypatch.setenv("CI", "1")
    with pytest.raises(pytest.fail.Exception, match="no namespaces here"):
        unavailable("no namespaces here")


def test_missing_capability_skips_outside_ci(monkeypatch):
    monkeypatch.delenv("CI", raising=False)
    with pytest.raises(pytest.skip.Exception, match="no namespaces here"):
        unavailable("no namespaces here")
