"""GAN generator/discriminator networks: shapes, ranges, normalisation modes, conditioning, spectral norm."""
from __future__ import annotations

import pytest
import torch

from genzoo.models.gan.nets import Discriminator, Generator


@pytest.mark.parametrize("upsample", ["transposed", "nearest"])
@pytest.mark.parametrize("norm", ["batch", "self_modulated", "conditional"])
def test_generator_shapes_range_and_gradients(upsample, norm):
    torch.manual_seed(0)
    ncls = 3 if norm == "conditional" else 0
    g = Generator(16, 3, (32, 16, 8), upsample=upsample, norm=norm, num_classes=ncls)
    d = Discriminator(3, 16, (8, 16, 32))
    z, y = torch.randn(4, 16), (torch.tensor([0, 1, 2, 0]) if ncls else None)
    x = g(z, y)
    assert x.shape == (4, 3, 16, 16) and float(x.detach().abs().max()) <= 1
    score, feats = d(x)
    score.sum().backward()
    for name, p in g.named_parameters():
        if ".mlp.0." in name:
            continue  # behind the zero-initialised last modulation layer: no gradient at init, by design
        assert p.grad is not None and p.grad.abs().sum() > 0, name


def test_self_modulation_starts_as_batch_norm_and_depends_on_z():
    torch.manual_seed(0)
    g_sm = Generator(8, 1, (16, 8), norm="self_modulated")
    g_bn = Generator(8, 1, (16, 8), norm="batch")
    shared = {k: v for k, v in g_sm.state_dict().items() if k in g_bn.state_dict()}
    g_bn.load_state_dict(shared, strict=False)
    z = torch.randn(5, 8)
    torch.testing.assert_close(g_sm(z), g_bn(z))  # γ = 1, β = 0 at init
    with torch.no_grad():
        for norm in g_sm.norms:
            norm.mlp[-1].weight.normal_()
    out = g_sm(z)
    z2 = z.clone()
    z2[0] += 1.0
    # with BN statistics over the batch, every sample changes; sample 0's modulation changes most
    diff = (g_sm(z2) - out).flatten(1).abs().sum(1)
    assert diff[0] > diff[1:].max()


def test_conditional_generator_and_projection_discriminator_use_labels():
    torch.manual_seed(0)
    g = Generator(8, 1, (16, 8), norm="conditional", num_classes=2)
    with torch.no_grad():
        for norm in g.norms:
            norm.embed.weight.normal_()
    z = torch.randn(1, 8).repeat(2, 1)
    g.eval()
    x = g(z, torch.tensor([0, 1]))
    assert not torch.allclose(x[0], x[1])
    d = Discriminator(1, 8, (8, 16), out_features=4, num_classes=2)
    s0, f0 = d(x[:1], torch.tensor([0]))
    s1, f1 = d(x[:1], torch.tensor([1]))
    assert torch.equal(f0, f1) and f0.shape == (1, 4) and not torch.allclose(s0, s1)
    with pytest.raises(ValueError, match="labels"):
        d(x[:1])
    with pytest.raises(ValueError, match="labels"):
        g(z)


def test_discriminator_spectral_norm_and_errors():
    d = Discriminator(1, 16, (8, 16, 32), spectral_norm=True)
    assert all(hasattr(m, "parametrizations") for m in d.features if isinstance(m, (torch.nn.Conv2d,
                                                                                  torch.nn.Linear)))
    assert any(k.endswith("_u") for k in d.state_dict())
    score, feats = d(torch.randn(2, 1, 16, 16))
    assert score.shape == (2,) and feats.shape == (2, 1)
    with pytest.raises(ValueError, match="image_size"):
        Discriminator(1, 28, (8, 16))
    with pytest.raises(ValueError, match="upsample"):
        Generator(8, 1, upsample="pixelshuffle")
    with pytest.raises(ValueError, match="norm"):
        Generator(8, 1, norm="layer")
