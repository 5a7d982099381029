"""Mask raster files block by block: read a GeoTIFF or NetCDF stack, write a GeoTIFF mask.

:func:`open_raster` opens a user's file as a :class:`RasterSource` that reads
any window as the ``(bands, y, x)`` cube the engine takes. :func:`mask_raster`
streams it: the blocks are :func:`openeo_cloudmask.tiling.blocks` of the
engine's ``Options.chunk`` (the card's ``recommended_chunk``), each read with
the engine's ``Options.halo``, masked by
:func:`~openeo_cloudmask.udf.cloud_mask.mask_cube`, trimmed and written, so
memory follows the block size, not the scene size, and the result matches a
whole-scene run.

The mask GeoTIFF is uint8, LZW-compressed, tiled 256 x 256, carries a colour
table for the KappaMask codes and declares 5 (missing) as its nodata value.
Probability outputs are float32 with NaN as nodata.
"""

from __future__ import annotations

import dataclasses
import sys
import time
import warnings
from pathlib import Path

import numpy as np
import xarray as xr

from openeo_cloudmask import tiling
from openeo_cloudmask.model_card import S2_BANDS
from openeo_cloudmask.quicklook import CLASS_STYLE
from openeo_cloudmask.udf import cloud_mask as engine

TILE = 256
NETCDF_SUFFIXES = (".nc", ".nc4", ".netcdf", ".cdf")
GEOTIFF_SUFFIXES = (".tif", ".tiff", ".gtiff")


def _coords_from_transform(transform, height: int, width: int, row0: int = 0, col0: int = 0) -> tuple:
    """Pixel-centre ``(x, y)`` coordinates of a window from an affine transform (north-up grids)."""
    cols = np.arange(col0, col0 + width) + 0.5
    rows = np.arange(row0, row0 + height) + 0.5
    x = transform.c + cols * transform.a
    y = transform.f + rows * transform.e
    return x, y


class RasterSource:
    """A Sentinel-2 stack on disk: ``shape``, ``band_names``, ``crs``, ``transform``, and :meth:`read`."""

    path: Path
    shape: tuple
    band_names: list
    crs = None
    transform = None

    def read(self, rows: slice, cols: slice) -> xr.DataArray:
        """The window as a (bands, y, x) cube of digital numbers; nodata pixels are 0 or NaN."""
        raise NotImplementedError

    def close(self) -> None:
        pass

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()


def _check_band_names(names: list, origin: str, path: Path) -> list:
    unknown = [n for n in names if n not in S2_BANDS]
    if unknown:
        raise engine.InvalidInputError(
            f"{path}: {origin} {names} are not all Sentinel-2 band names ({unknown} unknown); "
            f"name the bands in file order with --bands, e.g. --bands B02,B03,B04,B08"
        )
    return names


class GeoTiffSource(RasterSource):
    """A multi-band GeoTIFF, one band per Sentinel-2 band, named by its band descriptions or by ``bands``."""

    def __init__(self, path, bands=None):
        import rasterio

        self.path = Path(path)
        self._src = rasterio.open(self.path)
        count = self._src.count
        if bands:
            if len(bands) != count:
                self._src.close()
                raise engine.InvalidInputError(
                    f"{self.path} has {count} band(s) but --bands names {len(bands)}: {bands}; name every band in file order"
                )
            self.band_names = _check_band_names(list(bands), "--bands", self.path)
        else:
            descriptions = list(self._src.descriptions)
            if any(not d for d in descriptions):
                self._src.close()
                raise engine.InvalidInputError(
                    f"{self.path}: the {count} band(s) have no descriptions, so their Sentinel-2 names are unknown; "
                    f"name them in file order with --bands, e.g. --bands B02,B03,B04,B08"
                )
            self.band_names = _check_band_names(descriptions, "band descriptions", self.path)
        self.shape = (self._src.height, self._src.width)
        self.crs = self._src.crs
        self.transform = self._src.transform
        self.nodata = self._src.nodata

    def read(self, rows: slice, cols: slice) -> xr.DataArray:
        from rasterio.windows import Window

        window = Window(cols.start, rows.start, cols.stop - cols.start, rows.stop - rows.start)
        data = self._src.read(window=window)
        if self.nodata is not None and self.nodata != 0 and not np.isnan(self.nodata):
            data[:, (data == self.nodata).any(axis=0)] = 0  # the engine's missing marker
        x, y = _coords_from_transform(self.transform, data.shape[1], data.shape[2], rows.start, cols.start)
        return xr.DataArray(data, dims=("bands", "y", "x"), coords={"bands": self.band_names, "y": y, "x": x})

    def close(self) -> None:
        self._src.close()


