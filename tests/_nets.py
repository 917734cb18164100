"""Networks for tests that need distinct styles without training: random gamma/beta rows."""

import torch

from cin_style import StyleTransformer


def random_style_net(num_styles: int = 3, *, width: float = 0.25, seed: int = 0) -> StyleTransformer:
    """A transformer in eval mode whose styles differ visibly (gamma ~ N(1, 0.5), beta ~ N(0, 0.5)),
    each letting some of the photo through its skip (gains ~ U(0, 1))."""
    torch.manual_seed(seed)
    net = StyleTransformer(num_styles=num_styles, width=width)
    with torch.no_grad():
        for norm in net.norms():
            norm.gamma.normal_(1.0, 0.5)
            norm.beta.normal_(0.0, 0.5)
        net.photo.gain.uniform_(0.0, 1.0)
    return net.eval()


def logits_by_hand(net: StyleTransformer, x: torch.Tensor, w: torch.Tensor) -> torch.Tensor:
    """The last layer's output (before the photo skip and sigmoid), walked module by module
    rather than through ``forward``; ``x`` must have sides divisible by 4 (no padding)."""
    h = x
    with torch.no_grad():
        for layer in net.encoder:
            h = torch.relu(layer(h, w))
        for block in net.residuals:
            h = block(h, w)
        for layer in net.decoder:
            h = torch.relu(layer(h, w))
        return net.output(h, w)
