import os

import torch
from hypothesis import settings

# Two workers on two cores: one thread each keeps the suite from oversubscribing the machine.
torch.set_num_threads(1)
settings.register_profile("ci", max_examples=25, deadline=None, derandomize=True)
settings.load_profile(os.environ.get("HYPOTHESIS_PROFILE", "ci"))
