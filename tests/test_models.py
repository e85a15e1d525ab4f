"""The model registry: validated parameters, the forward contract, UNet (2D/3D, deep supervision) and VNet
against the reference definitions' layer counts."""

import numpy as np
import pytest
import torch

from sslseg import SslsegError
from sslseg.models import MODELS, build_model, model_error, model_spec


def n_params(m):
    return sum(p.numel() for p in m.parameters())


def test_vnet_matches_the_ua_mt_definition():
    """UA-MT ``code/networks/vnet.py`` (BCP's LA network): 9,448,866 parameters for 1 channel, 2 classes, 16
    filters, batch norm; per block 27 cin cout + cout per 3x3x3 convolution and 2c per BatchNorm."""
    net = build_model({"name": "vnet"}, 3, 1, 2)
    assert n_params(net) == 9_448_866
    conv = lambda cin, cout, k=3: k**3 * cin * cout + cout  # noqa: E731
    f = 16
    assert n_params(net.enc[0]) == conv(1, f) + 2 * f == 480
    assert n_params(net.enc[4]) == 3 * (conv(16 * f, 16 * f) + 2 * 16 * f) == 5_310_720
    assert n_params(net.down[0]) == conv(f, 2 * f, 2) + 2 * 2 * f == 4_192
    assert n_params(net.up[0]) == conv(16 * f, 8 * f, 2) + 2 * 8 * f == 262_528
    assert n_params(net.dec[3]) == conv(f, f) + 2 * f == 6_960
    assert n_params(net.head) == conv(f, 2, 1) == 34
    stages = [sum(isinstance(m, torch.nn.Conv3d) for m in s.modules()) for s in list(net.enc) + list(net.dec)]
    assert stages == [1, 2, 3, 3, 3, 3, 3, 2, 1]
    # instance norm without affine parameters (BCP's Pancreas VNet): the convolutions only
    assert n_params(build_model({"name": "vnet", "normalization": "instancenorm", "has_dropout": False}, 3, 1, 2)) \
        == 9_443_266


def test_vnet_shapes_dropout_and_residual_blocks():
    torch.manual_seed(0)
    net = build_model({"name": "vnet", "n_filters": 4}, 3, 2, 3)
    x = torch.randn(2, 2, 16, 32, 48)
    assert net(x).shape == (2, 3, 16, 32, 48)
    net.eval()
    assert torch.equal(net(x), net(x))  # dropout only in training
    net.train()
    assert not torch.equal(net(x), net(x))
    res = build_model({"name": "vnet", "n_filters": 4, "residual": True, "has_dropout": False}, 3, 1, 2)
    assert n_params(res) == n_params(build_model({"name": "vnet", "n_filters": 4, "has_dropout": False}, 3, 1, 2))
    assert res(torch.randn(2, 1, 16, 16, 16)).shape == (2, 2, 16, 16, 16)


