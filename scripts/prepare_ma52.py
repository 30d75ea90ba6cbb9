#!/usr/bin/env python
"""Verify a downloaded MA-52 release and transcode it to a fast cache in the official layout.

    python scripts/prepare_ma52.py /data/MA-52                       # verify only
    python scripts/prepare_ma52.py /data/MA-52 /fast/ma52_256        # verify + cache (short side 256)
    python train.py experiment=ma52_manet data.root=/fast/ma52_256

A rerun of the same command continues where an interrupted (or killed) one stopped.
Exit status: 0 all good, 1 problems in the source (listed in the report), 2 stopped
(bad arguments, a list name or link leading outside SOURCE, a destination that is
read-only, full or holds a file this tool did not write), 130 interrupted.
See docs/data_preparation.md.
"""

from __future__ import annotations

import sys
from pathlib import Path

try:
    from microaction.data.prepare import main
except ImportError:
    # Lets the script run from a plain checkout without installing the package.
    sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "src"))
    from microaction.data.prepare import main

if __name__ == "__main__":
    sys.exit(main())
