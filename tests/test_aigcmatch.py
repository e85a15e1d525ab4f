"""AIGCMatch: attention-placed CutMix box and attention-weighted channel dropout, by hand on tiny tensors; with both
switches on ``random`` it is UniMatch, step for step."""

import copy

import pytest
import torch

from conftest import build_method
from sslseg import SslsegError
from sslseg.methods import method_params
from sslseg.methods.aigcmatch import attention_dropout, place_boxes, spatial_attention
from sslseg.models import build_model


def test_spatial_attention_is_the_channel_mean_of_squares_resized():
    feat = torch.tensor([1.0, 3.0]).view(1, 2, 1, 1)  # (1 + 9) / 2 = 5 everywhere
    assert torch.equal(spatial_attention(feat, (2, 3)), torch.full((1, 2, 3), 5.0))
    feat = torch.tensor([[[[1.0, 0.0], [0.0, 2.0]]]])  # one channel: squares 1, 0, 0, 4
    assert spatial_attention(feat, (2, 2)).tolist() == [[[1.0, 0.0], [0.0, 4.0]]]


def test_box_goes_to_the_window_of_largest_mean_attention():
    att = torch.zeros(3, 4, 4)
    att[0, 2, 1] = att[0, 2, 2] = att[0, 3, 2] = 1.0
    # 2x2 windows of image 0: top-left (2, 1) covers (2,1), (2,2), (3,1), (3,2) -> 3/4, the maximum
    # ((2, 2) and (1, 1) cover 2 of the ones -> 2/4)
    box = torch.zeros(3, 4, 4)
    box[0, 0:2, 0:2] = 1  # drawn at the top left
    box[2, 1:2, 0:3] = 1  # a 1x3 box on uniform attention: every window ties -> the first, (0, 0)
    out = place_boxes(box, att)
    expected0 = torch.zeros(4, 4)
    expected0[2:4, 1:3] = 1
    assert torch.equal(out[0], expected0)
    assert torch.equal(out[1], torch.zeros(4, 4))  # no box drawn (p_cutmix) stays none
    expected2 = torch.zeros(4, 4)
    expected2[0, 0:3] = 1
    assert torch.equal(out[2], expected2)


def test_attention_dropout_drops_attended_channels_more_and_rescales():
    # channel values 1, 1, 1, 3: w = f^2 = 1, 1, 1, 9, mean 3; p = 0.5 -> p_c = 0.5 w / 3 = 1/6, 1/6, 1/6, 1.5
    # capped at 0.9. Draws u = 0.1, 0.5, 0.2, 0.95: channel 0 dropped (0.1 < 1/6); 1 and 2 kept x 1/(5/6) = 1.2;
    # channel 3 kept (0.95 >= 0.9) x 1/(1 - 0.9) = 10 -> 30.
    feat = torch.tensor([1.0, 1.0, 1.0, 3.0]).view(1, 4, 1, 1).expand(1, 4, 2, 2)
    u = torch.tensor([[0.1, 0.5, 0.2, 0.95]])
    out = attention_dropout(feat, 0.5, 0.9, u)
    assert out[0, :, 0, 0].tolist() == pytest.approx([0.0, 1.2, 1.2, 30.0])
    assert (out == out[:, :, :1, :1]).all()  # whole channels
    # the same draws with uniform attention (all channels equal): p_c = 0.5 everywhere -> 0, x2, 0, x2
    flat = attention_dropout(torch.ones(1, 4, 1, 1), 0.5, 0.9, u)
    assert flat.flatten().tolist() == [0.0, 2.0, 0.0, 2.0]
    # the mean drop rate is p: over many draws, 1/6 of the quiet channels and 0.9 of the loud one are dropped
    torch.manual_seed(0)
    big = feat.expand(20000, 4, 2, 2)
    dropped = (attention_dropout(big, 0.5, 0.9)[:, :, 0, 0] == 0).float().mean(0)
    assert dropped.tolist() == pytest.approx([1 / 6, 1 / 6, 1 / 6, 0.9], abs=0.01)


def tiny_unet():
    return build_model({"name": "unet", "channels": [4, 8], "dropout": [0.0, 0.0]}, 2, 1, 3)


def batch():
    g = torch.Generator().manual_seed(1)
    return {"x_l": torch.rand(2, 1, 16, 16, generator=g), "y_l": torch.randint(0, 3, (2, 16, 16), generator=g),
            "x_u": torch.rand(2, 1, 16, 16, generator=g), "x_u_mix": torch.rand(2, 1, 16, 16, generator=g)}


def step(name, params):
    """One training step from fixed weights and draws: (the student before the step, loss, logs)."""
    torch.manual_seed(0)
    m = build_method(name, tiny_unet, method_params(name, params), 10, 3)
    before = copy.deepcopy(m.student)
    torch.manual_seed(1)
    loss, logs = m.training_step(batch(), 0)
    return before, loss, logs


def test_random_switches_are_unimatch_step_for_step():
    _, ref, ref_logs = step("unimatch", {"p_cutmix": 1.0})
    _, loss, logs = step("aigcmatch", {"cutmix": "random", "fp": "random", "p_cutmix": 1.0})
    assert torch.equal(loss, ref) and logs == ref_logs
    _, att, _ = step("aigcmatch", {"p_cutmix": 1.0})
    assert not torch.equal(att, ref)  # the attention-guided perturbations change the step


def test_attention_cutmix_box_follows_the_mix_source_attention(monkeypatch):
    import sslseg.methods.aigcmatch as ag

    seen = {}
    real = ag.place_boxes

    def spy(box, att):
        seen["box"], seen["att"] = box, att
        seen["out"] = real(box, att)
        return seen["out"]

    monkeypatch.setattr(ag, "place_boxes", spy)
    net, _, _ = step("aigcmatch", {"fp": "random", "p_cutmix": 1.0})
    # the attention is the eval-mode deepest encoder feature of x_u_mix (the network as the step found it), at
    # image size
    with torch.no_grad():
        expected = spatial_attention(net.eval().encode(batch()["x_u_mix"])[-1], (16, 16))
    torch.testing.assert_close(seen["att"], expected)
    # every placed box has the drawn box's size and sits on a window of maximal mean attention
    for i in range(2):
        assert seen["out"][i].sum() == seen["box"][i].sum()
        rows, cols = seen["out"][i].any(1).nonzero(), seen["out"][i].any(0).nonzero()
        h, w = len(rows), len(cols)
        score = torch.nn.functional.avg_pool2d(seen["att"][i][None, None], (h, w), stride=1)[0, 0]
        assert score[rows[0], cols[0]] == score.max()


def test_switches_are_validated():
    with pytest.raises(SslsegError, match="'cutmix' of method 'aigcmatch' must be one of 'attention', 'random'"):
        method_params("aigcmatch", {"cutmix": "saliency"})
    with pytest.raises(SslsegError, match="p_fp_max"):
        method_params("aigcmatch", {"p_fp_max": 1.0})
