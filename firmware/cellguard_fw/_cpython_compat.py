"""CPython stand-ins for the MicroPython built-ins the firmware uses.

Only imported when ``micropython`` is missing, i.e. under CPython. It registers a
``micropython`` module whose ``const`` is the identity, so firmware modules import
unchanged. It is never deployed to a board.
"""

import sys
import types

_mp = types.ModuleType("micropython")
_mp.const = lambda value: value  # type: ignore[attr-defined]
_mp.kbd_intr = lambda chr: None  # type: ignore[attr-defined]
sys.modules["micropython"] = _mp
