"""Chunks with a halo: how every door cuts a scene (Dask arrays, ``apply_neighborhood`` chunks, file blocks).

The engine says how much context a chunk needs (``Options.halo``) and how
large chunks are by default (``Options.chunk``, the card's
``recommended_chunk``); this module does the cutting, the same way for all:

- an axis is cut into chunks of ``chunk`` pixels; a last sliver smaller than
  the halo is folded into the chunk before it (Dask needs every chunk of an
  overlapped axis to be at least as deep as the halo, and a sliver would pay a
  full halo for a few pixels);
- an axis that is one chunk gets no halo: a halo stops at the cube's edge
  (``boundary="none"``, as backends do), so there is nothing to add. A cube
  smaller than the halo, or than one chunk, is thus taken whole, and never
  meets Dask's "overlapping depth is larger than your array";
- a chunk's halo reaches ``halo`` pixels into each neighbour, clipped at the
  cube's edges (:func:`grown_bounds`): the global extent of what the chunk sees.

Traps: the engine is bit-identical to a whole-scene run only if the halo is
at least the card's ``recommended_overlap`` (plus the buffer radius), which
``Options.halo`` gives; a smaller one still runs, with seams.
"""

from __future__ import annotations

__all__ = ["axis_chunks", "depths", "grown_bounds", "overlap", "trim", "blocks"]


def axis_chunks(length: int, chunk, halo: int, current=None) -> tuple:
    """Chunk sizes along one axis of ``length`` pixels: ``chunk`` each, the last sliver folded in.

    ``chunk`` None (or at least ``length``) keeps the axis whole. A chunk
    smaller than the halo is raised to the halo. ``current``, the sizes a
    Dask array already has, is kept when it is cut into several chunks that
    are all at least the halo (an axis in one piece is cut).
    """
    if current is not None and len(current) > 1 and min(current) >= halo:
        return tuple(int(size) for size in current)
    if chunk is None or length <= chunk:
        return (length,)
    chunk = max(int(chunk), int(halo), 1)
    count, rest = divmod(length, chunk)
    sizes = [chunk] * count
    if rest and count and rest < halo:
        sizes[-1] += rest
    elif rest:
        sizes.append(rest)
    return tuple(sizes)


def depths(chunks: tuple, halos: dict) -> dict:
    """``{axis: halo}`` for ``da.overlap``: the halo where an axis has several chunks, else 0."""
    return {axis: (int(halos.get(axis, 0)) if len(sizes) > 1 else 0) for axis, sizes in enumerate(chunks)}


def grown_bounds(chunks: tuple, depth: int) -> list:
    """Per chunk, the ``(start, stop)`` pixel range it sees with its halo, clipped to the axis."""
    length = sum(chunks)
    bounds, start = [], 0
    for size in chunks:
        bounds.append((max(0, start - depth), min(length, start + size + depth)))
        start += size
    return bounds


def overlap(array, halos: dict):
    """``(grown, depth)``: a Dask array whose chunks carry their halo (``boundary="none"``), and the depths used."""
    import dask.array as da

    depth = depths(array.chunks, halos)
    if not any(depth.values()):
        return array, depth
    return da.overlap.overlap(array, depth=depth, boundary="none"), depth


def trim(array, depth: dict):
    """Cut the halo off every chunk again (the inverse of :func:`overlap` with the same ``depth``)."""
    import dask.array as da

    if not any(depth.values()):
        return array
    return da.overlap.trim_internal(array, depth, boundary="none")


def blocks(height: int, width: int, chunk: int, halo: int) -> list:
    """File blocks: ``(inner, outer)`` per block, row by row; each a ``(rows, cols)`` pair of slices.

    ``inner`` is the part of the image the block answers for, ``outer`` what
    it reads: ``inner`` plus the halo, clipped to the image.
    """
    rows, cols = axis_chunks(height, chunk, halo), axis_chunks(width, chunk, halo)
    row_depth, col_depth = (halo if len(rows) > 1 else 0), (halo if len(cols) > 1 else 0)
    out = []
    for (r0, r1), (g0, g1) in zip(grown_bounds(rows, 0), grown_bounds(rows, row_depth)):
        for (c0, c1), (h0, h1) in zip(grown_bounds(cols, 0), grown_bounds(cols, col_depth)):
            out.append(((slice(r0, r1), slice(c0, c1)), (slice(g0, g1), slice(h0, h1))))
    return out

