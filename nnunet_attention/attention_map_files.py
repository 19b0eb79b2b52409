"""The files of the attention-map export, per case: each map as NIfTI in the image's geometry, its pictures
(overlay on one slice, the map alone for 2D images) in a colour scale fitted to its values, and ``maps.json``
describing every map, written last (see :mod:`nnunet_attention.attention_maps` for what the maps are)."""

from __future__ import annotations

import json
import math
import os
import textwrap
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np
import SimpleITK as sitk

from .atomic import atomic_path

if TYPE_CHECKING:
    from .attention_maps import ProbedNetwork


def is_two_dimensional(properties: dict) -> bool:
    """Whether the image was a 2D file (nnU-Net reads it as one slice, ``(1, H, W)``)."""
    return len(properties["sitk_stuff"]["spacing"]) == 2


def write_like_image(array: np.ndarray, properties: dict, path: Path) -> None:
    """Write ``array`` (the image's array shape) as float32 with the image's SimpleITK geometry, atomically."""
    geometry = properties["sitk_stuff"]
    if is_two_dimensional(properties):
        array = array[0]
    image = sitk.GetImageFromArray(array.astype(np.float32))
    image.SetSpacing(geometry["spacing"])
    image.SetOrigin(geometry["origin"])
    image.SetDirection(geometry["direction"])
    if "original_orientation" in geometry:  # SimpleITKIOWithReorient read it reoriented
        image = sitk.DICOMOrient(image, geometry["original_orientation"])
    with atomic_path(path) as partial:
        sitk.WriteImage(image, str(partial), True)


#: the percentiles of a map's values that its pictures' colour scale spans
COLOUR_SCALE_PERCENTILES = (1.0, 99.0)


def colour_scale(values: np.ndarray, value_range: tuple[float, float]) -> tuple[float, float]:
    """The colour scale of a map's pictures: the :data:`COLOUR_SCALE_PERCENTILES` of ``values`` (the map in the
    image region), robust to a few extreme voxels, kept inside the map's ``value_range``; never empty (a constant
    map gets a scale just above its value)."""
    low, high = (float(value) for value in np.percentile(values, COLOUR_SCALE_PERCENTILES))
    low, high = max(low, value_range[0]), min(high, value_range[1])
    return low, max(high, low + max(1e-6, 1e-3 * abs(low)))


def range_caption(values: np.ndarray, scale: tuple[float, float]) -> str:
    """What an overlay prints under its title: the map's value range and what its colours span."""
    percentiles = "-".join(f"{p:g}" for p in COLOUR_SCALE_PERCENTILES)
    return (f"values {values.min():.3g} to {values.max():.3g}; colours span {scale[0]:.3g} to {scale[1]:.3g} "
            f"(percentiles {percentiles})")


def write_png(map_slice: np.ndarray, scale: tuple[float, float], path: Path) -> None:
    from matplotlib.image import imsave

    with atomic_path(path) as partial:
        imsave(partial, map_slice, cmap="viridis", vmin=scale[0], vmax=scale[1])


#: opacity of a map over its image where the map is at the top of its colour scale; it falls to 0 at the bottom,
#: so the image stays visible wherever the attention is low
OVERLAY_MAX_OPACITY = 0.7


def overlay_opacity(map_slice: np.ndarray, scale: tuple[float, float]) -> np.ndarray:
    """Per-pixel opacity of ``map_slice`` ``(H, W)`` over its image: 0 at ``scale[0]`` (or below), rising linearly
    to :data:`OVERLAY_MAX_OPACITY` at ``scale[1]`` (or above)."""
    low, high = scale
    fraction = (map_slice - low) / (high - low) if high > low else np.ones_like(map_slice)
    return OVERLAY_MAX_OPACITY * np.clip(fraction, 0.0, 1.0)


