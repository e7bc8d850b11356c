"""Optional dependencies: one check that names the extra to install.

``require("serve", "uvicorn", "fastapi")`` raises a one-line ``RuntimeError`` (the CLI
prints it and exits 2) instead of a ``ModuleNotFoundError`` traceback.
"""

from __future__ import annotations

import importlib.util


def installed(module: str) -> bool:
    """Whether ``module`` (dotted names too) can be imported, without importing it (for a
    dotted name its parent package is imported, as ``importlib.util.find_spec`` does)."""
    try:
        return importlib.util.find_spec(module) is not None
    except (ImportError, ValueError):  # a missing parent package; a module set to None
        return False


def require(extra: str, *modules: str) -> None:
    """Raise a one-line RuntimeError naming ``pip install 'fcnkit[extra]'`` unless every
    one of ``modules`` is installed. Call it before an optional import, and before the
    work that needs it, so nothing is spent on a run that cannot finish."""
    missing = [m for m in modules if not installed(m)]
    if missing:
        names = ", ".join(missing)
        raise RuntimeError(f"this needs {names}, which {'is' if len(missing) == 1 else 'are'} not installed: "
                           f"pip install 'fcnkit[{extra}]'")


def explain(error: BaseException) -> str:
    """The one line to print for ``error``: a library's cryptic message made plain where we
    know its cause (a torchvision built for another torch fails on import with "operator
    torchvision::nms does not exist"), else the message itself."""
    text = str(error)
    if "torchvision::" in text and "does not exist" in text:
        from importlib.metadata import PackageNotFoundError, version

        def v(name: str) -> str:
            try:
                return version(name)
            except PackageNotFoundError:
                return "(not installed)"

        return (f"torch {v('torch')} and torchvision {v('torchvision')} do not match (torchvision's compiled "
                f"operators were built for another torch: {text.strip().splitlines()[0]}); install the pair "
                f"together, e.g. pip install --force-reinstall torch=={v('torch')} torchvision")
    return text


__all__ = ["explain", "installed", "require"]
