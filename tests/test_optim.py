"""optim.py: Muon's orthogonalisation and its steps."""
import pytest
import torch

from optim import Muon, orthogonalize


@pytest.mark.parametrize("shape", [(96, 32), (32, 96), (384, 128)])
def test_orthogonalize_is_close_to_the_polar_factor(shape):
    """Newton-Schulz gives about U V^T of g = U S V^T: every singular value pulled into about
    [0.7, 1.2] from g's own (here 0.1 to 10), and the direction of the exact factor."""
    g = torch.Generator().manual_seed(0)
    u, _ = torch.linalg.qr(torch.randn(shape[0], min(shape), generator=g))
    v, _ = torch.linalg.qr(torch.randn(shape[1], min(shape), generator=g))
    s = torch.logspace(-1, 1, min(shape))
    out = orthogonalize(u @ torch.diag(s) @ v.t())
    sv = torch.linalg.svdvals(out)
    assert out.shape == shape and sv.min() > 0.6 and sv.max() < 1.25
    polar = u @ v.t()
    assert (out * polar).sum() / (out.norm() * polar.norm()) > 0.97


def test_muon_steps_a_convolution_as_its_out_x_fan_in_matrix():
    """A conv weight [out, in, k, k] moves by an orthogonalised [out, in*k*k] step of RMS 0.2 * lr,
    and weights of one shape, stepped together as a batch, each get their own step."""
    g = torch.Generator().manual_seed(0)
    w = [torch.nn.Parameter(torch.randn(16, 8, 3, 3, generator=g)) for _ in range(2)]
    opt = Muon(w, lr=0.01)
    for p in w:
        p.grad = torch.randn(p.shape, generator=g)
    before = [p.detach().clone() for p in w]
    opt.step()
    for p, b in zip(w, before):
        step = (b - p.detach()).flatten(1) / 0.01  # [16, 72]
        assert 0.14 < step.pow(2).mean().sqrt() < 0.22
        sv = torch.linalg.svdvals(step)
        assert sv.max() / sv.min() < 2.0  # wide, so every singular value was lifted
        # a lone optimizer over this one weight takes the same step: the batch is per matrix
        q = torch.nn.Parameter(b.clone())
        q.grad = p.grad.clone()
        Muon([q], lr=0.01).step()
        torch.testing.assert_close(q.detach(), p.detach(), atol=1e-6, rtol=1e-5)


def test_muon_momentum_is_nesterov_and_weight_decay_is_decoupled():
    """The first step alone cannot tell momentum from none (orthogonalising removes the scale of
    (1 - mu^2) g1), so take two: the buffer is (1 - mu) g1, then mu (1 - mu) g1 + (1 - mu) g2, and
    the second step orthogonalises the Nesterov mix g2 + mu (buf - g2). Weight decay shrinks the
    weight by lr * wd before the step, whatever the gradient."""
    g = torch.Generator().manual_seed(1)
    g1, g2 = torch.randn(8, 24, generator=g), torch.randn(8, 24, generator=g)
    p = torch.nn.Parameter(torch.randn(8, 24, generator=g))
    lr, mu, wd = 0.01, 0.95, 0.1
    opt = Muon([p], lr=lr, momentum=mu, weight_decay=wd)
    p.grad = g1
    opt.step()
    torch.testing.assert_close(opt.state[p]["momentum"], (1 - mu) * g1)
    before = p.detach().clone()
    p.grad = g2
    opt.step()
    buf = mu * (1 - mu) * g1 + (1 - mu) * g2
    expected = before * (1 - lr * wd) - lr * 0.2 * 24 ** 0.5 * orthogonalize(g2.lerp(buf, mu))
    torch.testing.assert_close(p.detach(), expected, atol=1e-6, rtol=1e-5)
    q = torch.nn.Parameter(torch.ones(4, 4))
    q.grad = torch.zeros(4, 4)
    Muon([q], lr=lr, weight_decay=wd).step()  # a zero gradient: decay alone
    torch.testing.assert_close(q.detach(), torch.full((4, 4), 1 - lr * wd))


def test_muon_batches_only_weights_of_one_shape():
    """Weights of different shapes in one group each get their own step, equal to a lone
    optimizer's; weights of one shape are stacked and still stepped one by one."""
    g = torch.Generator().manual_seed(2)
    shapes = [(16, 8), (8, 16), (16, 8), (12, 4, 3)]
    ws = [torch.nn.Parameter(torch.randn(s, generator=g)) for s in shapes]
    grads = [torch.randn(s, generator=g) for s in shapes]
    start = [w.detach().clone() for w in ws]
    for w, gr in zip(ws, grads):
        w.grad = gr
    Muon(ws, lr=0.01).step()
    for w, gr, s in zip(ws, grads, start):
        lone = torch.nn.Parameter(s.clone())
        lone.grad = gr
        Muon([lone], lr=0.01).step()
        torch.testing.assert_close(w.detach(), lone.detach(), atol=1e-6, rtol=1e-5)
