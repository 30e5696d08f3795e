"""``python -m bench.pipeline``: the whole benchmark, or ``--section NAME``."""

import sys

from bench.pipeline.main import main

sys.exit(main())
