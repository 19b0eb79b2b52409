"""Attention-map export: run a trained model folder like ``nnUNetv2_predict`` and write each map in the image's
geometry.

Every architecture exposes its maps through :class:`~nnunet_attention.architectures.blocks.attention_probe.
AttentionProbe` taps; each probe says what its map holds, how it becomes one spatial map (its summary) and
the summary's value range, and the architecture names it by what and where it is (``gate_level2``,
``lgg_sa_encoder_level3_block0``). :class:`ProbedNetwork` appends the summaries, resized to the patch, as
channels behind the logits, so nnU-Net's own predictor stitches them like the logits: same preprocessing,
sliding window with Gaussian weighting, mirroring test-time augmentation and fold averaging (the stitching
buffer is float32 here, see :meth:`AttentionMapPredictor._internal_predict_sliding_window_return_logits`, an
override of a private nnU-Net method that :func:`check_predictor_contract` checks at construction). Each case is
read with the plans' reader and preprocessed by nnU-Net's own ``PreprocessAdapterFromNpy`` (which also appends a
cascade stage's previous-stage segmentation as one-hot channels). :func:`predict_attention_maps` yields each
case's maps taken back to the original image as nnU-Net does for probabilities (resampling, crop reverted,
transpose reverted); :func:`write_case_maps` writes them:

    OUTPUT/<case>/<map>.nii.gz          float32, the input image's spacing, origin and direction
    OUTPUT/<case>/<map>.png             2D images only: the map alone, in its colour scale
    OUTPUT/<case>/<map>_overlay.png     the map over the image's first channel on one slice, with its value
                                        range and colour scale printed
    OUTPUT/<case>/maps.json             per map: description, module, value range (null: unbounded), the values'
                                        minimum and maximum, colour scale, files; written last

The colour scale of the pictures spans the 1st to 99th percentile of the map's values in the image region
(where nnU-Net did not crop), so a map whose values fill a small part of its range (an aggregation map at
0.016-0.071 of [0, 1]) shows its structure rather than a flat wash. Values stay inside each map's range up to
the network's own precision (fp16 under CUDA autocast). Outside the region nnU-Net cropped away (the zero
border of the image) a map is 0.
"""

from __future__ import annotations

import inspect
import os
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from importlib.metadata import PackageNotFoundError, version
from itertools import chain
from pathlib import Path

import numpy as np
import torch
from acvl_utils.cropping_and_padding.bounding_boxes import bounding_box_to_slice, insert_crop_into_image
from nnunetv2.inference.data_iterators import PreprocessAdapterFromNpy
from nnunetv2.inference.predict_from_raw_data import nnUNetPredictor
from nnunetv2.inference.sliding_window_prediction import compute_gaussian
from nnunetv2.utilities.utils import create_lists_from_splitted_dataset_folder
from torch import nn

from .architectures.blocks.attention_probe import attention_probes, capture_attention_maps
from .architectures.blocks.interpolation import resize_linear
from .attention_map_files import CaseMaps, write_case_maps
from .dataset_check import require_complete_files
from .errors import UsageError
from .nnunet_commands import nnunet_chatter_hidden
from .nnunet_layout import fold_folder, model_folder_parts
from .registry import controlled_trainer, did_you_mean
from .schedules import with_ext_trainer_folder


class ProbedNetwork(nn.Module):
    """``network`` whose output also carries its attention-map summaries: ``(B, classes + maps, *patch)``.

    The summaries (one ``(B, 1, *grid)`` map per probe, in :attr:`map_names` order) are resized linearly to the
    input's grid. :attr:`map_names` are the names the architecture gave its probes (a probe it left unnamed goes
    by its module path); :attr:`probes` maps each map name to its probe and :attr:`module_paths` to the probe's
    module. State dicts are the wrapped network's, so nnU-Net's predictor loads each fold's weights.
    """

    def __init__(self, network: nn.Module):
        super().__init__()
        self.network = network
        by_path = attention_probes(network)
        if not by_path:
            raise UsageError(f"{type(network).__name__} exposes no attention maps (it has no AttentionProbe)")
        self.module_paths = {probe.map_name or path: path for path, probe in by_path.items()}
        if len(self.module_paths) != len(by_path):
            raise ValueError(f"{type(network).__name__} gives two attention maps the same name: "
                             f"{[probe.map_name for probe in by_path.values()]}")
        self.probes = {name: by_path[path] for name, path in self.module_paths.items()}
        self.map_names = list(self.module_paths)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        with capture_attention_maps(self.network) as maps:
            logits = self.network(x)
        missing = [name for name, path in self.module_paths.items() if path not in maps]
        if missing:
            raise RuntimeError(f"these attention probes did not fire in the forward pass: {missing}")
        summaries = [resize_linear(self.probes[name].summarize(maps[path]), x.shape[2:])
                     for name, path in self.module_paths.items()]
        return torch.cat([logits, *(summary.to(logits.dtype) for summary in summaries)], dim=1)

    def state_dict(self, *args, **kwargs):
        return self.network.state_dict(*args, **kwargs)

    def load_state_dict(self, state_dict, strict: bool = True, assign: bool = False):
        return self.network.load_state_dict(state_dict, strict=strict, assign=assign)


