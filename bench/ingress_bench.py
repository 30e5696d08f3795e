"""The pipeline benchmark (``bench/pipeline``): ``make bench``, ``ARGS=--section e2e`` for one part.

python bench/ingress_bench.py                      # everything, about 10 minutes
python bench/ingress_bench.py --quick              # the same sections, shorter
python bench/ingress_bench.py --section roles      # one section (repeatable)
python -m bench.pipeline --section e2e             # the same, as a module
"""

from __future__ import annotations

import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from bench.pipeline.main import main

if __name__ == "__main__":
    sys.exit(main())
