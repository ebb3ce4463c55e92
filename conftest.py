"""Loaded by pytest before any test or helper: every import of ``cellguard``,
``cellguard.protocol`` and ``cellguard_fw`` comes from this tree, in the test
process and in the Python subprocesses the tests start (tests/one_tree)."""

import importlib.util
from pathlib import Path

_spec = importlib.util.spec_from_file_location(
    "cellguard_tests_one_tree", Path(__file__).parent / "tests" / "one_tree" / "sitecustomize.py")
assert _spec is not None and _spec.loader is not None
_spec.loader.exec_module(importlib.util.module_from_spec(_spec))
