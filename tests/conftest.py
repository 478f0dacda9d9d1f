import os

import torch
from hypothesis import settings

# Without a GPU the Triton kernels run in Triton's interpreter on CPU tensors (tests marked
# gpu_interpret); it must be chosen before the kernels are first imported.
if not torch.cuda.is_available():
    os.environ.setdefault("TRITON_INTERPRET", "1")

# Two workers on two cores: one thread each keeps the suite from oversubscribing the machine.
torch.set_num_threads(1)
settings.register_profile("ci", max_examples=25, deadline=None, derandomize=True)
settings.load_profile(os.environ.get("HYPOTHESIS_PROFILE", "ci"))
