import os

import torch
from hypothesis import HealthCheck, settings

# One profile for every property test: no per-example deadline (CI machines are slow and shared),
# and a fixed number of examples so the default suite's time is predictable.
settings.register_profile(
    "default", max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow]
)
settings.register_profile("thorough", max_examples=600, deadline=None)
settings.load_profile(os.environ.get("HYPOTHESIS_PROFILE", "default"))

# Two cores: keep each test process to the threads it has, so parallel jobs do not thrash.
torch.set_num_threads(min(2, torch.get_num_threads()))
