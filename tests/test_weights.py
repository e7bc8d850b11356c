"""Loading ImageNet weights: convolutionalisation, local files, clear failures."""

import urllib.error

import pytest
import torch
import torchvision

import fcnkit
from fcnkit.models.encoders import create_encoder
from fcnkit.models.encoders.vgg import vgg16_from_torchvision
from fcnkit.models.weights import load_state_dict_file
from fcnkit.preprocessing import CAFFE_VGG, IMAGENET


@pytest.fixture(scope="module")
def tv_vgg16():
    torch.manual_seed(0)
    return torchvision.models.vgg16().eval()


@pytest.mark.slow
def test_convolutionalised_vgg_equals_torchvision_classifier(tv_vgg16, tmp_path_factory):
    path = tmp_path_factory.mktemp("w") / "vgg16.pth"
    torch.save(tv_vgg16.state_dict(), path)
    enc = create_encoder("vgg16", weights=path).eval()
    pool5 = torch.randn(1, 512, 7, 7)
    with torch.no_grad():
        expected = tv_vgg16.classifier[:5](pool5.flatten(1))  # (1, 4096): fc6, relu, drop, fc7, relu
        got = torch.relu(enc.fc7(torch.relu(enc.fc6(pool5))))  # (1, 4096, 7, 7): fast fc6 pads by 3
    # the fast geometry's fc6 has padding 3: the centre output sees exactly the 7x7 map
    torch.testing.assert_close(got[:, :, 3, 3], expected, rtol=1e-4, atol=1e-4)
    # the conv trunk is torchvision's features, layer for layer
    x = torch.randn(1, 3, 64, 64)
    with torch.no_grad():
        ours = enc(x)[2]  # pool4 (stride 16; taps are pool2, pool3, pool4, fc7)
        theirs = tv_vgg16.features[:24](x)
    torch.testing.assert_close(ours, theirs)


def test_torchvision_key_conversion_rejects_foreign_dict():
    with pytest.raises(KeyError, match="features.0.weight"):
        vgg16_from_torchvision({"conv1.weight": torch.zeros(1)})


@pytest.mark.parametrize("arch", ["resnet18", "mobilenet_v3_large"])
def test_local_torchvision_file_loads_into_encoder(arch, tmp_path):
    net = getattr(torchvision.models, arch)()
    path = tmp_path / f"{arch}.pth"
    torch.save(net.state_dict(), path)
    model = fcnkit.create_model("fcn8s", num_classes=3, encoder=arch, encoder_weights=path)
    first = "conv1.weight" if arch == "resnet18" else "features.0.0.weight"
    torch.testing.assert_close(model.state_dict()[first], net.state_dict()[first])
    assert model.spec.preprocessing == IMAGENET


def test_shape_mismatch_names_the_keys(tmp_path):
    net = torchvision.models.resnet18()
    sd = net.state_dict()
    sd["layer1.0.conv1.weight"] = torch.zeros(3, 3, 3, 3)
    path = tmp_path / "bad.pth"
    torch.save(sd, path)
    with pytest.raises(ValueError, match=r"bad.pth.*layer1.0.conv1.weight: file \(3, 3, 3, 3\) vs model \(64, 64, 3, 3\)"):
        create_encoder("resnet18", weights=path)


def test_unsafe_or_corrupt_file_is_refused(tmp_path):
    path = tmp_path / "evil.pth"
    torch.save({"model": object()}, path)  # needs pickle beyond weights_only
    with pytest.raises(ValueError, match="evil.pth: not a weights file"):
        load_state_dict_file(path)
    (tmp_path / "junk.pth").write_bytes(b"not a checkpoint")
    with pytest.raises(ValueError, match="junk.pth"):
        load_state_dict_file(tmp_path / "junk.pth")


def test_safetensors_weights(tmp_path):
    from safetensors.torch import save_file

    net = torchvision.models.resnet18()
    path = tmp_path / "r18.safetensors"
    save_file({k: v.contiguous() for k, v in net.state_dict().items()}, str(path))
    enc = create_encoder("resnet18", weights=path)
    torch.testing.assert_close(enc.layer4[1].bn2.running_var, net.layer4[1].bn2.running_var)


def test_imagenet_download_failure_says_how_to_use_a_local_file(monkeypatch):
    def offline(self, *args, **kwargs):
        raise urllib.error.URLError("no network")

    monkeypatch.setattr(torchvision.models.ResNet18_Weights.IMAGENET1K_V1.__class__, "get_state_dict", offline)
    with pytest.raises(RuntimeError, match=r"encoder_weights='/path/to/resnet18-.*\.pth'"):
        create_encoder("resnet18", weights="imagenet")


def test_whole_model_weights_and_caffe_preprocessing(tmp_path):
    m = fcnkit.create_model("fcn16s", num_classes=3, width=1 / 16)
    sd = {k: torch.randn_like(v) for k, v in m.state_dict().items()}
    path = tmp_path / "fcn16s.pth"
    torch.save(sd, path)
    m2 = fcnkit.create_model("fcn16s", num_classes=3, width=1 / 16, weights=path)
    torch.testing.assert_close(m2.state_dict()["score_pool4.weight"], sd["score_pool4.weight"])
    # BGR, 0..255, mean-subtracted: white in RGB [0,1] becomes 255 - mean per BGR channel
    white = torch.ones(3, 1, 1)
    torch.testing.assert_close(CAFFE_VGG(white).flatten(), torch.tensor([255 - 104.00698793, 255 - 116.66876762,
                                                                         255 - 122.67891434]))
    red = torch.tensor([1.0, 0, 0]).view(3, 1, 1)
    assert CAFFE_VGG(red).flatten()[2] > 0 > CAFFE_VGG(red).flatten()[0]  # red lands in the last (R) channel


@pytest.mark.parametrize("source_name,suffix", [("fcn8s", ".pt"), ("fcn8s-det", ".pt"), ("fcn8s", ".safetensors")])
def test_encoder_from_a_model_trained_with_fcnkit(source_name, suffix, tmp_path):
    """e.g. a detector started from the CamVid segmentation model's encoder."""
    from fcnkit.models.saved import save_model

    torch.manual_seed(3)
    classes = lambda name, n: {"det_classes" if name == "fcn8s-det" else "num_classes": n}  # noqa: E731
    source = fcnkit.create_model(source_name, encoder="resnet18", **classes(source_name, 4))
    path = tmp_path / f"source{suffix}"
    save_model(source, path, dtype=torch.float16 if suffix == ".safetensors" else None)  # as in weights/
    target_name = "fcn8s-det" if source_name == "fcn8s" else "fcn8s"
    target = fcnkit.create_model(target_name, encoder="resnet18", encoder_weights=path, **classes(target_name, 2))
    src = source.encoder.state_dict() if source_name == "fcn8s-det" else source.state_dict()
    dst = target.encoder.state_dict() if target_name == "fcn8s-det" else target.state_dict()
    for key in ("conv1.weight", "layer4.1.bn2.running_var"):
        expected = src[key].half().float() if suffix == ".safetensors" else src[key]
        torch.testing.assert_close(dst[key], expected, rtol=0, atol=0)
