"""Batches for the trainer: any image source → float32 ``(B, C, H, W)`` in [0, 1] on a device.

Accepted sources: a uint8 or float image tensor ``(N, C, H, W)``; an object with an ``.images``
uint8 tensor (genzoo's ``ImageDataset``); any map-style ``torch.utils.data.Dataset`` whose items
are image tensors or ``(image, label, ...)`` tuples. Training order is a per-epoch
``torch.randperm`` drawn from the trainer's own seeded generator; the last incomplete batch of
an epoch is dropped. No DataLoader is used, so the whole state (permutation, position, generator)
is small and a resumed run sees exactly the batches an uninterrupted run would.
"""
from __future__ import annotations

from typing import Any

import torch
from torch import Tensor


class ImageSource:
    """Uniform indexed access to the images of one of the accepted data types."""

    def __init__(self, data: Any, name: str = "data") -> None:
        self.name = name
        if isinstance(data, Tensor):
            self.tensor: Tensor | None = data
            self.dataset = None
        elif isinstance(getattr(data, "images", None), Tensor):
            self.tensor, self.dataset = data.images, None
        elif hasattr(data, "__getitem__") and hasattr(data, "__len__"):
            self.tensor, self.dataset = None, data
        else:
            raise TypeError(f"{name} must be an image tensor (N, C, H, W), an ImageDataset or a map-style "
                            f"Dataset, got {type(data).__name__}")
        if self.tensor is not None:
            t = self.tensor
            if t.dim() != 4:
                raise ValueError(f"{name} must be an image tensor of shape (N, C, H, W), got {tuple(t.shape)}")
            if not (t.dtype == torch.uint8 or t.is_floating_point()):
                raise ValueError(f"{name} has dtype {t.dtype}; pass uint8 images or float images in [0, 1]")
        if len(self) == 0:
            raise ValueError(f"{name} is empty: it has no images to train or evaluate on")
        labels = getattr(data, "labels", None)
        self.label_tensor: Tensor | None = labels if isinstance(labels, Tensor) and labels.dim() == 1 else None

    def __len__(self) -> int:
        return int(self.tensor.shape[0]) if self.tensor is not None else len(self.dataset)

    def get(self, index: Tensor, device: torch.device) -> Tensor:
        """Images at ``index`` (1-D int64) as float32 in [0, 1] on ``device``."""
        if self.tensor is not None:
            x = self.tensor[index.to(self.tensor.device)]
        else:
            items = []
            for i in index.tolist():
                item = self.dataset[i]
                if isinstance(item, (tuple, list)):
                    item = item[0]
                if isinstance(item, dict):
                    raise TypeError(f"{self.name} returns dicts; wrap it to return image tensors")
                items.append(torch.as_tensor(item))
            x = torch.stack(items)
        x = x.to(device, non_blocking=True)
        if x.dtype == torch.uint8:
            return x.to(torch.float32).div_(255.0)
        if not x.is_floating_point():
            raise ValueError(f"{self.name} yields {x.dtype} images; pass uint8 or float images in [0, 1]")
        return x.to(torch.float32)


    def has_labels(self) -> bool:
        """Whether :meth:`get_labels` works: a ``.labels`` tensor, or dataset items ``(image, label, ...)``."""
        if self.label_tensor is not None:
            return True
        if self.dataset is None:
            return False
        item = self.dataset[0]
        return isinstance(item, (tuple, list)) and len(item) > 1

    def get_labels(self, index: Tensor, device: torch.device) -> Tensor:
        """Integer class labels at ``index`` (int64 on ``device``)."""
        if self.label_tensor is not None:
            return self.label_tensor[index.to(self.label_tensor.device)].to(device, torch.int64)
        if not self.has_labels():
            raise ValueError(f"{self.name} has no labels: pass an ImageDataset with labels or a Dataset of "
                             "(image, label) pairs")
        return torch.as_tensor([int(self.dataset[i][1]) for i in index.tolist()], dtype=torch.int64, device=device)


class BatchSampler:
    """Shuffled batches from an :class:`ImageSource`, resumable from ``state()``."""

    def __init__(self, source: ImageSource, batch_size: int, generator: torch.Generator,
                 device: torch.device) -> None:
        self.source, self.generator, self.device = source, generator, device
        self.batch_size = min(batch_size, len(source))
        self.epoch = 0          # completed epochs
        self.position = 0       # index into perm of the next batch's first item
        self.perm: Tensor | None = None

    def _ensure_perm(self) -> None:
        if self.perm is None or self.position + self.batch_size > len(self.perm):
            if self.perm is not None:
                self.epoch += 1
            self.perm = torch.randperm(len(self.source), generator=self.generator)
            self.position = 0

    def _index(self) -> Tensor:
        self._ensure_perm()
        return self.perm[self.position:self.position + self.batch_size]

    def peek(self) -> Tensor:
        """The next batch without consuming it."""
        return self.source.get(self._index(), self.device)

    def next(self) -> Tensor:
        batch = self.peek()
        self.position += self.batch_size
        return batch

    def next_labelled(self) -> tuple[Tensor, Tensor]:
        """The next batch and its class labels (consumed like :meth:`next`)."""
        index = self._index()
        batch, labels = self.source.get(index, self.device), self.source.get_labels(index, self.device)
        self.position += self.batch_size
        return batch, labels

    def state(self) -> tuple[dict[str, Tensor], dict[str, Any]]:
        tensors = {"data.perm": self.perm} if self.perm is not None else {}
        return tensors, {"epoch": self.epoch, "position": self.position, "batch_size": self.batch_size,
                         "num_items": len(self.source)}

    def load_state(self, tensors: dict[str, Tensor], meta: dict[str, Any]) -> None:
        if meta["num_items"] != len(self.source):
            raise ValueError(f"the checkpoint was trained on {meta['num_items']} images but the data has "
                             f"{len(self.source)}; resume with the same data")
        self.epoch, self.position = int(meta["epoch"]), int(meta["position"])
        self.perm = tensors.get("data.perm")


def eval_batches(source: ImageSource, batch_size: int, num_batches: int, device: torch.device):
    """The first ``num_batches`` batches of ``source`` in order (the same ones at every evaluation)."""
    n = len(source)
    batch_size = min(batch_size, n)
    for start in range(0, min(n, batch_size * num_batches), batch_size):
        yield source.get(torch.arange(start, min(start + batch_size, n)), device)
