"""Loading weights safely, and checking them against a model.

The preprocessing each source expects is declared in ``fcnkit.preprocessing`` (and
re-exported here, next to the weights that need it).
"""

from __future__ import annotations

from pathlib import Path

import torch
from torch import Tensor

from ..preprocessing import CAFFE_VGG, IMAGENET, TF_INCEPTION, Preprocessing


def load_state_dict_file(path: str | Path) -> dict[str, Tensor]:
    """Load a state dict safely: safetensors, or a torch pickle with ``weights_only=True``.

    A checkpoint dict with a ``"model"`` or ``"state_dict"`` entry is unwrapped.
    Errors name the file and what is wrong with it.
    """
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"{path}: no such weights file")
    try:
        if path.suffix == ".safetensors":
            from safetensors.torch import load_file

            sd = load_file(str(path))
        else:
            sd = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as e:  # noqa: BLE001 - re-raised with the file named
        raise ValueError(f"{path}: cannot read weights ({type(e).__name__}: {e})") from e
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
