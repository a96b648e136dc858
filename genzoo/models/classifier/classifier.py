"""A small CNN classifier whose penultimate features define genzoo's own feature space for grey images.

It exists to judge samples: ``classifier-fashion-mnist`` gives the "Fréchet distance (genzoo
Fashion-MNIST features)" (never called FID, which means the InceptionV3 network), KID and
precision/recall of the 28x28 grey checkpoints. It subclasses :class:`GenerativeModel` only to share the
checkpoint machinery (config + safetensors, Hub, registry, ``genzoo.load``); it has no ``sample``.

Network: [conv3x3-BN-ReLU, conv3x3-BN-ReLU, maxpool 2] x 2 levels, flatten, linear -> ``feature_dim``
(ReLU: the features), dropout, linear -> logits. Trained with labels by :meth:`Classifier.fit`
(AdamW, cosine schedule, random 2-pixel shifts), since the generic trainer feeds images only.
"""
from __future__ import annotations

import math
from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from ...modeling import GenerativeModel

@dataclass(frozen=True)
class ClassifierConfig:
    image_size: int = 28
    in_channels: int = 1
    num_classes: int = 10
    channels: tuple[int, ...] = (16, 32)
    feature_dim: int = 128
    dropout: float = 0.3

    def __post_init__(self) -> None:
        if self.image_size % 2 ** len(self.channels):
            raise ValueError(f"image_size={self.image_size} must be divisible by 2^{len(self.channels)}")
        if self.num_classes < 2 or self.feature_dim < 1:
            raise ValueError("need num_classes >= 2 and feature_dim >= 1")


class Classifier(GenerativeModel):
    """Image classifier; :meth:`features` are what sample-quality metrics compare."""

    config_class = ClassifierConfig
    card_tags = ["genzoo", "image-classification", "feature-extraction", "classifier"]
    card_usage = ("x = torch.rand(16, {c}, {h}, {w})  # images in [0, 1]\n"
                  "features = model.features(x)  # (16, 128): the space of genzoo's grey sample-quality metrics\n"
                  "labels = model(x).argmax(1)  # class predictions")

    def __init__(self, config: ClassifierConfig) -> None:
        super().__init__(config)
        layers: list[nn.Module] = []
        cin = config.in_channels
        for c in config.channels:
            layers += [nn.Conv2d(cin, c, 3, padding=1), nn.BatchNorm2d(c), nn.ReLU(),
                       nn.Conv2d(c, c, 3, padding=1), nn.BatchNorm2d(c), nn.ReLU(), nn.MaxPool2d(2)]
            cin = c
        side = config.image_size // 2 ** len(config.channels)
        self.body = nn.Sequential(*layers, nn.Flatten(), nn.Linear(cin * side * side, config.feature_dim), nn.ReLU())
        self.dropout = nn.Dropout(config.dropout)
        self.head = nn.Linear(config.feature_dim, config.num_classes)

    def features(self, x: Tensor) -> Tensor:
        """Penultimate features ``(B, feature_dim)`` of images in [0, 1]."""
        self.check_images(x)
        return self.body(x * 2 - 1)

    def forward(self, x: Tensor) -> Tensor:
        """Class logits ``(B, num_classes)``."""
        return self.head(self.dropout(self.features(x)))

    def loss(self, batch: Tensor, labels: Tensor | None = None) -> dict[str, Tensor]:
        if labels is None:
            raise ValueError("the classifier's loss needs labels")
        logits = self(batch)
        return {"loss": F.cross_entropy(logits, labels),
                "accuracy": (logits.argmax(1) == labels).float().mean()}

    def sample(self, n: int, generator: torch.Generator | None = None, temperature: float = 1.0) -> Tensor:
        raise NotImplementedError("a classifier does not sample; it provides features for sample-quality metrics")

    @torch.no_grad()
    def accuracy(self, images: Tensor, labels: Tensor, batch_size: int = 1000) -> float:
        """Top-1 accuracy on uint8 or [0, 1] images."""
        was = self.training
        self.eval()
        correct = 0
        for i in range(0, len(images), batch_size):
            x = _as_float(images[i:i + batch_size]).to(self.device)
            correct += int((self(x).argmax(1).cpu() == labels[i:i + batch_size].cpu()).sum())
        self.train(was)
        return correct / len(images)

    def fit(self, images: Tensor, labels: Tensor, steps: int = 2000, batch_size: int = 128, lr: float = 2e-3,
            weight_decay: float = 1e-4, seed: int = 0, shift: int = 2, progress: bool = False) -> "Classifier":
        """Supervised training (AdamW, linear warmup of 100 steps then cosine, random shifts of up to
        ``shift`` pixels); seeded, so the same call gives the same weights on the same machine."""
        if len(images) != len(labels):
            raise ValueError(f"{len(images)} images but {len(labels)} labels")
        torch.manual_seed(seed)
        gen = torch.Generator().manual_seed(seed)
        opt = torch.optim.AdamW(self.parameters(), lr=lr, weight_decay=weight_decay)
        sched = torch.optim.lr_scheduler.LambdaLR(
            opt, lambda i: min(1.0, (i + 1) / 100) * 0.5 * (1 + math.cos(math.pi * min(1.0, i / steps))))
        from tqdm.auto import tqdm

        self.train()
        perm, pos = torch.randperm(len(images), generator=gen), 0
        bar = tqdm(total=steps, disable=not progress, desc="train classifier", unit="step", dynamic_ncols=True)
        for step in range(steps):
            if pos + batch_size > len(perm):
                perm, pos = torch.randperm(len(images), generator=gen), 0
            idx = perm[pos:pos + batch_size]
            pos += batch_size
            x = _shift(_as_float(images[idx]), shift, gen).to(self.device)
            out = self.loss(x, labels[idx].to(self.device))
            opt.zero_grad(set_to_none=True)
            out["loss"].backward()
            opt.step()
            sched.step()
            bar.update(1)
            if (step + 1) % 50 == 0:
                bar.set_postfix(loss=f"{out['loss'].item():.4f}", acc=f"{out['accuracy'].item():.3f}")
        bar.close()
        return self.eval()


