"""Optional dependencies: one check that names the extra to install.

``require("serve", "uvicorn", "fastapi")`` raises a one-line ``RuntimeError`` (the CLI
prints it and exits 2) instead of a ``ModuleNotFoundError`` traceback.
"""

from __future__ import annotations

import importlib.util


def require(extra: str, *modules: str) -> None:
    missing = [m for m in modules if importlib.util.find_spec(m) is None]
    if missing:
        raise RuntimeError(f"this needs {', '.join(missing)}, which is not installed: "
                           f"pip install 'fcnkit[{extra}]'")


__all__ = ["require"]
