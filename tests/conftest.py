"""Shared test configuration.

The Azurite fixtures (``azurite``, ``azurite_factory``, ``processor``) come from the
``mizaic_processor.testing`` pytest plugin, registered by the package's ``pytest11`` entry point.
"""

from __future__ import annotations

import os

from hypothesis import HealthCheck, settings

# Deterministic and without per-example deadlines: examples that talk to Azurite take a variable
# few milliseconds on a busy CI machine. HYPOTHESIS_PROFILE=dev gives more, random examples.
settings.register_profile(
    "ci",
    deadline=None,
    derandomize=True,
    max_examples=50,
    print_blob=True,
    suppress_health_check=[HealthCheck.too_slow],
)
settings.register_profile("dev", deadline=None, max_examples=200)
settings.load_profile(os.environ.get("HYPOTHESIS_PROFILE", "ci"))
