"""One training iteration written out by hand (data seeding, forward, loss, backward, clipping, SGD with momentum
and weight decay) equals the first iteration of ``rssd.train.fit`` bit for bit on CPU; ``train_step`` is fit's."""

from __future__ import annotations

import random
from pathlib import Path

import numpy as np
import torch

from rssd.config import get_config
from rssd.data import collate
from rssd.model import build_ssd
from rssd.train import (
    SampleStream,
    build_criterion,
    build_train_dataset,
    fit,
    lr_factor,
    train_step,
    train_transform,
)


def first_batch(config, base, transform):
    """The first batch of ``fit``: positions 0..B-1 of the sample stream, each augmented under its own seed."""
    stream = iter(SampleStream(len(base), config.seed))
    items = []
    for _ in range(config.batch_size):
        position, index = next(stream)
        s = (config.seed * 1_000_003 + position) % (2**62)
        with torch.random.fork_rng(devices=[]):
            torch.manual_seed(s)
            random.seed(s)
            np.random.seed(s % (2**32))
            items.append(transform(*base[index]))
    images, targets = collate(items)
    return images.contiguous(memory_format=torch.channels_last), [
        {"boxes": t["boxes"].float(), "labels": t["labels"].long()} for t in targets
    ]


def test_first_iteration_by_hand_equals_fit(tmp_path: Path) -> None:
    config = get_config(
        "ssd-cpu-synth", name="one", iterations=4, batch_size=2, synth_images=12, workers=0, out_dir=str(tmp_path),
        device="cpu", warmup_iterations=2, checkpoint_every=2, log_every=1,
    )  # fmt: skip
    base = build_train_dataset(config)
    torch.manual_seed(config.seed)
    model = build_ssd(config.model, len(base.classes) + 1).to(memory_format=torch.channels_last).train()
    images, targets = first_batch(config, base, train_transform(model, config.augment))
    criterion = build_criterion(config, len(base.classes) + 1)  # the loss fit builds (tests/test_train.py)
    loc, conf = model(images)
    terms = criterion(loc, conf, model.priors, targets)
    terms["total"].backward()
    torch.nn.utils.clip_grad_norm_(model.parameters(), config.grad_clip)
    lr = config.lr * lr_factor(0, config)
    with torch.no_grad():
        for p in model.parameters():  # SGD, first step: the momentum buffer is the decayed gradient itself
            p.add_(p.grad.add(p, alpha=config.weight_decay), alpha=-lr)
    result = fit(config, until=1, progress=False)
    ours, theirs = model.state_dict(), result.model.state_dict()
    assert all(torch.equal(ours[k], theirs[k]) for k in ours)  # parameters and BatchNorm statistics
    assert result.history[0]["total"] == float(terms["total"].detach())

    # train_step is that iteration: the same on a fresh copy
    torch.manual_seed(config.seed)
    again = build_ssd(config.model, len(base.classes) + 1).to(memory_format=torch.channels_last).train()
    opt = torch.optim.SGD(again.parameters(), lr=config.lr, momentum=config.momentum, weight_decay=config.weight_decay)
    sched = torch.optim.lr_scheduler.LambdaLR(opt, lambda it: lr_factor(it, config))
    seen = []
    out = train_step(again, criterion, opt, sched, images, targets, again.priors, grad_clip=config.grad_clip,
                     before_update=lambda t: seen.append(float(t["total"].detach())))  # fmt: skip
    assert seen == [float(out["total"].detach())] == [float(terms["total"].detach())]
    assert all(torch.equal(again.state_dict()[k], theirs[k]) for k in theirs)
    assert sched.get_last_lr()[0] == config.lr * lr_factor(1, config)