class NetCdfSource(RasterSource):
    """A NetCDF variable with dims ``bands``, ``y``, ``x`` (and ``t``), laid out like the shared data files.

    ``variable`` defaults to ``reflectance``, else the only variable with a
    ``bands`` dimension. A ``t`` dimension longer than one needs ``time``
    (an index). ``_FillValue`` pixels arrive as NaN, which the engine treats
    as missing.
    """

    def __init__(self, path, variable=None, time_index=None, bands=None):
        self.path = Path(path)
        self._ds = xr.open_dataset(self.path)
        try:
            self._init(variable, time_index, bands)
        except Exception:
            self._ds.close()
            raise

    def _init(self, variable, time_index, bands):
        candidates = [name for name, var in self._ds.data_vars.items() if "bands" in var.dims]
        if variable is None:
            if "reflectance" in candidates:
                variable = "reflectance"
            elif len(candidates) == 1:
                variable = candidates[0]
            else:
                raise engine.InvalidInputError(
                    f"{self.path}: pick the image variable with --variable; variables with a 'bands' dimension: "
                    f"{candidates or 'none'}"
                )
        if variable not in self._ds.data_vars:
            raise engine.InvalidInputError(
                f"{self.path} has no variable {variable!r}; it has {list(self._ds.data_vars)}"
            )
        data = self._ds[variable]
        if "t" in data.dims:
            if data.sizes["t"] > 1 and time_index is None:
                raise engine.InvalidInputError(
                    f"{self.path}: {variable!r} has {data.sizes['t']} dates; pick one with --time INDEX (0..{data.sizes['t'] - 1})"
                )
            index = time_index or 0
            if not 0 <= index < data.sizes["t"]:
                raise engine.InvalidInputError(f"--time {index} is out of range 0..{data.sizes['t'] - 1}")
            data = data.isel(t=index)
        elif time_index not in (None, 0):
            raise engine.InvalidInputError(f"{self.path}: {variable!r} has no 't' dimension, so --time does not apply")
        if set(data.dims) != {"bands", "y", "x"}:
            raise engine.InvalidInputError(
                f"{self.path}: {variable!r} has dims {list(data.dims)}; need 'bands', 'y', 'x' (and optionally 't')"
            )
        if bands:
            if len(bands) != data.sizes["bands"]:
                raise engine.InvalidInputError(
                    f"{self.path}: {variable!r} has {data.sizes['bands']} bands but --bands names {len(bands)}: {bands}"
                )
            data = data.assign_coords(bands=_check_band_names(list(bands), "--bands", self.path))
        elif "bands" not in data.coords:
            raise engine.InvalidInputError(f"{self.path}: {variable!r} has no band labels; name them with --bands")
        self._data = data.transpose("bands", "y", "x")
        self.band_names = [str(b) for b in self._data.coords["bands"].values]
        self.shape = (self._data.sizes["y"], self._data.sizes["x"])
        self.crs, self.transform = self._georeference(data)

    def _georeference(self, data: xr.DataArray):
        """CRS and transform from the CF grid mapping, as rioxarray writes it; ``(None, None)`` if absent."""
        from affine import Affine
        from rasterio.crs import CRS

        mapping = data.attrs.get("grid_mapping") or data.encoding.get("grid_mapping")
        if not mapping or mapping not in self._ds.variables:
            return None, None
        attrs = self._ds[mapping].attrs
        wkt = attrs.get("crs_wkt") or attrs.get("spatial_ref")
        crs = CRS.from_wkt(wkt) if wkt else None
        if "GeoTransform" in attrs:
            c, a, b, f, d, e = (float(v) for v in str(attrs["GeoTransform"]).split())
            transform = Affine(a, b, c, d, e, f)
        else:
            x, y = data["x"].values, data["y"].values
            dx, dy = float(x[1] - x[0]), float(y[1] - y[0])
            transform = Affine(dx, 0, float(x[0]) - dx / 2, 0, dy, float(y[0]) - dy / 2)
        return crs, transform

    def read(self, rows: slice, cols: slice) -> xr.DataArray:
        return self._data.isel(y=rows, x=cols).load()

    def close(self) -> None:
        self._ds.close()


