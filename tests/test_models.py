"""The FCN models against REFERENCE.md: geometry, crops, init, counts, every registered model."""

import math

import pytest
import torch
import torch.nn.functional as F
from hypothesis import given, settings, strategies as st

import fcnkit
from fcnkit.models.encoders import create_encoder
from fcnkit.models.geometry import CoordMap, crop_offset

TINY = 1 / 16  # VGG-16 at 1/16 width: 4..32 conv channels, 256-channel fc6/fc7
REF_KEYS = ([f"conv{b}_{i}" for b, n in ((1, 2), (2, 2), (3, 3), (4, 3), (5, 3)) for i in range(1, n + 1)]
            + ["fc6", "fc7", "score_fr"])


def tiny(name: str, geometry: str = "fast", **kw):
    return fcnkit.create_model(name, num_classes=5, width=TINY, geometry=geometry, **kw)


def taps(model, x):
    """Encoder taps and decoder blobs of a VGG FCN, by the reference names."""
    e, d = model.encoder, model.decoder
    feats = e(x)
    out = {"pool2": feats[0], "pool3": feats[1], "pool4": feats[2], "score_fr": d.score_fr(feats[3])}
    h = x
    for name, layer in e._layers()[:-2]:  # up to pool5
        h = layer(h)
    out["pool5"] = h
    out["upscore2"] = d.upscore2(out["score_fr"])
    if hasattr(d, "upscore_pool4"):
        out["upscore_pool4"] = d.upscore_pool4(out["upscore2"][..., :, :])
    return out


@pytest.mark.parametrize("size,expected", [
    (500, {"pool2": 175, "pool3": 88, "pool4": 44, "pool5": 22, "score_fr": 16, "upscore2": 34,
           "upscore_pool4": 70}),
    (1, {"pool5": 7, "score_fr": 1}),
])
def test_reference_geometry_blob_sizes(size, expected):
    model = tiny("fcn8s", "reference").eval()
    with torch.no_grad():
        blobs = taps(model, torch.randn(1, 3, size, size))
    for name, n in expected.items():
        assert blobs[name].shape[-2:] == (n, n), name


@pytest.mark.parametrize("name,final,final_size", [("fcn8s", "upscore8", 568), ("fcn16s", "upscore16", 560),
                                                   ("fcn32s", "upscore", 544)])
def test_reference_final_upsampled_size_at_500(name, final, final_size):
    model = tiny(name, "reference").eval()
    seen = {}

    def record(module, inputs, output):
        seen["shape"] = output.shape

    getattr(model.decoder, final).register_forward_hook(record)
    with torch.no_grad():
        out = model(torch.randn(1, 3, 500, 500))["seg"]
    assert seen["shape"][-2:] == (final_size, final_size)
    assert out.shape == (1, 5, 500, 500)


def _compose(layers):
    """Independent derivation of a blob's (scale, offset) from (kind, k, s, p) tuples."""
    a, b = 1.0, 0.0
    for kind, k, s, p in layers:
        if kind == "conv":
            a, b = a * s, b + a * ((k - 1) / 2 - p)
        else:  # deconv
            a, b = a / s, b + a * (p - (k - 1) / 2) / s
    return a, b


def test_crop_offsets_derived_from_layer_geometry():
    conv3, pool = ("conv", 3, 1, 1), ("conv", 2, 2, 0)
    to_pool3 = [("conv", 3, 1, 100), conv3, pool, conv3, conv3, pool, conv3, conv3, conv3, pool]
    to_pool4 = to_pool3 + [conv3] * 3 + [pool]
    to_score_fr = to_pool4 + [conv3] * 3 + [pool, ("conv", 7, 1, 0), ("conv", 1, 1, 0)]
    up2 = to_score_fr + [("deconv", 4, 2, 0)]
    up4 = up2 + [("deconv", 4, 2, 0)]
    up8 = up4 + [("deconv", 16, 2 * 4, 0)]
    (a4, b4), (_, bu2) = _compose(to_pool4), _compose(up2)
    (a3, b3), (_, bu4) = _compose(to_pool3), _compose(up4)
    assert ((bu2 - b4) / a4, (bu4 - b3) / a3, -_compose(up8)[1]) == (5, 9, 31)
    # the model's own derivation agrees with this independent one and with Caffe's numbers
    expected = {"fcn8s": {"score_pool4": 5, "score_pool3": 9, "final": 31},
                "fcn16s": {"score_pool4": 5, "final": 27}, "fcn32s": {"final": 19}}
    for name, crops in expected.items():
        assert tiny(name, "reference").decoder.crops == crops


