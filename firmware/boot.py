"""Runs first on a board after every reset: keep it minimal so that a broken main.py can still be replaced.

Nothing here may raise: a crash in boot.py can lock mpremote out. All the work happens in main.py.
"""

import gc

gc.collect()
