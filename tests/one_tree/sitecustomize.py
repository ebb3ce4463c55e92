"""Tests import the firmware, the protocol and the host from one tree: this one.

An editable install maps ``cellguard``, ``cellguard.protocol`` and ``cellguard_fw``
onto the folders of the checkout it was made from; a test run in another checkout
(a second worktree on the same environment, a copy) would otherwise import those
from there while it reads board files, firmware sources and its own helpers from
here, and ``cellguard.paths.repo_root()`` would follow the installed package.

:func:`install` puts a finder right after the path finder (so a script that puts
a copy of the firmware first on ``sys.path`` still gets its copy), mapping the
three packages onto this tree, and sets ``CELLGUARD_ROOT`` to it. The root
``conftest.py`` calls it for the test process; as ``sitecustomize`` on
``PYTHONPATH`` (which :func:`install` sets) it does the same in every Python
subprocess a test starts (``python -m cellguard.cli ...``).
"""

from __future__ import annotations

import importlib.machinery
import importlib.util
import os
import sys
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[2]
HERE = str(Path(__file__).resolve().parent)


class OneTreeFinder:
    """``cellguard`` and ``cellguard_fw`` from :data:`ROOT`; ``cellguard.protocol``
    from the tree the loaded ``cellguard`` came from."""

    one_tree = True

    @staticmethod
    def find_spec(fullname: str, path: Any = None, target: Any = None) -> Any:
        if fullname == "cellguard":
            folder = ROOT / "host" / "cellguard"
        elif fullname == "cellguard_fw":
            folder = ROOT / "firmware" / "cellguard_fw"
        elif fullname == "cellguard.protocol":
            host = sys.modules.get("cellguard")
            if host is None or host.__file__ is None:
                return None
            folder = Path(host.__file__).resolve().parents[2] / "protocol"
        else:
            return None
        return importlib.util.spec_from_file_location(
            fullname, folder / "__init__.py", submodule_search_locations=[str(folder)])


def install() -> None:
    for name in ("cellguard", "cellguard_fw"):
        module = sys.modules.get(name)
        if module is not None and module.__file__ is not None \
                and ROOT not in Path(module.__file__).resolve().parents:
            raise ImportError(f"{name} was imported from {module.__file__} before the tests "
                              f"could import it from {ROOT}")
    if not any(getattr(f, "one_tree", False) for f in sys.meta_path):
        at = sys.meta_path.index(importlib.machinery.PathFinder) + 1
        sys.meta_path.insert(at, OneTreeFinder)  # type: ignore[arg-type]
    os.environ["CELLGUARD_ROOT"] = str(ROOT)
    paths = os.environ.get("PYTHONPATH", "").split(os.pathsep)
    if HERE not in paths:
        os.environ["PYTHONPATH"] = os.pathsep.join([HERE, *[p for p in paths if p]])


install()
