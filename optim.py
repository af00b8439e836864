"""
Muon: momentum, then each weight matrix's update replaced by the nearest semi-orthogonal matrix
(all its singular values about 1), so every direction the gradient points along moves at the same
rate. train.py uses it for the LM blocks' matrices and tokenizer.py for the tokenizer's
convolutions; the paper trains with AdamW, which `--optimizer=adamw` gives back (README).
Also the learning-rate schedule both scripts use.
"""
import math

import torch


def cosine_lr(it, max_lr, min_lr, warmup_iters, decay_iters):
    """The learning rate at step `it`: linear warmup reaching max_lr at step warmup_iters - 1
    (never 0), cosine decay to min_lr at decay_iters, then min_lr."""
    if it < warmup_iters:
        return max_lr * (it + 1) / warmup_iters
    if it >= decay_iters:
        return min_lr
    progress = (it - warmup_iters) / max(1, decay_iters - warmup_iters)
    return min_lr + 0.5 * (max_lr - min_lr) * (1 + math.cos(math.pi * progress))


def orthogonalize(g, steps=5):
    """The nearest semi-orthogonal matrix to g [m, n], or to each matrix of g [batch, m, n],
    approximately: a quintic Newton-Schulz iteration whose coefficients push every singular value
    into about [0.7, 1.2] in 5 steps (singular values far below the largest one grow less)."""
    if g.dim() == 2:
        return orthogonalize(g[None], steps)[0]
    a, b, c = 3.4445, -4.7750, 2.0315
    x = g / (g.norm(dim=(-2, -1), keepdim=True) + 1e-7)
    tall = x.shape[-2] > x.shape[-1]
    if tall:  # iterate on the smaller Gram matrix
        x = x.mT
    for _ in range(steps):
        s = x @ x.mT
        x = torch.baddbmm(x, torch.baddbmm(s, s, s, beta=b, alpha=c), x, beta=a)  # a x + (b s + c s^2) x
    return x.mT if tall else x


class Muon(torch.optim.Optimizer):
    """
    Muon for weights of 2 or more dimensions (a convolution's [out, in, *kernel] is the matrix
    [out, in * kernel]). Nesterov momentum, orthogonalised update, decoupled weight decay. The
    update's RMS is scaled to 0.2, about AdamW's, so the two share one learning rate and
    schedule. Weights of one shape are orthogonalised together, as one batch.
    """

    def __init__(self, params, lr, momentum=0.95, weight_decay=0.0):
        super().__init__(params, dict(lr=lr, momentum=momentum, weight_decay=weight_decay))

    @torch.no_grad()
    def step(self):
        for group in self.param_groups:
            by_shape = {}
            for p in group["params"]:
                if p.grad is not None:
                    by_shape.setdefault(p.shape, []).append(p)
            for shape, params in by_shape.items():
                grads = []
                for p in params:
                    state = self.state[p]
                    if not state:
                        state["momentum"] = torch.zeros_like(p)
                    buf = state["momentum"].lerp_(p.grad, 1 - group["momentum"])
                    grads.append(p.grad.lerp(buf, group["momentum"]).flatten(1))  # Nesterov
                updates = orthogonalize(torch.stack(grads))
                scale = 0.2 * max(updates.shape[-2:]) ** 0.5
                for p, update in zip(params, updates):
                    p.mul_(1 - group["lr"] * group["weight_decay"])
                    p.add_(update.view(shape).to(p.dtype), alpha=-group["lr"] * scale)


class Combined:
    """Several optimizers stepped as one (param_groups, state_dict and zero_grad over all)."""

    def __init__(self, optimizers):
        self.optimizers = optimizers

    @property
    def param_groups(self):  # looked up each time: load_state_dict replaces the group dicts
        return [g for o in self.optimizers for g in o.param_groups]

    def step(self):
        for o in self.optimizers:
            o.step()

    def zero_grad(self, set_to_none=True):
        for o in self.optimizers:
            o.zero_grad(set_to_none=set_to_none)

    def state_dict(self):
        return [o.state_dict() for o in self.optimizers]

    def load_state_dict(self, states):
        for o, s in zip(self.optimizers, states):
            o.load_state_dict(s)
