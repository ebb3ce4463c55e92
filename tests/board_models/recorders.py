"""Recorders that stand in for built-in modules while board code runs once:
``install()`` puts a ``micropython`` whose ``kbd_intr`` is logged (into
``machine.log``, in order with the pins) and a ``cellguard_fw.board_main`` whose
``run`` is logged, into ``sys.modules``; ``remove()`` takes them out again."""

import sys

import machine

_saved = {}


class _Recorder:
    pass


def _kbd_intr(c):
    machine.log.append(("kbd_intr", c))


def _run(*args, **kwargs):
    machine.log.append(("run",))


def install():
    import micropython

    mp = _Recorder()
    mp.kbd_intr = _kbd_intr
    mp.const = micropython.const
    bm = _Recorder()
    bm.run = _run
    for name, fake in (("micropython", mp), ("cellguard_fw.board_main", bm)):
        _saved[name] = sys.modules.get(name)
        sys.modules[name] = fake


def remove():
    for name in _saved:
        if _saved[name] is None:
            sys.modules.pop(name, None)
        else:
            sys.modules[name] = _saved[name]
    _saved.clear()