@pytest.mark.parametrize("dims, shape", [(2, (33, 34)), (3, (17, 18, 19))])
def test_unet_odd_shapes_and_deep_supervision_heads(dims, shape):
    """Odd sizes are padded by the caller to multiples of the divisor; at such sizes the main output has the input's
    shape and every auxiliary head its decoder stage's resolution."""
    net = build_model({"name": "unet", "channels": [4, 8, 16, 32], "dropout": [0, 0, 0, 0],
                       "deep_supervision": True}, dims, 3, 5)
    size = tuple(-(-s // net.divisor) * net.divisor for s in shape)
    x = torch.randn((2, 3) + size)
    logits, aux = net.forward_aux(x)
    assert logits.shape == (2, 5) + size
    torch.testing.assert_close(logits, net(x))  # forward_aux's logits are forward's
    assert sorted(aux) == ["down2", "down4"]
    for name, out in aux.items():
        f = int(name[4:])
        assert out.shape == (2, 5) + tuple(s // f for s in size)
    plain = build_model({"name": "unet", "channels": [4, 8, 16, 32], "dropout": [0, 0, 0, 0]}, dims, 3, 5)
    assert plain.forward_aux(x)[1] == {}
    # the heads are 3x3 convolutions from each decoder stage's channels (SSCD's out_conv_dp*)
    assert n_params(net) - n_params(plain) == sum(3**dims * c * 5 + 5 for c in (16, 8))


def reference_unet_shapes(cin: int, n_classes: int, ch=(16, 32, 64, 128, 256)) -> list[tuple[str, tuple]]:
    """Parameter shapes of SSL4MIS/UniMatch/BCP's 2D ``UNet`` (``code/networks/unet.py``), in their order, written
    out from the reference definition: ``ConvBlock`` = conv3x3-BN-LeakyReLU-Dropout-conv3x3-BN-LeakyReLU;
    ``DownBlock`` = maxpool + ConvBlock; ``UpBlock(c1, c2, c2)`` with its default ``bilinear=True`` = conv1x1
    (c1 -> c2) + bilinear x2, concatenation with the skip, ConvBlock(2 c2 -> c2); ``out_conv`` = conv3x3."""
    def conv_block(name, a, b):
        return [(f"{name}.conv1.w", (b, a, 3, 3)), (f"{name}.conv1.b", (b,)), (f"{name}.bn1.w", (b,)),
                (f"{name}.bn1.b", (b,)), (f"{name}.conv2.w", (b, b, 3, 3)), (f"{name}.conv2.b", (b,)),
                (f"{name}.bn2.w", (b,)), (f"{name}.bn2.b", (b,))]
    enc = conv_block("in_conv", cin, ch[0])
    for k in range(1, 5):
        enc += conv_block(f"down{k}", ch[k - 1], ch[k])
    up, dec = [], []
    for k in range(1, 5):  # up1 (256 -> 128) ... up4 (32 -> 16)
        c1, c2 = ch[5 - k], ch[4 - k]
        up += [(f"up{k}.conv1x1.w", (c2, c1, 1, 1)), (f"up{k}.conv1x1.b", (c2,))]
        dec += conv_block(f"up{k}.conv", 2 * c2, c2)
    # this project registers the upsampling layers of all stages before their convolution blocks
    return enc + up + dec + [("out_conv.w", (n_classes, ch[0], 3, 3)), ("out_conv.b", (n_classes,))]


def test_unet_default_is_the_reference_bilinear_decoder_layer_by_layer():
    net = build_model({"name": "unet"}, 2, 1, 4)
    ref = reference_unet_shapes(1, 4)
    ours = [tuple(p.shape) for p in net.parameters()]
    assert ours == [shape for _, shape in ref]
    assert n_params(net) == sum(int(np.prod(s)) for _, s in ref) == 1_813_764
    ups = [m for m in net.modules() if isinstance(m, torch.nn.Upsample)]
    assert len(ups) == 4 and all(u.mode == "bilinear" and u.align_corners and u.scale_factor == 2 for u in ups)
    assert not any(isinstance(m, torch.nn.ConvTranspose2d) for m in net.modules())
    # two input channels, 2 classes: only the first convolution and the head change
    assert [tuple(p.shape) for p in build_model({"name": "unet"}, 2, 3, 2).parameters()] == [
        s for _, s in reference_unet_shapes(3, 2)]


def test_unet_transposed_decoder_is_a_named_option():
    net = build_model({"name": "unet", "upsample": "transpose"}, 2, 1, 4)
    # a 2x2 transposed convolution (c1 -> c2) replaces each 1x1 convolution: 3 * c1 * c2 more weights per stage
    assert n_params(net) == 1_813_764 + 3 * (256 * 128 + 128 * 64 + 64 * 32 + 32 * 16) == 1_944_324
    x = torch.randn(1, 1, 32, 32)
    assert net(x).shape == build_model({"name": "unet"}, 2, 1, 4)(x).shape == (1, 4, 32, 32)
    net3 = build_model({"name": "unet", "channels": [4, 8], "dropout": [0, 0]}, 3, 1, 2)
    assert [m.mode for m in net3.modules() if isinstance(m, torch.nn.Upsample)] == ["trilinear"]
    with pytest.raises(SslsegError, match="'upsample' of model 'unet' must be one of 'bilinear', 'transpose', 'nearest'"):
        model_spec({"name": "unet", "upsample": "cubic"})


@pytest.mark.parametrize("spec, needle", [
    ({"name": "unet", "channels": [8, 16], "dropout": [0.1]}, "equal length"),
    ({"name": "unet", "dropout": [0.1, 0.2, 2.0, 0.3, 0.4]}, "dropout in [0, 1]"),
    ({"name": "unet", "channels": [8, "x"], "dropout": [0, 0]}, "'channels'"),
    ({"name": "vnet", "normalization": "layernorm"}, "one of 'batchnorm'"),
    ({"name": "vnet", "n_filters": 8, "normalization": "groupnorm"}, "multiple of 16"),
    ({"name": "vnet", "filters": 8}, "unknown parameter 'filters'"),
])
def test_model_parameters_are_checked(spec, needle):
    with pytest.raises(SslsegError, match=needle.replace("[", r"\[").replace("]", r"\]")):
        model_spec(spec)


def test_model_spec_fills_defaults_and_dimensionality_is_checked():
    assert model_spec({"name": "vnet"}) == {"name": "vnet", "n_filters": 16, "normalization": "batchnorm",
                                            "has_dropout": True, "residual": False}
    assert model_error({"name": "vnet"}, 2) and model_error({"name": "unet"}, 2) is None
    with pytest.raises(SslsegError, match="3D"):
        build_model({"name": "vnet"}, 2, 1, 2)
    assert set(MODELS.names()) >= {"unet", "vnet"}