def open_raster(path, bands=None, variable=None, time_index=None) -> RasterSource:
    """Open a GeoTIFF or NetCDF Sentinel-2 stack; errors say what is wrong with the file and how to fix it."""
    path = Path(path)
    if not path.exists():
        raise engine.InvalidInputError(f"input file {path} does not exist")
    if path.is_dir():
        raise engine.InvalidInputError(f"input {path} is a directory; give a GeoTIFF or NetCDF file")
    suffix = path.suffix.lower()
    if suffix in NETCDF_SUFFIXES:
        try:
            return NetCdfSource(path, variable=variable, time_index=time_index, bands=bands)
        except (OSError, ValueError) as exc:
            if isinstance(exc, engine.CloudMaskError):
                raise
            raise engine.InvalidInputError(f"{path} cannot be read as NetCDF ({exc})") from None
    if variable is not None or time_index is not None:
        raise engine.InvalidInputError("--variable and --time apply to NetCDF input only")
    import rasterio.errors

    try:
        return GeoTiffSource(path, bands=bands)
    except rasterio.errors.RasterioIOError as exc:
        raise engine.InvalidInputError(
            f"{path} cannot be read as a raster ({exc}); give a GeoTIFF ({', '.join(GEOTIFF_SUFFIXES)}) "
            f"or NetCDF ({', '.join(NETCDF_SUFFIXES)}) file"
        ) from None


# --------------------------------------------------------------------------- writing


def colour_table() -> dict:
    """GDAL colour table for the KappaMask codes (the quick-look uses the same colours)."""
    return {code: (*colour, 255) for code, (_, colour) in CLASS_STYLE.items()}


def mask_profile(height: int, width: int, count: int, dtype: str, crs, transform) -> dict:
    """Creation options of a mask GeoTIFF: tiled 256 x 256, LZW; nodata 5 for classes, NaN for floats."""
    from affine import Affine

    return {
        "driver": "GTiff",
        "height": height,
        "width": width,
        "count": count,
        "dtype": dtype,
        "crs": crs,
        "transform": transform if transform is not None else Affine.identity(),
        "nodata": engine.MISSING if dtype == "uint8" else float("nan"),
        "tiled": True,
        "blockxsize": TILE,
        "blockysize": TILE,
        "compress": "lzw",
        "interleave": "band",
    }


def write_stack(path, dn: np.ndarray, band_names, crs, transform, nodata=0) -> Path:
    """Write a (bands, y, x) stack of digital numbers as a tiled, LZW GeoTIFF with band descriptions."""
    import rasterio
    from rasterio.errors import NotGeoreferencedWarning

    profile = mask_profile(dn.shape[1], dn.shape[2], dn.shape[0], str(dn.dtype), crs, transform)
    profile["nodata"] = nodata
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", NotGeoreferencedWarning)
        with rasterio.open(path, "w", **profile) as dst:
            dst.write(dn)
            for i, name in enumerate(band_names, start=1):
                dst.set_band_description(i, name)
    return Path(path)


# --------------------------------------------------------------------------- streaming


