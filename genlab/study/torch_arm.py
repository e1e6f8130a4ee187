"""The PyTorch arm of the growth study: a plain MLP, CNN or GRU of about the grown network's
parameter count, trained with the same optimizer (Adam, the task's lr), batch order (the
permutations Trainer.batches draws from the same seed) and epochs; PyTorch's default init."""

from __future__ import annotations

import math
import time

import numpy as np

from .tasks import Task


def _solve(a: float, b: float, c: float) -> int:
    """The positive whole root nearest a x^2 + b x + c = 0 (a linear equation when a = 0), at least 1."""
    x = -c / b if a == 0 else (-b + math.sqrt(b * b - 4 * a * c)) / (2 * a)
    return max(1, round(x))


def model(task: Task, data, n_params: int):
    """(the module, its hidden width): one hidden layer sized to about n_params parameters."""
    import torch.nn as nn

    C = data.n_classes
    if task.kind == "conv":  # Conv2d(channels -> c, 3x3, same) + ReLU, then a linear layer over the flattened grid
        ch, H, W = data.sample_shape
        c = _solve(0, ch * 9 + 1 + H * W * C, C - n_params)
        return nn.Sequential(nn.Conv2d(ch, c, 3, padding=1), nn.ReLU(), nn.Flatten(), nn.Linear(c * H * W, C)), c
    if task.kind == "recurrent":  # GRU(F -> h), the logits from the last step's state
        F = data.n_features
        h = _solve(3, 3 * F + 6 + C, C - n_params)
        return _LastStep(nn.GRU(F, h, batch_first=True), nn.Linear(h, C)), h
    F = int(np.prod(data.sample_shape))
    h = _solve(0, F + 1 + C, C - n_params)
    return nn.Sequential(nn.Flatten(), nn.Linear(F, h), nn.ReLU(), nn.Linear(h, C)), h


def _LastStep(rnn, head):
    import torch.nn as nn

    class LastStep(nn.Module):
        def __init__(self):
            super().__init__()
            self.rnn, self.head = rnn, head

        def forward(self, x):
            return self.head(self.rnn(x)[0][:, -1])

    return LastStep()


def run(task: Task, seed: int, n_params: int, device: str | None = None):
    """Train the PyTorch model of the task; (test accuracy per epoch, parameters, seconds of the
    training steps, device)."""
    import torch

    from .arms import data_for

    device = device or ("cuda" if torch.cuda.is_available() else "cpu")
    data = data_for(task, seed)
    torch.manual_seed(seed)
    net, _ = model(task, data, n_params)
    net = net.to(device)
    opt = torch.optim.Adam(net.parameters(), lr=task.lr)
    X, y = (torch.as_tensor(a).to(device) for a in data.train)
    X_test, y_test = (torch.as_tensor(a).to(device) for a in data.test)
    rng = np.random.default_rng(seed)  # the order Trainer.batches draws
    curve, seconds = [], 0.0
    for _ in range(task.epochs):
        start = time.perf_counter()
        for idx in np.array_split(rng.permutation(len(X)), -(-len(X) // task.batch_size)):
            idx = torch.as_tensor(idx, device=device)
            loss = torch.nn.functional.cross_entropy(net(X[idx]), y[idx])
            opt.zero_grad(set_to_none=True)
            loss.backward()
            opt.step()
        if device == "cuda":
            torch.cuda.synchronize()
        seconds += time.perf_counter() - start
        with torch.no_grad():
            hits = sum(int((net(X_test[i:i + 4096]).argmax(-1) == y_test[i:i + 4096]).sum())
                       for i in range(0, len(X_test), 4096))
        curve.append(hits / len(X_test))
    return curve, sum(p.numel() for p in net.parameters()), seconds, device
