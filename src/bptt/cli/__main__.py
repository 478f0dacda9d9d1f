"""`python -m bptt.cli ARGS` runs `bptt ARGS`."""

import sys

from . import main

sys.exit(main())
