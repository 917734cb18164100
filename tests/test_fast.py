"""The fast paths: compiled bf16 channels-last inference, and the compiled training step.

They are the GPU defaults; here they run through the same code on the CPU (inductor's C++
backend), which is what can be checked without a GPU: the same results as eager float32,
and no recompilation when only the style weights change.
"""

import pytest
import torch

from cin_style import StyleModel, StyleTransformer, one_hot_styles
from cin_style.network.fast import CompiledTransformer
from _nets import random_style_net


def _net() -> StyleTransformer:
    return random_style_net(3)


def test_eager_wrapper_in_float32_is_the_network_itself():
    net = _net()
    x = torch.rand(2, 3, 40, 36)
    w = torch.tensor([[0.2, 0.3, 0.5], [0.0, 1.0, 0.0]])
    plain = CompiledTransformer(net, dtype=None, channels_last=True, compile=False)
    with torch.no_grad():
        assert torch.allclose(plain(x, w), net(x, w), atol=1e-5)
    with pytest.raises(ValueError, match="per-sample"):
        plain(x, torch.rand(2, 3, 40, 36))


def test_compiled_bf16_matches_float32_and_blends_never_recompile():
    net = _net()
    x = torch.rand(2, 3, 48, 40)
    fast = CompiledTransformer(net)  # bf16, channels-last, torch.compile
    first = fast(x, one_hot_styles([0, 1], 3))
    with torch.no_grad():
        assert (first - net(x, one_hot_styles([0, 1], 3))).abs().mean() < 0.01  # bf16 rounding only
    torch.compiler.set_stance("fail_on_recompile")
    try:
        for w in (torch.tensor([[0.2, 0.3, 0.5], [0.5, 0.5, 0.0]]), one_hot_styles([2, 2], 3)):
            out = fast(x, w)  # a new blend: the same graph
            with torch.no_grad():
                assert (out - net(x, w)).abs().mean() < 0.01
        with pytest.raises(RuntimeError):  # the control: a new size does need a new graph
            fast(torch.rand(2, 3, 32, 32), one_hot_styles([0, 1], 3))
    finally:
        torch.compiler.set_stance("default")


def test_accelerated_model_uses_the_compiled_path_for_per_sample_weights_only():
    model = StyleModel(_net(), ["a", "b", "c"], device="cpu").accelerate(compile=False)
    calls = []
    real = model.engine.compiled._forward
    model.engine.compiled._forward = lambda *a: calls.append(1) or real(*a)
    x = torch.rand(1, 3, 32, 32)
    model.stylize_tensor(x, model.weights("a=0.5,b=0.5"))
    assert calls == [1]
    mask = torch.zeros(3, 32, 32)
    mask[0, :, :16], mask[1, :, 16:] = 1, 1
    model.stylize_tensor(x, mask)  # per-pixel weights: the plain network, with per-region statistics
    assert calls == [1]


def test_compiled_training_step_matches_eager(vgg_state):
    """experiment=paintings compiles the transformer and the loss as one graph, in channels-last
    memory: the same loss and the same convolution gradients as the eager float32 step.
    (Measured: loss within 3e-7 relative, conv gradients within 0.3%. The beta of each residual
    block's second norm has a mathematically zero gradient, so its rounding noise is not compared.)"""
    from cin_style.training.module import StyleTransferModule

    results = []
    for fast in (False, True):
        torch.manual_seed(0)
        module = StyleTransferModule(style_names=["a", "b"], width=0.25, loss={"vgg_weights": None}, compile=fast, channels_last=fast)
        module.set_style_targets([torch.rand(3, 64, 64), torch.rand(3, 64, 64)])
        torch.manual_seed(1)
        loss = module.training_step(torch.rand(4, 3, 64, 64), 0)
        loss.backward()
        grads = {n: p.grad.clone() for n, p in module.transformer.named_parameters() if n.endswith("conv.weight")}
        results.append((loss.detach(), grads))
    (loss_eager, eager), (loss_compiled, compiled) = results
    assert torch.allclose(loss_compiled, loss_eager, rtol=1e-4)
    assert len(eager) == 16
    for name, grad in eager.items():
        assert (compiled[name] - grad).norm() <= 0.01 * grad.norm(), name