def test_fast_geometry_is_exactly_aligned():
    enc = create_encoder("vgg16", geometry="fast", width=TINY)
    coords = {t.stride: t.coord for t in enc.feature_info}
    for s, m in coords.items():
        assert m == CoordMap(s, (s - 1) / 2)  # pixel centres of an exact s-fold pooling
    m = tiny("fcn8s").decoder
    up = coords[32].then(m.upscore2)
    assert crop_offset(coords[16], up) == 0
    assert crop_offset(up.then(m.upscore_pool4).then(m.upscore8), CoordMap()) == 0
    assert m.crops == {}


@pytest.mark.slow
def test_reference_parameter_counts_and_port_keys():
    counts = {"fcn8s": 134_489_759, "fcn16s": 134_815_994, "fcn32s": 136_152_917}
    ups = {"fcn8s": ["score_pool4", "score_pool3", "upscore2", "upscore_pool4", "upscore8"],
           "fcn16s": ["score_pool4", "upscore2", "upscore16"], "fcn32s": ["upscore"]}
    for name, n in counts.items():
        model = fcnkit.create_model(name, num_classes=21, geometry="reference")
        sd = model.state_dict()
        assert sum(v.numel() for v in sd.values()) == n
        assert {k.rsplit(".", 1)[0] for k in sd} == set(REF_KEYS + ups[name])
        # a state dict keyed like the reference port loads strictly
        port = {k: torch.randn_like(v) for k, v in sd.items()}
        model.load_state_dict(port, strict=True)
        torch.testing.assert_close(model.encoder.conv3_2.weight, port["conv3_2.weight"])
        torch.testing.assert_close(model.decoder.score_fr.bias, port["score_fr.bias"])
        del model, sd, port


@settings(max_examples=12, deadline=None)
@given(h=st.integers(1, 90), w=st.integers(1, 90), name=st.sampled_from(["fcn8s", "fcn16s", "fcn32s"]),
       geometry=st.sampled_from(["fast", "reference"]))
def test_output_is_exactly_input_size(h, w, name, geometry):
    model = fcnkit.create_model(name, num_classes=3, width=1 / 32, geometry=geometry).eval()
    with torch.no_grad():
        assert model(torch.randn(1, 3, h, w))["seg"].shape == (1, 3, h, w)


@pytest.mark.parametrize("geometry", ["fast", "reference"])
def test_zero_score_init_gives_uniform_loss(geometry):
    model = tiny("fcn8s", geometry)
    logits = model(torch.randn(2, 3, 37, 45))["seg"]
    assert logits.abs().max() == 0
    target = torch.randint(0, 5, (2, 37, 45))
    assert math.isclose(F.cross_entropy(logits, target).item(), math.log(5), rel_tol=1e-6)


def test_fixed_upsampling_unchanged_by_optimiser_step():
    model = tiny("fcn8s")
    before = model.decoder.upscore8.weight.clone()
    opt = torch.optim.SGD([p for p in model.parameters() if p.requires_grad], lr=0.1, momentum=0.9, weight_decay=1e-3)
    for p in model.parameters():  # let the gradient reach everything
        if p.requires_grad and p.dim() > 1 and p.abs().sum() == 0:
            torch.nn.init.normal_(p, std=0.1)
    loss = model(torch.randn(1, 3, 40, 40))["seg"].square().mean()
    loss.backward()
    opt.step()
    torch.testing.assert_close(model.decoder.upscore8.weight, before, rtol=0, atol=0)
    assert model.decoder.upscore8.weight.grad is None


def test_atonce_equals_plain_8s_with_scaled_weights():
    torch.manual_seed(1)
    atonce, plain = tiny("fcn8s-atonce").eval(), tiny("fcn8s").eval()
    for m in (atonce, plain):
        assert m.decoder.score_pool4.weight.abs().sum() == 0
    sd = {k: torch.randn_like(v) if k.startswith("score") else v for k, v in atonce.state_dict().items()}
    atonce.load_state_dict(sd)
    scaled = dict(sd)
    scaled["score_pool4.weight"] = 0.01 * sd["score_pool4.weight"]
    scaled["score_pool3.weight"] = 0.0001 * sd["score_pool3.weight"]
    plain.load_state_dict(scaled)
    x = torch.randn(1, 3, 64, 80)
    with torch.no_grad():
        torch.testing.assert_close(atonce(x), plain(x), rtol=1e-4, atol=1e-5)


