"""Loading weights safely, and checking them against a model.

The preprocessing each source expects is declared in ``fcnkit.preprocessing`` (and
re-exported here, next to the weights that need it).
"""

from __future__ import annotations

import pickle
import zipfile
from pathlib import Path
from typing import Any

import torch
from torch import Tensor

from ..io import brief


def torch_load(path: str | Path, *, what: str) -> Any:
    """``torch.load(weights_only=True)`` (tensors and plain data only: nothing in the file can
    run code) whose error says, in one line, what ``path`` is not and why: e.g.
    ``"README.md: not a fcnkit model (...): not a torch.save file (it starts with b'# fc')"``.
    It never suggests ``weights_only=False``."""
    try:
        loaded = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as e:  # noqa: BLE001 - torch's message advises unsafe loading: replaced, not chained
        error = e
    else:
        damaged = damaged_member(path)
        if damaged is None:
            return loaded
        raise ValueError(f"{path}: not {what}: {_fails_checksum(damaged)}")
    raise ValueError(f"{path}: not {what}: {why_unreadable(path, error)}")  # outside the except: no __context__


def damaged_member(path: str | Path) -> str | None:
    """The first member of a torch.save zip whose CRC-32 does not match its bytes (``None``
    if all match, or for a legacy pickle): ``torch.load`` does not check them, so a flipped
    bit in the tensor data would otherwise load as silently wrong weights."""
    try:
        with zipfile.ZipFile(path) as z:
            return z.testzip()
    except zipfile.BadZipFile:
        return None


def _fails_checksum(member: str) -> str:
    return f"damaged torch.save archive ({member} fails its checksum)"


def why_unreadable(path: str | Path, error: BaseException) -> str:
    """A short reason why ``torch.load`` failed on ``path`` (``error``), from the file itself."""
    try:
        with open(path, "rb") as f:
            head = f.read(4)
    except OSError as e:
        return f"cannot read it ({e.strerror or e})"
    if head.startswith(b"PK"):  # a zip archive: torch.save's format since torch 1.6
        try:
            with zipfile.ZipFile(path) as z:
                names, damaged = z.namelist(), z.testzip()
        except (zipfile.BadZipFile, OSError, EOFError):  # e.g. cut short: the zip directory is at the end
            return "truncated or damaged torch.save archive"
        if damaged is not None:
            return _fails_checksum(damaged)
        if not any(n.endswith("data.pkl") for n in names):
            return "a zip archive, but not one written by torch.save"
    elif not head.startswith(b"\x80"):  # neither a zip nor a (legacy torch.save) pickle
        return f"not a torch.save file (it starts with {head!r})"
    if isinstance(error, pickle.UnpicklingError):
        return ("it is damaged, or holds Python objects besides tensors and plain data, which fcnkit "
                "does not load (loading them can run code)")
    return brief(error)


def load_state_dict_file(path: str | Path) -> dict[str, Tensor]:
    """Load a state dict safely: safetensors, or a torch pickle with ``weights_only=True``.

    A checkpoint dict with a ``"model"`` or ``"state_dict"`` entry is unwrapped.
    Errors name the file and what is wrong with it.
    """
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"{path}: no such weights file")
    what = "a weights file (a state dict in .pt/.pth, or .safetensors)"
    if path.suffix == ".safetensors":
        from safetensors.torch import load_file

        try:
            sd = load_file(str(path))
        except Exception as e:  # noqa: BLE001 - re-raised with the file named
            raise ValueError(f"{path}: not {what}: unreadable safetensors ({brief(e)})") from None
    else:
        sd = torch_load(path, what=what)
    if isinstance(sd, dict):
        for key in ("model", "state_dict"):
            if key in sd and isinstance(sd[key], dict):
                sd = sd[key]
                break
    if not isinstance(sd, dict) or not all(isinstance(v, Tensor) for v in sd.values()):
        raise ValueError(f"{path}: not a state dict (a mapping of names to tensors)")
    return sd


def check_and_load(module: torch.nn.Module, state_dict: dict[str, Tensor], *, source: str,
                   ignore_missing: tuple[str, ...] = ()) -> None:
    """``load_state_dict(strict=True)`` with an error that lists offending keys and shapes.

    ``ignore_missing`` names key prefixes that may be absent (e.g. the decoder when only
    encoder weights are loaded).
    """
    own = module.state_dict()
    missing = [k for k in own if k not in state_dict and not k.startswith(ignore_missing)]
    unexpected = [k for k in state_dict if k not in own]
    mismatched = [f"{k}: file {tuple(state_dict[k].shape)} vs model {tuple(own[k].shape)}"
                  for k in state_dict if k in own and state_dict[k].shape != own[k].shape]
    problems = []
    if missing:
        problems.append(f"missing keys {missing[:8]}{' ...' if len(missing) > 8 else ''}")
    if unexpected:
        problems.append(f"unexpected keys {unexpected[:8]}{' ...' if len(unexpected) > 8 else ''}")
    if mismatched:
        problems.append("shape mismatches " + "; ".join(mismatched[:8]))
    if problems:
        raise ValueError(f"{source}: weights do not fit {type(module).__name__}: " + "; ".join(problems))
    module.load_state_dict(state_dict, strict=False)
