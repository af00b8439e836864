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
