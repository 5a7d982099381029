"""Quick-look PNG: the true-colour image beside its cloud mask, with a class legend.

Drawn with matplotlib's object API (no pyplot), so it needs no display and
leaves no global state behind.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from openeo_cloudmask.udf.cloud_mask import CLASS_CODES

#: KappaMask code -> RGB colour. The GeoTIFF colour table uses the same colours.
CLASS_COLOURS = {1: (70, 150, 70), 2: (60, 45, 140), 3: (120, 200, 250), 4: (250, 250, 250), 5: (0, 0, 0)}
#: KappaMask code -> (label, RGB colour), the label read from the engine's class table ("cloud_shadow" -> "cloud shadow").
CLASS_STYLE = {
    code: (name.replace("semi_transparent", "semi-transparent").replace("_", " "), CLASS_COLOURS[code])
    for code, name in CLASS_CODES.items()
}


def true_colour(red: np.ndarray, green: np.ndarray, blue: np.ndarray, valid: np.ndarray = None) -> np.ndarray:
    """(H, W, 3) float image in 0..1 from digital numbers, stretched like a Sentinel-2 true-colour browse.

    Reflectance is scaled by 3.5 so land looks natural, as in the Copernicus
    browser's true colour; highlights above 0.75 roll off gently instead of
    clipping, so bright clouds keep their relief, and a mild gamma lifts the shadows.
    """
    rgb = np.stack([red, green, blue], axis=-1).astype(np.float32) / 10000.0
    rgb = np.nan_to_num(rgb, nan=0.0) * 3.5
    knee = 0.75
    high = rgb > knee
    rgb[high] = knee + (1 - knee) * (1 - np.exp(-(rgb[high] - knee)))
    rgb = np.clip(rgb, 0.0, 1.0) ** (1 / 1.25)
    if valid is not None:
        rgb[~valid] = 0.0
    return rgb


def class_image(codes: np.ndarray) -> np.ndarray:
    """(H, W, 3) uint8 colours for a mask of KappaMask codes (unknown codes are magenta)."""
    lut = np.zeros((256, 3), dtype=np.uint8)
    lut[:] = (255, 0, 255)
    for code, (_, colour) in CLASS_STYLE.items():
        lut[code] = colour
    return lut[codes]


def write_quicklook(path, rgb: np.ndarray, codes: np.ndarray, title: str, caption: str = "",
                    fractions: dict = None) -> Path:
    """Write a PNG with ``rgb`` (H, W, 3, 0..1) on the left and the mask ``codes`` on the right.

    ``fractions`` (code -> percent) are shown in the legend when given.
    """
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure
    from matplotlib.patches import Patch

    height, width = codes.shape
    aspect = height / width
    fig = Figure(figsize=(12, 6 * aspect + 1.4), dpi=110)
    FigureCanvasAgg(fig)
    axes = fig.subplots(1, 2)
    axes[0].imshow(rgb, interpolation="antialiased")
    axes[0].set_title("true colour (B04, B03, B02)")
    axes[1].imshow(class_image(codes), interpolation="nearest")
    axes[1].set_title("cloud mask")
    for ax in axes:
        ax.set_xticks([])
        ax.set_yticks([])
    handles = []
    for code, (label, colour) in CLASS_STYLE.items():
        text = f"{code} {label}"
        if fractions is not None:
            text += f" ({fractions.get(code, 0.0):.1f} %)"
        handles.append(Patch(facecolor=np.asarray(colour) / 255.0, edgecolor="0.3", label=text))
    fig.legend(handles=handles, loc="lower center", bbox_to_anchor=(0.5, 0.035), ncol=5, frameon=False, fontsize=9)
    fig.suptitle(title, fontsize=12)
    if caption:
        fig.text(0.5, 0.005, caption, ha="center", va="bottom", fontsize=7, color="0.35", wrap=True)
    fig.subplots_adjust(left=0.02, right=0.98, top=0.9, bottom=0.13, wspace=0.04)
    path = Path(path)
    fig.savefig(path)
    return path
