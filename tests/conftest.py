"""Shared test settings: deterministic seeds and a Hypothesis profile that suits a 2-core CI machine."""

import pytest
import torch
from hypothesis import settings

settings.register_profile("course", max_examples=60, deadline=None)
settings.load_profile("course")


@pytest.fixture(autouse=True)
def seed() -> None:
    torch.manual_seed(0)
