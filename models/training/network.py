"""The cloud-mask network: a quarter-resolution U-Net behind a 4x4 space-to-depth stem.

Speed is a hard requirement (at least 50x ukis-csmask on two CPU cores in
onnxruntime), so the network never convolves at full resolution:

* the graph starts with the normalisation (see :class:`Stem`: reflectance
  and the log of each 4x4 block's mean, per-band standardised), so the ONNX
  file takes raw digital numbers;
* a 4x4 space-to-depth stem folds every pixel of a 4x4 block into channels:
  no pixel is thrown away, the first convolution already runs at 1/16 of
  the pixels;
* a small U-Net with depthwise-separable residual blocks runs at 1/4, 1/8,
  1/16 and 1/32 resolution; the deepest level gives a receptive field of
  several hundred pixels (shadows lie hundreds of metres from their cloud);
* the pixel head gives every full-resolution pixel its own 5 logits from its
  quarter-resolution cell (a transposed convolution with kernel = stride = 4)
  *and* its own bands through a 1x1 map, the only full-resolution arithmetic
  besides the softmax (written as exp / sum, fast in onnxruntime): a boundary
  can then run through a cell (see :class:`PixelHead`). It carries the nodata
  rule inside that map.

Only torch is imported here; the runtime never needs this file.
"""

from __future__ import annotations

import math

import torch
from torch import nn
import torch.nn.functional as F

#: Per-band centre and spread of log1p(DN / 1000) for B02, B03, B04, B08, chosen from typical clear
#: and cloudy Sentinel-2 values; the network's first layers adapt to the rest.
LOG_MEAN = (0.85, 0.95, 0.95, 1.45)
LOG_STD = (0.55, 0.55, 0.6, 0.5)
DN_SCALE = 1e-4
NORMALISATION_TEXT = (
    "inside the graph: (a) reflectance = DN / 10000 feeds a 4x4 stride-4 convolution (the scale is folded "
    "into its weights, then a learned per-channel standardisation, folded BatchNorm); (b) the 4x4 block "
    "mean of DN goes through log1p(DN / 1000) and (x - mean) / std per band with mean "
    f"{list(LOG_MEAN)} and std {list(LOG_STD)} (B02, B03, B04, B08). DN 0 in all bands is nodata, and "
    "class 5 there is a rule of the graph, not a guess"
)
HEAD_NORMALISATION_TEXT = (
    "; (c) the pixel head: each pixel's reflectance = DN / 10000 feeds a 1x1 convolution (the scale "
    "folded into its weights), which also carries the nodata rule: class 5 where the four DN sum to 0, so DN "
    "must not be negative"
)


def normalisation_text() -> str:
    """How the graph normalises its input, for the model card."""
    return NORMALISATION_TEXT + HEAD_NORMALISATION_TEXT


class Stem(nn.Module):
    """Raw DN (N, 4, H, W) -> quarter-resolution features, without one full-resolution elementwise op.

    Two branches read the input once each: a 4x4 stride-4 convolution on
    reflectance (the 1/10000 scale lives in its weights, so it costs nothing
    at run time), and the log of the 4x4 block mean, which keeps dark
    surfaces and shadows apart at low cost.
    """

    def __init__(self, channels: int, factor: int = 4):
        super().__init__()
        self.factor = factor
        self.weight = nn.Parameter(torch.randn(channels - 4, 4, factor, factor) * (1.0 / factor))
        self.bias = nn.Parameter(torch.zeros(channels - 4))
        self.register_buffer("mean", torch.tensor(LOG_MEAN, dtype=torch.float32).view(1, -1, 1, 1))
        self.register_buffer("std", torch.tensor(LOG_STD, dtype=torch.float32).view(1, -1, 1, 1))
        self.bn = nn.BatchNorm2d(channels)

    def forward(self, dn: torch.Tensor) -> torch.Tensor:
        linear = F.conv2d(dn, self.weight * DN_SCALE, self.bias, stride=self.factor)
        block_mean = F.avg_pool2d(dn, self.factor)
        logs = (torch.log1p(torch.clamp(block_mean, min=0.0) * 0.001) - self.mean) / self.std
        return F.relu(self.bn(torch.cat([linear, logs], dim=1)))


