"""The stability term (cin_style.losses.stability): zero without a perturbation, zero for a network that follows
its input exactly, positive for one that does not, and its gradient reaches the transformer."""

import pytest
import torch

from cin_style.training.module import StyleTransferModule
from cin_style.losses.stability import perturb, stability_loss


def photos(seed: int = 0) -> torch.Tensor:
    g = torch.Generator().manual_seed(seed)
    return torch.rand(3, 3, 32, 40, generator=g)


def test_no_perturbation_gives_exactly_zero():
    x = photos()
    p = perturb(x, shift=0, noise=0.0, brightness=0.0)
    assert torch.equal(p.perturbed, x) and (p.dy, p.dx) == (0, 0)
    y = torch.sigmoid(x * 3 - 1)  # any output
    assert torch.equal(stability_loss(y, torch.sigmoid(p.perturbed * 3 - 1), x, p), torch.zeros(3))


@pytest.mark.parametrize("seed", range(6))
def test_a_network_that_follows_its_input_is_perfectly_stable(seed):
    x = photos(seed)
    p = perturb(x, shift=4, noise=0.05, brightness=0.1, generator=torch.Generator().manual_seed(seed))
    # The copy is the photo moved by (dy, dx): its interior shows photo pixels (i + dy, j + dx), up to brightness and noise.
    m = p.margin
    inner = p.perturbed[..., m:-m, m:-m]
    shown = x[..., m + p.dy : x.shape[-2] - m + p.dy, m + p.dx : x.shape[-1] - m + p.dx]
    assert (inner - shown).abs().mean() < 0.15
    # The identity "network": its output changes exactly as much as its input.
    assert stability_loss(x, p.perturbed, x, p).max() < 1e-12


def test_a_network_that_ignores_the_shift_is_penalized():
    x = photos()
    g = torch.Generator().manual_seed(3)
    p = perturb(x, shift=4, noise=0.0, brightness=0.0, generator=g)
    while (p.dy, p.dx) == (0, 0):
        p = perturb(x, shift=4, noise=0.0, brightness=0.0, generator=g)
    # A "network" that outputs the original photo whatever it is shown: it does not move with the pan.
    # Its penalty is the photo's own change under the shift (hand-computed here).
    m, h, w = p.margin, x.shape[-2], x.shape[-1]
    expected = (x[..., m + p.dy : h - m + p.dy, m + p.dx : w - m + p.dx] - x[..., m : h - m, m : w - m]).pow(2).flatten(1).mean(1)
    got = stability_loss(x, x, x, p)
    assert torch.allclose(got, expected) and got.min() > 0.01


def test_the_term_reaches_the_transformer_and_is_logged_as_its_own_term():
    torch.manual_seed(0)
    module = StyleTransferModule(
        style_names=["a", "b"], width=0.25, loss={"vgg_weights": "random", "style_layers": {"relu1_2": 1.0}, "content_layers": {"relu1_2": 1.0}},
        stability_weight=100.0, stability_shift=2,
    )  # fmt: skip
    module.set_style_targets([torch.rand(3, 32, 32), torch.rand(3, 32, 32)])
    terms = module.score(photos()[:2, :, :24, :24], torch.tensor([0, 1]))
    assert terms.stability is not None and float(terms.stability.detach().min()) > 0
    assert "stability" in terms.means() and torch.allclose(terms.total, terms.content + terms.style + terms.tv + terms.stability)
    terms.stability.sum().backward()
    grads = [p.grad for name, p in module.transformer.named_parameters() if name.endswith("conv.weight")]
    assert all(g is not None and g.abs().sum() > 0 for g in grads)

    off = StyleTransferModule(style_names=["a", "b"], width=0.25, loss={"vgg_weights": "random"})
    off.set_style_targets([torch.rand(3, 32, 32), torch.rand(3, 32, 32)])
    assert off.score(photos()[:2, :, :24, :24], torch.tensor([0, 1])).stability is None


def test_bad_perturbations_are_refused():
    with pytest.raises(ValueError, match="non-negative"):
        perturb(photos(), noise=-1.0)
    with pytest.raises(ValueError, match="nothing to compare"):
        perturb(photos(), shift=16)