MODEL_CASES = [(name, dict(width=TINY)) for name in fcnkit.list_models()] + [
    ("fcn8s", dict(encoder="resnet18")), ("fcn16s", dict(encoder="mobilenet_v3_large", width=0.25)),
    ("fcn8s", dict(width=TINY, geometry="reference", learnable_upsampling=True))]


@pytest.mark.parametrize("name,kw", MODEL_CASES, ids=[f"{n}-{'-'.join(map(str, k.values()))}" for n, k in MODEL_CASES])
def test_every_model_trains(name, kw):
    from fcnkit.engine.tasks import task_for
    from fcnkit.heads import BOXES, SEG
    from fcnkit.models.registry import model_heads

    task = task_for(model_heads(name))  # the class counts each task's builder takes, as the trainer passes them
    classes = task.model_kwargs({"classes": list("abcd"), "box_classes": ["x", "y"], "heads": {SEG, BOXES}})
    model = fcnkit.create_model(name, **classes, **kw).train()
    spec = model.spec
    expected_outputs = {frozenset({SEG}): ("seg",), frozenset({BOXES}): ("heatmap", "size", "offset"),
                        frozenset({SEG, BOXES}): ("seg", "heatmap", "size", "offset")}
    assert spec.heads == task.heads and spec.outputs == expected_outputs[spec.heads]
    assert spec.num_classes == (4 if task.segments else None) and spec.det_classes == (2 if task.detects else None)
    # the captured config rebuilds the same model: nothing typed by hand can drift from the builder
    assert "weights" not in spec.config and fcnkit.create_model(spec.name, **spec.config).spec == spec
    # zero-init score layers pass no gradient to the encoder on step 0; perturb them as training would
    with torch.no_grad():
        for n, p in model.named_parameters():
            if "score" in n and n.endswith("weight"):
                p.normal_(std=0.01)
    out = model(torch.randn(2, 3, 45, 61))
    assert list(out) == list(spec.outputs) and all(v.shape[0] == 2 for v in out.values())
    if task.segments:
        assert out["seg"].shape == (2, 4, 45, 61)
    sum(v.float().square().mean() for v in out.values()).backward()
    no_grad = [n for n, p in model.named_parameters() if p.requires_grad and (p.grad is None or p.grad.abs().sum() == 0)]
    assert no_grad == []


