"""``fcnkit models`` and ``fcnkit info NAME --size HxW``."""

from __future__ import annotations

import argparse

from .common import examples


def parse_size(text: str) -> tuple[int, int]:
    """'360x480' -> (360, 480): height x width, as the paper writes image sizes."""
    try:
        h, w = (int(v) for v in text.lower().split("x"))
    except ValueError:
        raise argparse.ArgumentTypeError(f"size must be HxW like 360x480, not {text!r}") from None
    if h < 1 or w < 1:
        raise argparse.ArgumentTypeError(f"size must be positive, not {text!r}")
    return h, w


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("models", help="list registered models and encoders",
                       description="The model names create_model, fcnkit info and recipes take, and the encoders.",
                       epilog=examples("fcnkit models"))
    p.set_defaults(func=_models)
    p = sub.add_parser("info", help="parameters, GFLOPs and output shapes of a model at a size",
                       description="Build a model (random weights) and count its parameters and FLOPs at one "
                                   "input size.",
                       epilog=examples("fcnkit info fcn8s --size 360x480 --num-classes 11",
                                       "fcnkit info fcn32s --geometry reference --encoder vgg16"))
    p.add_argument("name", help="a model name from fcnkit models, e.g. fcn8s")
    p.add_argument("--size", type=parse_size, default=(360, 480), help="input HxW (default 360x480)")
    p.add_argument("--num-classes", type=int, default=21, help="classes of the score layer")
    p.add_argument("--encoder", default="vgg16", help="an encoder from fcnkit models, or timm:NAME")
    p.add_argument("--geometry", default="fast", choices=["fast", "reference"],
                   help="'reference': the paper's pad-100 VGG geometry; 'fast': pad-free, 44%% fewer FLOPs")
    p.add_argument("--width", type=float, default=1.0, help="channel multiplier of the encoder and decoder")
    p.set_defaults(func=_info)


def _models(args: argparse.Namespace) -> int:
    from ..models import list_models
    from ..models.encoders import list_encoders

    print("models:  ", " ".join(list_models()))
    print("encoders:", " ".join(list_encoders()), "timm:NAME")
    return 0


def _info(args: argparse.Namespace) -> int:
    import torch

    from ..models import create_model
    from ..profile import count_flops

    model = create_model(args.name, num_classes=args.num_classes, encoder=args.encoder,
                         geometry=args.geometry, width=args.width).eval()
    x = torch.zeros(1, 3, *args.size)
    with torch.no_grad():
        flops, out = count_flops(model, x)
    n_params = sum(v.numel() for v in model.state_dict().values())
    n_train = sum(p.numel() for p in model.parameters() if p.requires_grad)
    print(f"model        {args.name} (encoder {args.encoder}, geometry {args.geometry}, width {args.width})")
    print(f"parameters   {n_params:,} in the state dict, {n_train:,} trainable")
    print(f"input        {tuple(x.shape)}")
    for name, t in out.items():
        print(f"output       {name} {tuple(t.shape)}")
    print(f"GFLOPs       {flops / 1e9:.3f} (multiply-add = 2 FLOPs)")
    return 0
