"""comicgen: turn a story written as YAML into comic pages."""

import os as _os

__version__ = "0.1.0"

# PyTorch's CPU threads spin while they wait for work. When another busy process
# shares the cores (a second render, a browser, a build), spinning threads slow a
# render down by a factor of 100 or more (measured: 0.13 s → 18 s per tiny panel on
# 2 cores with one other busy process). Passive waiting costs little when the machine
# is idle. Only effective when set before torch is imported; a value the person set
# wins.
_os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")
