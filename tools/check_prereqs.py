"""Check the prerequisites of `make demo` / `make test` and say clearly what is missing.

Runs under any Python 3; needs Python 3.11+ (with venv) and Node 18+ with npm.
"""

import shutil
import subprocess
import sys

problems = []
if sys.version_info < (3, 11):
    problems.append(
        "Python 3.11 or newer is needed (found %d.%d); run make with PYTHON=python3.11"
        % sys.version_info[:2]
    )
try:
    import venv  # noqa: F401
except ImportError:
    problems.append("Python's venv module is missing (Debian/Ubuntu: apt install python3-venv)")

node = shutil.which("node")
if node is None:
    problems.append("Node.js 18 or newer is needed and `node` is not on PATH")
else:
    out = subprocess.run([node, "--version"], capture_output=True, text=True).stdout.strip()
    try:
        major = int(out.lstrip("v").split(".")[0])
    except ValueError:
        major = 0
    if major < 18:
        problems.append("Node.js 18 or newer is needed (found %s)" % (out or "unknown"))
if shutil.which("npm") is None:
    problems.append("npm is needed (it comes with Node.js) and is not on PATH")

if problems:
    print("cellguard cannot set itself up:", file=sys.stderr)
    for p in problems:
        print("  - " + p, file=sys.stderr)
    sys.exit(1)