class _StitchedChannels:
    """The label manager as nnU-Net's sliding window sees it: the stitched tensor has ``extra`` more channels."""

    def __init__(self, label_manager, extra: int):
        self._label_manager = label_manager
        self.num_segmentation_heads = label_manager.num_segmentation_heads + extra

    def __getattr__(self, name: str):
        return getattr(self._label_manager, name)


#: the nnunetv2 releases this package is tested with (its requirement in pyproject.toml)
TESTED_NNUNETV2 = ">=2.8.1,<2.9"
#: nnU-Net's private predictor methods that :class:`AttentionMapPredictor` overrides or calls, with their parameters
PREDICTOR_CONTRACT = {
    "_internal_predict_sliding_window_return_logits": ("self", "data", "slicers", "do_on_device"),
    "_internal_maybe_mirror_and_predict": ("self", "x"),
    "_internal_get_sliding_window_slicers": ("self", "image_size"),
}
#: the parameters of nnU-Net's ``compute_gaussian`` that the float32 stitching passes
GAUSSIAN_PARAMETERS = ("tile_size", "sigma_scale", "value_scaling_factor", "dtype", "device")


def installed_nnunetv2() -> str:
    """The installed nnunetv2's version, for messages (``unknown`` when it runs from a source tree)."""
    try:
        return version("nnunetv2")
    except PackageNotFoundError:
        return "unknown"


def check_predictor_contract() -> None:
    """A RuntimeError naming what changed unless nnU-Net's predictor still has the private contract that
    :meth:`AttentionMapPredictor._internal_predict_sliding_window_return_logits` relies on: the methods of
    :data:`PREDICTOR_CONTRACT` with those parameters, ``predict_sliding_window_return_logits`` calling the
    overridden method (else the override would be skipped without a sign and nnU-Net's float16 stitching would
    zero the maps in the volume's corners), and ``compute_gaussian`` taking a dtype."""
    changed = []
    for name, parameters in PREDICTOR_CONTRACT.items():
        method = getattr(nnUNetPredictor, name, None)
        if method is None:
            changed.append(f"nnUNetPredictor.{name} is gone")
        elif tuple(inspect.signature(method).parameters) != parameters:
            changed.append(f"nnUNetPredictor.{name}{inspect.signature(method)} (expected ({', '.join(parameters)}))")
    caller = inspect.unwrap(nnUNetPredictor.predict_sliding_window_return_logits)
    if "_internal_predict_sliding_window_return_logits" not in caller.__code__.co_names:
        changed.append("nnUNetPredictor.predict_sliding_window_return_logits no longer calls "
                       "_internal_predict_sliding_window_return_logits")
    missing = [name for name in GAUSSIAN_PARAMETERS if name not in inspect.signature(compute_gaussian).parameters]
    if missing:
        changed.append(f"compute_gaussian has no parameter {', '.join(missing)}")
    if changed:
        raise RuntimeError(
            f"the attention-map export replaces a private part of nnU-Net's predictor (its sliding-window "
            f"stitching, to stitch in float32), and nnunetv2 {installed_nnunetv2()} changed it: "
            f"{'; '.join(changed)}. nnunet-attention is tested with nnunetv2{TESTED_NNUNETV2}; install one of "
            f"those: pip install 'nnunetv2{TESTED_NNUNETV2}'")


