"""Shared fixtures: the golden fixture set (a copy of ../shared/golden) and its model, loaded once."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

GOLDEN = Path(__file__).parent / "data" / "golden"


@pytest.fixture(scope="session")
def golden_dir() -> Path:
    return GOLDEN


@pytest.fixture(scope="session")
def golden_manifest() -> dict:
    return json.loads((GOLDEN / "golden.json").read_text())


@pytest.fixture(scope="session")
def fixture_set():
    from unipixel.parity import FixtureSet

    return FixtureSet(GOLDEN)


@pytest.fixture(scope="session")
def golden_model(fixture_set):
    return fixture_set.model()


@pytest.fixture(scope="session")
def golden_processor():
    from unipixel.processing import UniPixelProcessor

    return UniPixelProcessor.from_pretrained(GOLDEN / "ckpt_tiny")