@pytest.mark.parametrize("name,kw,channels", [
    ("vgg16", dict(width=1.0), [128, 256, 512, 4096]),
    ("resnet18", {}, [64, 128, 256, 512]),
    ("resnet50", {}, [256, 512, 1024, 2048]),
    ("mobilenet_v3_large", {}, [24, 40, 112, 960]),
])
def test_encoder_feature_info_matches_outputs(name, kw, channels):
    enc = create_encoder(name, **kw).eval()
    assert [t.channels for t in enc.feature_info] == channels
    size = (64, 96)
    with torch.no_grad():
        feats = enc(torch.randn(1, 3, *size))
    assert len(feats) == len(enc.feature_info) and [t.stride for t in enc.feature_info] == [4, 8, 16, 32]
    for t, f in zip(enc.feature_info, feats):
        assert f.shape[1:] == (t.channels, size[0] // t.stride, size[1] // t.stride), t.name


def test_reference_geometry_only_for_vgg():
    with pytest.raises(ValueError, match="reference"):
        fcnkit.create_model("fcn8s", encoder="resnet18", geometry="reference")
    with pytest.raises(ValueError, match="unknown model"):
        fcnkit.create_model("fcn2s")


def test_fcn4s_adds_a_pool2_skip_with_crops_derived_like_the_papers():
    conv3, pool = ("conv", 3, 1, 1), ("conv", 2, 2, 0)
    to_pool2 = [("conv", 3, 1, 100), conv3, pool, conv3, conv3, pool]
    to_score_fr = to_pool2 + [conv3] * 3 + [pool] + [conv3] * 3 + [pool] + [conv3] * 3 + [pool] + [
        ("conv", 7, 1, 0), ("conv", 1, 1, 0)]
    up8 = to_score_fr + [("deconv", 4, 2, 0)] * 3  # upscore2, upscore_pool4, upscore_pool3: stride 4
    (a2, b2), (_, bu) = _compose(to_pool2), _compose(up8)
    final = -_compose(up8 + [("deconv", 8, 4, 0)])[1]
    model = tiny("fcn4s", "reference")
    assert model.decoder.crops == {"score_pool4": 5, "score_pool3": 9, "score_pool2": (bu - b2) / a2, "final": final}
    for geometry in ("reference", "fast"):
        m = tiny("fcn4s", geometry).eval()
        with torch.no_grad():
            for h, w in [(1, 1), (37, 53), (64, 96)]:
                assert m(torch.randn(1, 3, h, w))["seg"].shape == (1, 5, h, w)
    # a fresh net scores zero everywhere: the new skip starts at zero like the paper's
    assert torch.count_nonzero(tiny("fcn4s").decoder.score_pool2.weight) == 0


@pytest.mark.parametrize("suffix,dtype", [(".pt", None), (".safetensors", torch.float16)])
def test_saved_model_round_trip(tmp_path, suffix, dtype):
    from fcnkit.models.saved import load_model, save_model

    model = tiny("fcn16s").eval()
    with torch.no_grad():
        for p in model.parameters():
            p.normal_(std=0.1)
    path = tmp_path / f"m{suffix}"
    save_model(model, path, dtype=dtype, classes=list("abcde"), palette=[[i, i, i] for i in range(5)])
    loaded = load_model(path)
    assert loaded.spec == model.spec.replace(classes=tuple("abcde")) and loaded.meta == {"palette": [[i, i, i] for i in range(5)]}
    x = torch.randn(1, 3, 40, 56)
    with torch.no_grad():
        expected, got = model(x)["seg"], loaded(x)["seg"]
    tol = 0 if dtype is None else 2e-2
    torch.testing.assert_close(got, expected, atol=tol, rtol=tol)
    assert next(loaded.parameters()).dtype == torch.float32


def test_foreign_safetensors_is_refused(tmp_path):
    from safetensors.torch import save_file

    from fcnkit.models.saved import load_model

    save_file({"w": torch.zeros(2)}, str(tmp_path / "plain.safetensors"))
    with pytest.raises(ValueError, match="plain.safetensors: not a fcnkit model .*: safetensors without fcnkit metadata"):
        load_model(tmp_path / "plain.safetensors")


@pytest.mark.parametrize("factor", [2, 4, 8])
def test_subpixel_rewrite_of_a_transposed_conv_gives_the_same_output(factor: int) -> None:
    """conv (phases as channels) + pixel_shuffle == the learnt transposed conv, for any weights."""
    from fcnkit.models.subpixel import SubpixelUpsample
    from fcnkit.nn import Upsample

    up = Upsample(5, factor, padding=factor // 2, learnable=True)
    with torch.no_grad():
        up.weight.normal_()
    x = torch.randn(2, 5, 7, 11)
    with torch.no_grad():
        expected, got = up(x), SubpixelUpsample(up)(x)
    assert got.shape == expected.shape == (2, 5, 7 * factor, 11 * factor)
    torch.testing.assert_close(got, expected, atol=1e-4, rtol=1e-4)
    with pytest.raises(ValueError, match="kernel 2s, padding s/2"):
        SubpixelUpsample(Upsample(5, factor, padding=0))  # the reference geometry's crop-aligned upsampling


def test_subpixel_upsampling_swaps_only_the_final_upsampling_of_an_fcn() -> None:
    import copy

    from fcnkit.models.subpixel import SubpixelUpsample, subpixel_upsampling

    model = fcnkit.create_model("fcn8s", num_classes=4, encoder="mobilenet_v3_large", width=0.25).eval()
    for p in model.decoder.parameters():
        p.data.normal_(0, 0.2)
    rewritten = copy.deepcopy(model)
    assert subpixel_upsampling(rewritten) == 1
    assert isinstance(rewritten.decoder.upscore8, SubpixelUpsample)
    assert not isinstance(rewritten.decoder.upscore2, SubpixelUpsample)
    x = torch.randn(1, 3, 45, 70)
    with torch.no_grad():
        torch.testing.assert_close(rewritten(x)["seg"], model(x)["seg"], atol=1e-4, rtol=1e-4)