def _as_float(x: Tensor) -> Tensor:
    return x.float().div(255) if x.dtype == torch.uint8 else x.float()


def _shift(x: Tensor, shift: int, gen: torch.Generator) -> Tensor:
    """Random translations by up to ``shift`` pixels (zero padding), one per image."""
    if shift <= 0:
        return x
    b, _, h, w = x.shape
    padded = F.pad(x, (shift, shift, shift, shift))
    dx = torch.randint(0, 2 * shift + 1, (b,), generator=gen)
    dy = torch.randint(0, 2 * shift + 1, (b,), generator=gen)
    rows = (dy[:, None] + torch.arange(h)[None])[:, None, :, None].expand(b, x.shape[1], h, w + 2 * shift)
    out = padded.gather(2, rows)
    cols = (dx[:, None] + torch.arange(w)[None])[:, None, None, :].expand(b, x.shape[1], h, w)
    return out.gather(3, cols)


# ---- registry ---------------------------------------------------------------------------------
from ...registry import register  # noqa: E402

register(
    "classifier-fashion-mnist", Classifier, ClassifierConfig(),
    hub_id="genzoo/classifier-fashion-mnist", dataset="fashion-mnist",
    description="Fashion-MNIST classifier (small CNN, 10 classes) whose 128-d penultimate features define the "
                "\"Fréchet distance (genzoo Fashion-MNIST features)\", KID and precision/recall of genzoo's 28x28 "
                "grey checkpoints; trained by genzoo's own recipe on the 60k training split.",
    recipe={"data": {"name": "fashion-mnist"}, "classifier_train": {"steps": 2000, "batch_size": 128, "lr": 2e-3,
                                                                     "seed": 0}},
    card_notes="Not a generative model: `genzoo.load('classifier-fashion-mnist')` returns a `Classifier` whose "
               "`features(x)` (x: (B, 1, 28, 28) in [0, 1]) feed `genzoo.metrics.frechet_distance`, "
               "`kernel_inception_distance` and `precision_recall`. It has no `sample`.",
)
