"""The tests import the firmware, the protocol and the host from one tree: the one
the tests themselves are in (tests/one_tree, loaded by the root conftest.py), in
this process and in the Python subprocesses they start."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
PACKAGES = ("cellguard", "cellguard.protocol", "cellguard_fw")

SHOW = ("import json, sys, cellguard, cellguard.protocol.codec, cellguard_fw.app, "
        "cellguard.paths as p; print(json.dumps({'files': [m.__file__ for n, m in "
        "sorted(sys.modules.items()) if n.split('.')[0] in ('cellguard', 'cellguard_fw') "
        "and getattr(m, '__file__', None)], 'root': str(p.repo_root())}))")


def inside(path: str | Path, root: Path = ROOT) -> bool:
    return root in Path(path).resolve().parents


def test_every_imported_module_lies_in_this_tree() -> None:
    import cellguard.protocol.codec  # noqa: F401 - the three packages, imported
    import cellguard_fw.app  # noqa: F401
    from cellguard import paths

    loaded = {name: m.__file__ for name, m in sys.modules.items()
              if name.split(".")[0] in ("cellguard", "cellguard_fw")
              and getattr(m, "__file__", None)}
    assert set(PACKAGES) <= set(loaded)
    elsewhere = {name: f for name, f in loaded.items() if not inside(f)}
    assert elsewhere == {}, f"imported from outside {ROOT}"
    assert Path(sys.modules["cellguard.protocol"].__file__ or "").parent == ROOT / "protocol"
    assert paths.repo_root().resolve() == ROOT
    assert paths.boards_dir().resolve() == ROOT / "boards"
    assert paths.firmware_dir().resolve() == ROOT / "firmware"


def test_a_python_subprocess_imports_from_this_tree_too() -> None:
    proc = subprocess.run([sys.executable, "-c", SHOW], capture_output=True, text=True,
                          timeout=120, cwd="/")
    assert proc.returncode == 0, proc.stderr
    shown = json.loads(proc.stdout)
    assert len(shown["files"]) >= 5
    assert [f for f in shown["files"] if not inside(f)] == []
    assert Path(shown["root"]).resolve() == ROOT


def test_a_copy_of_the_tree_tests_its_own_code(tmp_path: Path) -> None:
    """Another checkout on this environment (whose editable install points here): its
    tests import the copy, not this tree."""
    copy = tmp_path / "a long path to another checkout" / "cellguard"
    ignore = shutil.ignore_patterns("__pycache__", "*.egg-info")
    for folder in ("host", "protocol", "firmware", "boards"):
        shutil.copytree(ROOT / folder, copy / folder, ignore=ignore)
    for name in ("pyproject.toml", "conftest.py"):
        shutil.copy(ROOT / name, copy / name)
    (copy / "tests").mkdir()
    shutil.copytree(ROOT / "tests" / "one_tree", copy / "tests" / "one_tree", ignore=ignore)
    for name in ("conftest.py", "fakes.py", "test_one_tree.py"):
        shutil.copy(ROOT / "tests" / name, copy / "tests" / name)
    env = {k: v for k, v in os.environ.items() if k not in ("CELLGUARD_ROOT", "PYTHONPATH")}
    proc = subprocess.run(
        [sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", "-x",
         "tests/test_one_tree.py", "-k", "not copy_of_the_tree"],
        capture_output=True, text=True, timeout=300, cwd=copy, env=env)
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-2000:]
    assert "2 passed" in proc.stdout