def write_overlay_png(image_slice: np.ndarray, map_slice: np.ndarray, scale: tuple[float, float], title: str,
                      path: Path) -> None:
    """The image slice ``(H, W)`` alone, and beside it the map over it (viridis, opaque where the map is high, see
    :func:`overlay_opacity`), with the map's colour bar and ``title`` above."""
    from matplotlib.figure import Figure

    height = 6 * image_slice.shape[0] / image_slice.shape[1]
    figure = Figure(figsize=(11, height + 1.0), layout="constrained")
    image_axes, overlay_axes = figure.subplots(1, 2)
    for axes in (image_axes, overlay_axes):
        axes.imshow(image_slice, cmap="gray")
        axes.set_axis_off()
    shown = overlay_axes.imshow(map_slice, cmap="viridis", alpha=overlay_opacity(map_slice, scale), vmin=scale[0],
                                vmax=scale[1])
    figure.colorbar(shown, ax=overlay_axes, fraction=0.046, pad=0.04)
    figure.suptitle(title, fontsize=8)
    with atomic_path(path) as partial:
        figure.savefig(partial, dpi=100, bbox_inches="tight", format="png")


def overlay_title(case_name: str, map_name: str, overlay_slice: int, slices: int) -> str:
    """The first line of an overlay's title: the case, the slice shown where the image has more than one (an index
    into the image's first array axis, as ``--slice`` takes it), and the map."""
    where = f", slice {overlay_slice} of 0-{slices - 1} (first array axis)" if slices > 1 else ""
    return f"{case_name}{where}: {map_name}"


@dataclass
class CaseMaps:
    """One case's attention maps, predicted and taken back to the image as its reader gave it.

    The image shape is the reader's array shape without the channel axis: ``(Z, Y, X)`` for a 3D file, ``(1, H,
    W)`` for a 2D one. ``maps``: ``(n_maps, *image shape)`` float32, in the predictor's :attr:`map_names` order.
    ``region``: boolean ``(*image shape)``, where nnU-Net did not crop (outside it a map is 0 by construction).
    ``image_slice``: ``(H, W)``, the image's first channel as read at ``overlay_slice`` (an index into the first
    axis), the background of the overlays; not the preprocessed image, whose grid and intensities differ.
    ``properties``: nnU-Net's properties of the case (the reader's geometry under ``sitk_stuff``, the crop).
    """

    name: str
    maps: np.ndarray
    region: np.ndarray
    overlay_slice: int
    image_slice: np.ndarray
    properties: dict


def write_case_maps(case: CaseMaps, network: ProbedNetwork, output_folder: str | os.PathLike) -> Path:
    """Write ``case``'s maps (``network``'s, which says what each map is) to ``output_folder/<case>``, each file
    atomically and ``maps.json`` last, so a case folder with a ``maps.json`` is complete; return the folder."""
    case_folder = Path(output_folder) / case.name
    case_folder.mkdir(parents=True, exist_ok=True)
    index_entries = {}
    for name, attention_map in zip(network.map_names, case.maps):
        probe = network.probes[name]
        values = attention_map[case.region]
        scale = colour_scale(values, probe.value_range)
        files = [f"{name}.nii.gz", f"{name}_overlay.png"]
        write_like_image(attention_map, case.properties, case_folder / files[0])
        title = (overlay_title(case.name, name, case.overlay_slice, attention_map.shape[0]) + "\n"
                 + textwrap.fill(probe.description, 80) + "\n" + range_caption(values, scale))
        write_overlay_png(case.image_slice, attention_map[case.overlay_slice], scale, title, case_folder / files[1])
        if is_two_dimensional(case.properties):
            files.append(f"{name}.png")
            write_png(attention_map[0], scale, case_folder / files[2])
        value_range = [end if math.isfinite(end) else None for end in probe.value_range]  # None: unbounded
        index_entries[name] = {"description": probe.description, "module": network.module_paths[name],
                               "value_range": value_range, "values": [float(values.min()), float(values.max())],
                               "colour_scale": list(scale), "overlay_slice": case.overlay_slice, "files": files}
    with atomic_path(case_folder / "maps.json") as partial:
        partial.write_text(json.dumps(index_entries, indent=2))
    return case_folder
