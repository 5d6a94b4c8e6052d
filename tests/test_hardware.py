"""soups.hardware.autocast: a forward pass inside one long bf16 context sees the weights as they are now."""

import torch

from soups.hardware import autocast


def test_a_forward_after_an_optimizer_step_uses_the_new_weights_in_the_same_context():
    # PPO runs rollouts, optimizer steps and more rollouts inside one autocast context; torch's default weight
    # cache would keep serving the bf16 copy made at the first forward, so the policy never changed
    torch.manual_seed(0)
    layer = torch.nn.Linear(16, 8, bias=False)
    x = torch.randn(4, 16)
    opt = torch.optim.SGD(layer.parameters(), lr=0.5)
    with autocast(True):
        before = layer(x)
        before.float().pow(2).sum().backward()
        opt.step()
        after = layer(x)
    w = layer.weight.detach().double()
    expected = x.double() @ w.T  # the updated weights, in float64
    assert after.dtype == torch.bfloat16
    assert torch.allclose(after.double(), expected, rtol=2e-2, atol=2e-2)
    assert (after.double() - before.double()).abs().max() > 0.5  # the step moved the output, and the forward saw it


def test_disabled_is_plain_float32():
    layer = torch.nn.Linear(4, 2)
    with autocast(False):
        assert layer(torch.randn(1, 4)).dtype == torch.float32
