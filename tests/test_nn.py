"""The three building blocks against their definitions."""

import pytest
import torch
from torch import nn

from fcnkit.nn import Upsample, bilinear_kernel, convolutionalize, crop_like, fuse, transposed_output_size


def test_convolutionalize_1x1_equals_linear_per_position():
    fc = nn.Linear(6, 4)
    conv = convolutionalize(fc)
    x = torch.randn(2, 6, 5, 7)
    expected = fc(x.permute(0, 2, 3, 1)).permute(0, 3, 1, 2)  # the FC layer at every pixel
    torch.testing.assert_close(conv(x), expected)


def test_convolutionalize_kxk_equals_linear_on_flattened_map():
    fc = nn.Linear(3 * 4 * 4, 5)
    conv = convolutionalize(fc, in_channels=3, kernel_size=4)
    x = torch.randn(2, 3, 4, 4)
    torch.testing.assert_close(conv(x).flatten(1), fc(x.flatten(1)))
    # a larger input slides the same classifier: position (1, 2) sees the window at (1, 2)
    big = torch.randn(1, 3, 9, 11)
    torch.testing.assert_close(conv(big)[0, :, 1, 2], fc(big[:, :, 1:5, 2:6].flatten(1))[0])


def test_convolutionalize_rejects_wrong_shape():
    with pytest.raises(ValueError, match="25088"):
        convolutionalize(nn.Linear(25088, 10), in_channels=511, kernel_size=7)


def test_bilinear_kernel_taps():
    torch.testing.assert_close(bilinear_kernel(4)[0] / bilinear_kernel(4)[0].max(),
                               torch.tensor([1 / 3, 1.0, 1.0, 1 / 3]))
    k = bilinear_kernel(4)
    torch.testing.assert_close(k, torch.outer(torch.tensor([.25, .75, .75, .25]), torch.tensor([.25, .75, .75, .25])))
    # odd size: centre tap 1, linear fall-off
    torch.testing.assert_close(bilinear_kernel(3)[1], torch.tensor([0.5, 1.0, 0.5]))


@pytest.mark.parametrize("n,k,s,p", [(4, 4, 2, 1), (5, 4, 2, 0), (16, 4, 2, 0), (7, 16, 8, 4), (1, 64, 32, 0)])
def test_transposed_output_size_matches_pytorch(n, k, s, p):
    out = nn.ConvTranspose2d(1, 1, k, s, p)(torch.zeros(1, 1, n, n + 1))
    assert out.shape[-2:] == (transposed_output_size(n, k, s, p), transposed_output_size(n + 1, k, s, p))


@pytest.mark.parametrize("factor,padding", [(2, 0), (2, 1), (8, 4), (32, 0)])
def test_bilinear_upsampling_keeps_constant_interior(factor, padding):
    up = Upsample(3, factor, padding=padding)
    y = up(torch.full((1, 3, 6, 5), 2.5))
    k = 2 * factor
    margin = k - padding  # outputs further than a kernel from the border see full support
    interior = y[..., margin:-margin, margin:-margin]
    assert interior.numel() > 0
    torch.testing.assert_close(interior, torch.full_like(interior, 2.5))


def test_upsample_is_diagonal_and_fixed_by_default():
    up = Upsample(3, 2)
    assert not up.weight.requires_grad
    w = up.weight.detach()
    assert w[0, 1].abs().sum() == 0 and w[2, 2].sum() > 0
    # class 1 alone in the input stays in class 1
    x = torch.zeros(1, 3, 4, 4)
    x[:, 1] = 1.0
    y = up(x)
    assert y[:, 0].abs().sum() == 0 and y[:, 2].abs().sum() == 0 and y[:, 1].sum() > 0
    assert Upsample(3, 2, learnable=True).weight.requires_grad


def test_crop_and_fuse():
    big = torch.arange(100.).view(1, 1, 10, 10)
    ref = torch.zeros(1, 1, 4, 3)
    torch.testing.assert_close(crop_like(big, ref, 5), big[..., 5:9, 5:8])
    torch.testing.assert_close(fuse(ref + 1, big, 2), big[..., 2:6, 2:5] + 1)
    with pytest.raises(ValueError, match="cannot crop"):
        crop_like(big, ref, 7)


def test_frozen_upsample_runs_per_class_and_learnable_weights_keep_the_dense_path():
    """A diagonal (released, frozen) upsampling weight runs as a grouped transposed conv with the
    dense one's sums; a weight where one class feeds another, or one being learnt, runs dense."""
    up = Upsample(5, 8, padding=4).eval()
    x = torch.randn(2, 5, 6, 7, generator=torch.Generator().manual_seed(0))
    dense = lambda: nn.ConvTranspose2d.forward(up, x)  # noqa: E731
    with torch.no_grad():
        fast = up(x)
        assert up._per_class is not None and up._per_class.shape == (5, 1, 16, 16)
        torch.testing.assert_close(fast, dense(), atol=1e-5, rtol=1e-5)
        up.weight[0, 1, 3, 3] = 0.5  # class 1 now feeds class 0: the grouped conv cannot say that
        assert torch.equal(up(x), dense()) and up._per_class is None
    learnt = Upsample(3, 2, padding=1, learnable=True)
    learnt(torch.randn(1, 3, 4, 4)).sum().backward()
    assert learnt.weight.grad[0, 1].abs().sum() > 0  # off-diagonal weights get a gradient


def test_class_map_is_argmax_over_the_class_dimension_ties_to_the_lowest_class():
    from fcnkit.nn import class_map

    scores = torch.randint(0, 3, (2, 5, 7, 9)).float()  # many ties
    expected = scores.argmax(1)
    assert torch.equal(class_map(scores), expected)
    assert torch.equal(class_map(scores.contiguous(memory_format=torch.channels_last)), expected)
    assert torch.equal(class_map(scores[0], 0), expected[0])
    tie = torch.zeros(1, 4, 1, 1)
    tie[0, 1] = tie[0, 3] = 1.0
    assert class_map(tie).item() == 1