def channel_softmax(clamped: torch.Tensor) -> torch.Tensor:
    """Softmax over axis 1 written as exp / sum: onnxruntime's Softmax on a non-last axis is ~10x slower.

    The logits must be clamped to +-30 already, so no max subtraction is needed (exp(30) * 5 is far from
    float32 overflow).
    """
    e = torch.exp(clamped)
    return e / e.sum(dim=1, keepdim=True)


def conv_bn(cin: int, cout: int, kernel: int = 3, stride: int = 1, dilation: int = 1, groups: int = 1) -> nn.Sequential:
    pad = dilation * (kernel // 2)
    return nn.Sequential(
        nn.Conv2d(cin, cout, kernel, stride, pad, dilation=dilation, groups=groups, bias=False),
        nn.BatchNorm2d(cout),
    )


class SeparableBlock(nn.Module):
    """Residual block: depthwise 3x3 (optionally dilated) -> pointwise 1x1 -> ReLU, plus the input."""

    def __init__(self, channels: int, dilation: int = 1):
        super().__init__()
        self.depthwise = conv_bn(channels, channels, 3, dilation=dilation, groups=channels)
        self.pointwise = conv_bn(channels, channels, 1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return F.relu(x + self.pointwise(F.relu(self.depthwise(x))))


def pointwise(x: torch.Tensor, weight: torch.Tensor, bias: torch.Tensor = None) -> torch.Tensor:
    """A 1x1 convolution (weight (O, C, 1, 1)) written as one MatMul over the flattened pixels."""
    y = torch.matmul(weight[:, :, 0, 0], x.flatten(2))
    if bias is not None:
        y = y + bias[:, None]
    return y.unflatten(2, x.shape[2:])


class PixelHead(nn.Module):
    """Full-resolution head: a pixel's logits from its quarter-resolution context *and* its own DN.

    The plain head gives the 16 pixels of a 4x4 block their logits from one
    cell's features, into which the stem has squeezed the block's 64 values,
    so a pixel is hardly told apart from its block neighbours by its own
    brightness. Yet cloud / semi-transparent boundaries run through blocks:
    in the synthetic test set, 79 % of v1.2.0's cloud errors lie in 4x4
    blocks of mixed truth, and its cloud F1 is 0.97 in uniform blocks but
    0.68 in mixed ones. Here a 1x1 convolution of the pixel's reflectance is
    added to the context logits (``hidden`` 0: each class's logit shifts
    linearly with the pixel's bands, the context sets the threshold), or to
    ``hidden`` context features followed by a ReLU and a 1x1 convolution.
    """

    def __init__(self, channels: int, n_classes: int, factor: int, hidden: int = 0):
        super().__init__()
        width = hidden or n_classes
        self.context = nn.ConvTranspose2d(channels, width, factor, stride=factor)
        self.pixel = nn.Conv2d(4, width, 1, bias=False)
        self.out = nn.Conv2d(hidden, n_classes, 1) if hidden else None
        # set by make_missing_a_rule after training: the rule is built in, and the head takes its export form
        self.carries_missing_rule = False

    def forward(self, features: torch.Tensor, dn: torch.Tensor) -> torch.Tensor:
        weight = self.pixel.weight * DN_SCALE  # the 1/10000 scale folded into the weights: no full-resolution Mul
        if self.carries_missing_rule:
            # after training (the export form): the 1x1 maps as matrix products over the flattened pixels, which
            # onnxruntime runs in the NCHW layout without reordering (the hidden head: 0.99x the plain head's
            # speed, against 0.90x as transposed convolutions, measured)
            z = self.context(features) + pointwise(dn, weight)
            return z if self.out is None else pointwise(F.relu(z), self.out.weight, self.out.bias)
        # the forms the runs were trained in: the same functions, but another summation order would train
        # another model from the same seed
        if self.out is None:
            return self.context(features) + F.conv_transpose2d(dn, weight.transpose(0, 1))
        return self.out(F.relu(self.context(features) + F.conv2d(dn, weight)))

    def make_missing_a_rule(self) -> None:
        """Class 5 becomes a rule of the pixel's own DN, computed by the head's existing maps.

        The missing logit is +30 where the four DN sum to 0 and -30 from a sum of 1 DN on (the softmax
        clamps logits to +-30), so for digital numbers (>= 0) it equals the network's separate
        "every band is 0" rule, which then drops out of the graph: its five full-resolution ops were
        about a sixth of the run time. Linear head: the missing channel becomes 30 - 60 x (DN sum).
        Hidden head: one hidden unit is appended, relu(1 - DN sum), which only the missing logit reads
        (-30 + 60 x unit).
        """
        dn_sum = torch.full((1, 4, 1, 1), 1.0 / DN_SCALE)  # pixel weights are scaled by DN_SCALE in forward
        if self.out is None:
            self.context.weight[:, -1] = 0.0
            self.context.bias[-1] = 30.0
            self.pixel.weight[-1] = -60.0 * dn_sum[0]
        else:
            channels, factor = self.context.weight.shape[0], self.context.weight.shape[2]
            self.context.weight = nn.Parameter(torch.cat([self.context.weight, torch.zeros(channels, 1, factor, factor)], 1))
            self.context.bias = nn.Parameter(torch.cat([self.context.bias, torch.ones(1)]))
            self.pixel.weight = nn.Parameter(torch.cat([self.pixel.weight, -dn_sum]))
            unit = torch.zeros(self.out.weight.shape[0], 1, 1, 1)
            unit[-1] = 60.0
            self.out.weight = nn.Parameter(torch.cat([self.out.weight, unit], 1))
            self.out.weight[-1, :-1] = 0.0
            self.out.bias[-1] = -30.0
            self.context.out_channels = self.pixel.out_channels = self.out.in_channels = self.out.weight.shape[1]
        self.carries_missing_rule = True


class CloudMaskNet(nn.Module):
    """Quarter-resolution U-Net; ``widths`` are the channels at 1/4, 1/8, 1/16 and 1/32 resolution, ending in a
    :class:`PixelHead` with ``head_hidden`` hidden channels (0: linear in the pixels' bands)."""

    def __init__(self, widths, stem: int, head_hidden: int, n_classes: int = 5):
        super().__init__()
        self.stem_factor = stem
        self.n_classes = n_classes
        w0, w1, w2, w3 = widths
        self.stem = nn.Sequential(Stem(w0, stem), conv_bn(w0, w0, 3), nn.ReLU())
        self.enc0 = SeparableBlock(w0)
        self.down1 = nn.Sequential(conv_bn(w0, w1, 3, stride=2), nn.ReLU())
        self.enc1 = SeparableBlock(w1)
        self.down2 = nn.Sequential(conv_bn(w1, w2, 3, stride=2), nn.ReLU())
        self.enc2 = SeparableBlock(w2)
        self.down3 = nn.Sequential(conv_bn(w2, w3, 3, stride=2), nn.ReLU())
        self.enc3 = nn.Sequential(SeparableBlock(w3), SeparableBlock(w3, dilation=2), SeparableBlock(w3))
        self.up2 = conv_bn(w3, w2, 1)
        self.dec2 = SeparableBlock(w2)
        self.up1 = conv_bn(w2, w1, 1)
        self.dec1 = SeparableBlock(w1)
        self.up0 = conv_bn(w1, w0, 1)
        self.dec0 = SeparableBlock(w0)
        self.head = PixelHead(w0, n_classes, stem, head_hidden)
        onehot = torch.zeros(1, n_classes, 1, 1)
        onehot[0, -1] = 60.0
        self.register_buffer("missing_onehot", onehot, persistent=False)

    @property
    def size_multiple(self) -> int:
        return self.stem_factor * 8

    def logits(self, dn: torch.Tensor) -> torch.Tensor:
        """Full-resolution logits (N, K, H, W), for training losses."""
        e0 = self.enc0(self.stem(dn))
        e1 = self.enc1(self.down1(e0))
        e2 = self.enc2(self.down2(e1))
        e3 = self.enc3(self.down3(e2))
        d2 = self.dec2(F.relu(e2 + F.interpolate(self.up2(e3), scale_factor=2.0, mode="nearest")))
        d1 = self.dec1(F.relu(e1 + F.interpolate(self.up1(d2), scale_factor=2.0, mode="nearest")))
        d0 = self.dec0(F.relu(e0 + F.interpolate(self.up0(d1), scale_factor=2.0, mode="nearest")))
        return self.head(d0, dn)

    def forward(self, dn: torch.Tensor) -> torch.Tensor:
        """Probabilities as exported. Class 5 (missing) is a rule, not a guess: after training,
        :func:`make_missing_a_rule` fixes the network's own missing logit to -30, and :meth:`outputs` adds +60 where
        all bands are 0, so a dark but valid pixel can never come out as missing. A :class:`PixelHead` computes the
        same rule from the pixel's DN inside its own maps (see its ``make_missing_a_rule``), so the exported graph
        skips this one."""
        return self.outputs(dn)[0]

    def outputs(self, dn: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """What the ONNX graph returns: probabilities (N, K, H, W), and classes (N, 1, H, W) uint8, the index of
        the most probable class (first on ties), from the same clamped logits. export.py then rewrites the head at
        quarter resolution with the softmax behind a switch (fast_head.py), for callers that want class maps only."""
        logits = self.logits(dn)
        if not self.head.carries_missing_rule:
            logits = logits + (dn.amax(dim=1, keepdim=True) <= 0).to(dn.dtype) * self.missing_onehot
        clamped = torch.clamp(logits, -30.0, 30.0)
        return channel_softmax(clamped), clamped.argmax(dim=1, keepdim=True).to(torch.uint8)

    def make_missing_a_rule(self) -> None:
        with torch.no_grad():
            self.head.make_missing_a_rule()


def build_network(config: dict) -> CloudMaskNet:
    return CloudMaskNet(widths=tuple(config["widths"]), stem=config["stem"], head_hidden=config["head_hidden"])


def count_parameters(model: nn.Module) -> int:
    return sum(p.numel() for p in model.parameters())


def measure_receptive_field(model: CloudMaskNet, size: int = 1024) -> int:
    """Receptive field in pixels, measured: the extent of non-zero input gradient of the centre output pixel.

    Runs in eval mode on a random input, with weights perturbed so that no
    path has an exactly zero gradient; the result is the side of the square
    of input pixels that influence one output pixel.
    """
    import copy

    probe = copy.deepcopy(model).eval()
    with torch.no_grad():
        for p in probe.parameters():
            p.add_(0.01 * torch.randn_like(p))
    dn = (torch.rand(1, 4, size, size) * 3000 + 100).requires_grad_(True)
    out = probe.logits(dn)
    centre = size // 2
    out[0, :, centre, centre].sum().backward()
    grad = dn.grad.abs().sum(dim=(0, 1))
    rows = torch.nonzero(grad.sum(dim=1) > 0).flatten()
    cols = torch.nonzero(grad.sum(dim=0) > 0).flatten()
    extent = max(int(rows.max() - rows.min() + 1), int(cols.max() - cols.min() + 1))
    if extent >= size - 1:
        raise ValueError(f"receptive field fills the whole {size}px probe; measure with a larger size")
    return extent


def round_up(value: int, multiple: int) -> int:
    return int(math.ceil(value / multiple) * multiple)