class AttentionMapPredictor(nnUNetPredictor):
    """nnU-Net's predictor that also returns the network's attention maps, stitched like the logits. Construction
    fails (:func:`check_predictor_contract`) on an nnU-Net whose private stitching this class cannot replace."""

    def __init__(self, *args, **kwargs):
        check_predictor_contract()
        super().__init__(*args, **kwargs)

    def initialize_from_trained_model_folder(self, model_training_output_dir: str, use_folds,
                                             checkpoint_name: str = "checkpoint_final.pth"):
        super().initialize_from_trained_model_folder(model_training_output_dir, use_folds, checkpoint_name)
        self.network = ProbedNetwork(getattr(self.network, "_orig_mod", self.network))

    @property
    def map_names(self) -> list[str]:
        return self.network.map_names

    def _internal_predict_sliding_window_return_logits(self, data: torch.Tensor, slicers,
                                                       do_on_device: bool = True) -> torch.Tensor:
        """nnU-Net's Gaussian-weighted sliding window (same Gaussian, same patches, same mirroring), accumulated
        in float32 where nnU-Net accumulates in float16: ``(C, *S)`` -> stitched ``(channels, *S)``, float32.

        Why: toward a patch's corners the Gaussian weight falls to ~1e-10 of its peak (3D), below float16's
        smallest number. nnU-Net replaces the zero weights by the smallest nonzero one, but a map value of a few
        hundredths times that weight still flushes to 0, so wherever a single patch covers a corner of the
        volume the stitched map came out exactly 0 (about 3% of a small 3D case's voxels).
        """
        results_device = self.device if do_on_device else torch.device("cpu")
        data = data.to(results_device)
        stitched = torch.zeros((self.label_manager.num_segmentation_heads, *data.shape[1:]), dtype=torch.float32,
                               device=results_device)
        weights = torch.zeros(data.shape[1:], dtype=torch.float32, device=results_device)
        gaussian = compute_gaussian(tuple(self.configuration_manager.patch_size), sigma_scale=1. / 8,
                                    value_scaling_factor=10, dtype=torch.float32, device=results_device) \
            if self.use_gaussian else torch.ones((), device=results_device)
        for slicer in slicers:
            patch = data[slicer][None].to(self.device)
            prediction = self._internal_maybe_mirror_and_predict(patch)[0].to(results_device, torch.float32)
            stitched[slicer] += prediction * gaussian
            weights[slicer[1:]] += gaussian
        return stitched / weights

    def predict_logits_and_maps(self, data: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Preprocessed ``(C, *S)`` -> (logits ``(classes, *S)``, maps ``(n_maps, *S)``), both float32."""
        label_manager = self.label_manager
        self.label_manager = _StitchedChannels(label_manager, len(self.map_names))
        try:
            stitched = self.predict_logits_from_preprocessed_data(data).float()
        finally:
            self.label_manager = label_manager
        return stitched[: label_manager.num_segmentation_heads], stitched[label_manager.num_segmentation_heads:]

    def maps_in_image_geometry(self, maps: torch.Tensor, properties: dict) -> np.ndarray:
        """Maps on the preprocessed grid -> ``(n_maps, *shape of the image as read)``, reverting nnU-Net's
        preprocessing in the order its export does: resample, re-insert the crop, transpose back."""
        plans_manager, configuration_manager = self.plans_manager, self.configuration_manager
        spacing_transposed = [properties["spacing"][i] for i in plans_manager.transpose_forward]
        shape_before_resampling = properties["shape_after_cropping_and_before_resampling"]
        current_spacing = configuration_manager.spacing
        if len(current_spacing) != len(shape_before_resampling):  # 2d configuration of a 3d image
            current_spacing = [spacing_transposed[0], *current_spacing]
        resampled = configuration_manager.resampling_fn_probabilities(
            maps, shape_before_resampling, current_spacing, spacing_transposed
        )
        resampled = torch.as_tensor(resampled).float().cpu().numpy()
        full = np.zeros((len(maps), *properties["shape_before_cropping"]), dtype=np.float32)
        full = insert_crop_into_image(full, resampled, properties["bbox_used_for_cropping"])
        return full.transpose([0, *(i + 1 for i in plans_manager.transpose_backward)])

    def image_region(self, properties: dict) -> np.ndarray:
        """Boolean mask, the shape of the image as read: the region nnU-Net kept when it cropped the image to its
        nonzero bounding box (outside it a map is 0 by construction)."""
        region = np.zeros(properties["shape_before_cropping"], dtype=bool)
        region[bounding_box_to_slice(properties["bbox_used_for_cropping"])] = True
        return region.transpose(self.plans_manager.transpose_backward)


def check_model_folder(model_folder: Path, folds: Sequence[int | str], checkpoint_name: str) -> None:
    """A UsageError naming what is missing unless ``model_folder`` is a trained nnU-Net model folder with these
    folds' checkpoints, or saying why a removal control's model has no maps."""
    trainer = model_folder_parts(model_folder)[0] if model_folder.name.count("__") == 2 else ""
    attention_trainer = controlled_trainer(trainer)
    if attention_trainer:
        raise UsageError(f"{trainer} is the removal control of {attention_trainer}: its attention is removed, so it "
                         f"has no attention maps. Export the maps of the {attention_trainer} model instead")
    if not model_folder.is_dir():
        beside = sorted(p.name for p in model_folder.parent.iterdir() if p.is_dir()) if model_folder.parent.is_dir() \
            else []
        raise UsageError(f"-m {model_folder}: no such folder. {did_you_mean(model_folder.name, beside)}Pass the folder "
                         f"nnUNetv2_train writes (nnUNet_results/DatasetXXX/Trainer__Plans__config)")
    missing = [name for name in ("dataset.json", "plans.json") if not (model_folder / name).is_file()]
    missing += [f"fold_{fold}/{checkpoint_name}" for fold in folds
                if not (fold_folder(model_folder, fold) / checkpoint_name).is_file()]
    if missing:
        raise UsageError(f"{model_folder} is not a trained model folder with these folds: missing "
                         f"{', '.join(missing)}. "
                         f"Pass the folder nnUNetv2_train writes (nnUNet_results/DatasetXXX/Trainer__Plans__config) "
                         f"and folds whose training finished (or -chk checkpoint_best.pth)")


@contextmanager
def demo_trainers_findable(model_folder: Path) -> Iterator[None]:
    """While active, nnU-Net's trainer lookup also searches the folder of short-schedule trainers that
    ``nnunet-attention demo`` writes beside its results (``WORKDIR/trainers`` for a model folder
    ``WORKDIR/nnUNet_results/DatasetXXX/<trainer>__<plans>__<configuration>``), if it holds the model's trainer;
    otherwise nothing changes."""
    trainer_name = model_folder_parts(model_folder)[0]
    parents = model_folder.resolve().parents
    folder = parents[2] / "trainers" if len(parents) > 2 else None
    if folder is None or not (folder / f"{trainer_name}.py").is_file():
        yield
        return
    previous = os.environ.get("nnUNet_extTrainer")
    os.environ["nnUNet_extTrainer"] = with_ext_trainer_folder(dict(os.environ), folder)["nnUNet_extTrainer"]
    try:
        yield
    finally:
        if previous is None:
            del os.environ["nnUNet_extTrainer"]
        else:
            os.environ["nnUNet_extTrainer"] = previous


def previous_stage_segmentations(predictor: nnUNetPredictor, cases: list[str],
                                 prev_stage_predictions: str | os.PathLike | None) -> list[Path | None]:
    """Per case the previous stage's segmentation file a cascade model needs (``None`` per case otherwise), as
    ``nnUNetv2_predict -prev_stage_predictions`` finds them: ``<folder>/<case><file_ending>``. A UsageError says
    what is missing."""
    previous_stage = predictor.configuration_manager.previous_stage_name
    if previous_stage is None:
        if prev_stage_predictions is not None:
            raise UsageError("-prev_stage_predictions was given, but this model is not a cascade stage (its "
                             "configuration has no previous stage); leave it out")
        return [None] * len(cases)
    if prev_stage_predictions is None:
        raise UsageError(f"this model is the cascade stage after {previous_stage}: its input includes the "
                         f"segmentation of {previous_stage}. Predict the images with the {previous_stage} model "
                         f"(nnUNetv2_predict -c {previous_stage}) and pass that folder with -prev_stage_predictions")
    files = [Path(prev_stage_predictions) / f"{case}{predictor.dataset_json['file_ending']}" for case in cases]
    missing = [file.name for file in files if not file.is_file()]
    if missing:
        raise UsageError(f"{prev_stage_predictions} lacks the {previous_stage} segmentation of {len(missing)} "
                         f"case(s): {', '.join(missing[:5])}. Predict them with the {previous_stage} model first")
    return files


def predict_attention_maps(
    predictor: AttentionMapPredictor,
    input_folder: str | os.PathLike,
    prev_stage_predictions: str | os.PathLike | None = None,
    slice_index: int | None = None,
) -> Iterator[CaseMaps]:
    """Yield the maps of every case in ``input_folder`` (nnU-Net naming, ``case_0000.nii.gz``), one case at a time
    so that only one case's maps are held. Each case is read with the plans' reader and preprocessed by nnU-Net's
    ``PreprocessAdapterFromNpy`` (a cascade stage's previous-stage segmentation, from ``prev_stage_predictions``,
    preprocessed with its image and appended as one-hot channels of the foreground labels), as
    ``nnUNetPredictor.predict_single_npy_array`` does. ``slice_index`` (the overlay's) indexes the first axis of
    the image as read (the slice axis of a 3D image); default: the middle slice.

    A UsageError says what is wrong: before the first case for the input folder, the previous stage's files and
    damaged files (:func:`~nnunet_attention.dataset_check.require_complete_files`),
    at each case for a reader without SimpleITK geometry and a ``slice_index`` outside the case."""
    file_ending = predictor.dataset_json["file_ending"]
    cases = create_lists_from_splitted_dataset_folder(str(input_folder), file_ending)
    if not cases:
        raise UsageError(f"no images ending in {file_ending} with nnU-Net's channel suffix (_0000) in {input_folder}")
    case_names = [os.path.basename(image_files[0])[: -len(file_ending) - len("_0000")] for image_files in cases]
    segmentation_files = previous_stage_segmentations(predictor, case_names, prev_stage_predictions)
    require_complete_files([Path(path) for path in (*chain.from_iterable(cases), *segmentation_files)
                            if path is not None])
    reader = predictor.plans_manager.image_reader_writer_class()
    for image_files, case, segmentation_file in zip(cases, case_names, segmentation_files):
        image, properties = reader.read_images(image_files)
        if "sitk_stuff" not in properties:
            raise UsageError(f"attention maps are written with the image's SimpleITK geometry, but this dataset "
                             f"is read with {type(reader).__name__}; use a NIfTI/NRRD/MHA dataset (SimpleITKIO)")
        index = image.shape[1] // 2 if slice_index is None else slice_index
        if not 0 <= index < image.shape[1]:
            raise UsageError(f"--slice {index} is outside case {case}, which has {image.shape[1]} slices")
        previous_stage = None if segmentation_file is None else reader.read_seg(str(segmentation_file))[0]
        preprocessed = next(PreprocessAdapterFromNpy(
            [image], [previous_stage], [properties], [None], predictor.plans_manager, predictor.dataset_json,
            predictor.configuration_manager))
        _, maps = predictor.predict_logits_and_maps(preprocessed["data"])
        properties = preprocessed["data_properties"]
        yield CaseMaps(case, predictor.maps_in_image_geometry(maps, properties), predictor.image_region(properties),
                       index, image[0, index], properties)


def export_attention_maps(
    model_folder: str | os.PathLike,
    folds: Sequence[int | str],
    input_folder: str | os.PathLike,
    output_folder: str | os.PathLike,
    checkpoint_name: str = "checkpoint_final.pth",
    slice_index: int | None = None,
    device: str = "cpu",
    use_mirroring: bool = True,
    prev_stage_predictions: str | os.PathLike | None = None,
) -> list[Path]:
    """Write every attention map of every case in ``input_folder`` with the model in ``model_folder`` (these
    folds' checkpoints); return the case folders. A cascade stage (``3d_cascade_fullres``) needs
    ``prev_stage_predictions``, the folder of the previous stage's segmentations; ``slice_index``: see
    :func:`predict_attention_maps`."""
    check_model_folder(Path(model_folder), folds, checkpoint_name)
    device = torch.device(device)
    with nnunet_chatter_hidden(), demo_trainers_findable(Path(model_folder)):
        predictor = AttentionMapPredictor(
            device=device, use_mirroring=use_mirroring, perform_everything_on_device=device.type == "cuda",
            allow_tqdm=False, verbose=False,
        )
        predictor.initialize_from_trained_model_folder(str(model_folder), tuple(folds), checkpoint_name)
    return [write_case_maps(case, predictor.network, output_folder)
            for case in predict_attention_maps(predictor, input_folder, prev_stage_predictions, slice_index)]