@dataclasses.dataclass
class MaskRun:
    """What :func:`mask_raster` did: output path, class counts (classes output), blocks, seconds, model."""

    path: Path
    shape: tuple
    counts: dict
    blocks: int
    halo: int
    seconds: float
    model: object
    block: int = None

    def fractions(self) -> dict:
        """Percent of pixels per KappaMask code (classes output only)."""
        total = sum(self.counts.values()) or 1
        return {code: 100.0 * n / total for code, n in sorted(self.counts.items())}


def mask_raster(source: RasterSource, output, context: dict = None, block_size: int = None,
                progress: bool = True) -> MaskRun:
    """Mask ``source`` block by block into the GeoTIFF ``output``; see the module docstring.

    Every block is read with the engine's halo on each side, so each output
    pixel sees the same neighbourhood as in a whole-scene run. ``block_size``
    defaults to the engine's chunk (``Options.chunk``: the card's
    ``recommended_chunk``); :attr:`MaskRun.block` says which was used.
    """
    import rasterio
    from rasterio.errors import NotGeoreferencedWarning
    from tqdm import tqdm

    options = engine.parse_context(context)
    model = engine.load_model(options.model, options.model_dir)
    spacing = engine.metric_pixel_size(source.transform.a) if source.transform is not None else None
    options = dataclasses.replace(options, pixel_size_m=options.pixel_size(model, spacing))  # blocks see no transform
    halo = options.halo(model)
    if block_size is not None and block_size < 64:
        raise engine.InvalidContextError(
            f"block_size (--block-size) must be at least 64 pixels, got {block_size}", key="block_size"
        )
    block_size = options.local_chunk(model) if block_size is None else block_size
    names = options.band_names
    dtype = str(options.dtype)
    height, width = source.shape
    windows = tiling.blocks(height, width, block_size, halo)
    profile = mask_profile(height, width, len(names), dtype, source.crs, source.transform)
    started = time.perf_counter()
    output = Path(output)
    partial = output.with_name(output.name + ".part")  # never leave half a mask under the real name
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", NotGeoreferencedWarning)
            with rasterio.open(partial, "w", **profile) as dst:
                for i, name in enumerate(names, start=1):
                    dst.set_band_description(i, name)
                if dtype == "uint8":
                    dst.write_colormap(1, colour_table())
                dst.update_tags(
                    model=model.card["id"], model_version=str(model.card["version"]),
                    classes=", ".join(f"{c}={n}" for c, n in engine.CLASS_CODES.items()),
                    source=str(source.path), processing_level=options.processing_level,
                )
                bar = tqdm(windows, unit="block", desc="masking", file=sys.stderr,
                           disable=not progress or len(windows) <= 1)
                counts = sum(_mask_block(source, dst, inner, outer, options) for inner, outer in bar)
        partial.replace(output)
    except BaseException:
        partial.unlink(missing_ok=True)
        raise
    return MaskRun(
        path=output, shape=(height, width), counts={c: int(n) for c, n in enumerate(counts) if n},
        blocks=len(windows), halo=halo, seconds=time.perf_counter() - started, model=model, block=block_size,
    )


def _mask_block(source: RasterSource, dst, inner: tuple, outer: tuple, options) -> np.ndarray:
    """Read one block with its halo (``outer``), mask it, write ``inner``; return its class counts."""
    from rasterio.windows import Window

    (rows, cols), (grown_rows, grown_cols) = inner, outer
    result = engine.mask_cube(source.read(grown_rows, grown_cols), options).transpose("bands", "y", "x").values
    r0, c0 = rows.start - grown_rows.start, cols.start - grown_cols.start
    block = result[:, r0 : r0 + rows.stop - rows.start, c0 : c0 + cols.stop - cols.start]
    dst.write(block.astype(dst.dtypes[0], copy=False),
              window=Window(cols.start, rows.start, cols.stop - cols.start, rows.stop - rows.start))
    if dst.dtypes[0] != "uint8":
        return np.zeros(256, dtype=np.int64)
    return np.bincount(block.ravel(), minlength=256)
