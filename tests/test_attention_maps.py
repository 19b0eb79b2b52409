"""The values ``nnunet-attention attention-maps`` exports, recomputed from their formulas (float64).

:class:`ProbedNetwork` is what nnU-Net's predictor runs for the export: its logits must be the network's, and
each map channel the probe's summary of the captured map resized to the patch; for the root-mean-square maps
(unbounded, so a range check proves little) the captured map itself must be the block's response computed from
the paper's formula. Around them, the export's steps on small files: nnU-Net's preprocessing (cascade one-hot
included) and its reversal to the image's geometry, the files written per case, and the check that nnU-Net's
private stitching is still the one the export replaces. The end-to-end tests run the command on trained models.
"""

import json
import math
from importlib.metadata import version
from pathlib import Path

import numpy as np
import pytest
import SimpleITK as sitk
import torch
import torch.nn.functional as F
from helpers import ANY_PATCH_TRAINERS, INPUT_CHANNELS, NUM_CLASSES, build, make_plan, open_zero_initialised_gates
from nnunet_attention.architectures.blocks.attention_probe import (
    AttentionProbe,
    attention_probes,
    capture_attention_maps,
)
from nnunet_attention.architectures.blocks.global_aggregation import GlobalAggregation
from nnunet_attention.architectures.msga import GuidedAttentionScale
from nnunetv2.inference.predict_from_raw_data import nnUNetPredictor
from nnunetv2.utilities.plans_handling.plans_handler import PlansManager
from packaging.specifiers import SpecifierSet
from paper_references import aggregation_reference, guided_attention_reference

from nnunet_attention import attention_map_files, attention_maps
from nnunet_attention.attention_map_files import (
    OVERLAY_MAX_OPACITY,
    CaseMaps,
    colour_scale,
    overlay_opacity,
    overlay_title,
    range_caption,
    write_case_maps,
)
from nnunet_attention.attention_maps import (
    TESTED_NNUNETV2,
    AttentionMapPredictor,
    ProbedNetwork,
    predict_attention_maps,
)
from nnunet_attention.errors import UsageError
from nnunet_attention.plans_fabricator import cascade_plans_for, dataset_json_for, plans_for


def eval_network(trainer_name: str, spatial_dims: int, anisotropic: bool):
    kwargs, patch = make_plan(spatial_dims, 5, anisotropic)
    network = build(trainer_name, kwargs, patch, deep_supervision=False).double().eval()
    torch.manual_seed(1)
    open_zero_initialised_gates(network)
    return network, 3 * torch.randn(2, INPUT_CHANNELS, *patch, dtype=torch.float64)


def inputs_of(network: torch.nn.Module, module_type: type) -> dict[str, tuple]:
    """Run nothing; return a dict that fills with each ``module_type`` submodule's positional inputs per forward."""
    seen = {}
    for name, module in network.named_modules():
        if isinstance(module, module_type):
            module.register_forward_pre_hook(lambda _m, args, name=name: seen.__setitem__(name, args))
    return seen


def summary_reference(attention_map: torch.Tensor, channel_summary: str) -> torch.Tensor:
    """rms: ``sqrt(1/C Σ_c m_c²)`` per voxel, written as a loop over channels; single: the map."""
    if channel_summary == "single":
        return attention_map
    squares = sum(attention_map[:, c:c + 1] ** 2 for c in range(attention_map.shape[1]))
    return torch.sqrt(squares / attention_map.shape[1])


@pytest.mark.parametrize("trainer_name", ANY_PATCH_TRAINERS)
@pytest.mark.parametrize("spatial_dims,anisotropic", [(2, False), (3, True)], ids=["2d", "3d"])
def test_exported_channels_are_the_logits_and_each_probes_summary_resized(trainer_name, spatial_dims, anisotropic):
    network, image = eval_network(trainer_name, spatial_dims, anisotropic)
    probed = ProbedNetwork(network)
    with torch.no_grad():
        exported = probed(image)
        with capture_attention_maps(network) as maps:
            logits = network(image)
    assert exported.shape == (2, NUM_CLASSES + len(maps), *image.shape[2:])
    assert probed.map_names == [probe.map_name for probe in attention_probes(network).values()]
    torch.testing.assert_close(exported[:, :NUM_CLASSES], logits, rtol=0, atol=0)
    for index, (name, probe) in enumerate(attention_probes(network).items()):
        expected = F.interpolate(summary_reference(maps[name], probe.channel_summary), size=image.shape[2:],
                                 mode="bilinear" if spatial_dims == 2 else "trilinear", align_corners=False)
        torch.testing.assert_close(exported[:, NUM_CLASSES + index:NUM_CLASSES + index + 1].double(), expected,
                                   rtol=1e-6, atol=1e-6, msg=lambda message, name=name: f"{name}: {message}")


@pytest.mark.parametrize("spatial_dims,anisotropic", [(2, False), (3, True)], ids=["2d", "3d"])
def test_non_local_maps_are_the_global_aggregation_response_of_the_papers_formula(spatial_dims, anisotropic):
    network, image = eval_network("nnUNetTrainerNonLocalUNet", spatial_dims, anisotropic)
    block_inputs = inputs_of(network, GlobalAggregation)
    with torch.no_grad(), capture_attention_maps(network) as maps:
        network(image)
    assert len(block_inputs) == 2
    for name, (features,) in block_inputs.items():
        with torch.no_grad():
            expected = aggregation_reference(network.get_submodule(name), features)
        torch.testing.assert_close(maps[f"{name}.attention_probe"], expected, rtol=1e-10, atol=1e-10)


def test_msga_maps_are_the_step_one_guided_attention_of_the_papers_formula():
    """``A_s = conv1x1((PAM(x) + CAM(x)) * conv(reconstruction))`` of step 1 at each scale, per probe."""
    network, image = eval_network("nnUNetTrainerMSGA", 2, False)
    scale_inputs = inputs_of(network, GuidedAttentionScale)
    with torch.no_grad(), capture_attention_maps(network) as maps:
        network(image)
    for s in range(len(network.scale_levels)):
        step_input, reconstruction = scale_inputs[f"guided_attention.0.{s}"]
        with torch.no_grad():
            expected = guided_attention_reference(network.guided_attention[0][s], step_input, reconstruction)
        torch.testing.assert_close(maps[f"attention_probes.{s}"], expected, rtol=1e-10, atol=1e-10)


class ConstantMapNetwork(torch.nn.Module):
    """Zero logits and one attention map that is ``value`` everywhere: ``(B, C, *S)`` -> ``(B, classes, *S)``."""

    def __init__(self, num_classes: int, value: float):
        super().__init__()
        self.num_classes, self.value = num_classes, value
        self.probe = AttentionProbe("constant map")
        self.probe.map_name = "constant"

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        self.probe(torch.full_like(x[:, :1], self.value))
        return torch.zeros(x.shape[0], self.num_classes, *x.shape[2:])


def test_stitching_keeps_small_map_values_in_the_volume_corners():
    """A map that is 0.03 everywhere, stitched from overlapping 3D patches with nnU-Net's Gaussian weights and
    mirroring, is 0.03 everywhere. In nnU-Net's float16 buffer the corners covered by one patch came out 0."""
    kwargs, patch = make_plan(3, 4, anisotropic=False)
    plans_manager = PlansManager(plans_for(kwargs, patch, "3d_fullres"))
    network = ProbedNetwork(ConstantMapNetwork(NUM_CLASSES, 0.03))
    predictor = AttentionMapPredictor(device=torch.device("cpu"), perform_everything_on_device=False, allow_tqdm=False)
    predictor.manual_initialization(
        network, plans_manager, plans_manager.get_configuration("3d_fullres"), [network.state_dict()],
        dataset_json_for(INPUT_CHANNELS, NUM_CLASSES), "ConstantMap", inference_allowed_mirroring_axes=(0, 1, 2))
    volume = torch.randn(INPUT_CHANNELS, *(int(1.5 * size) for size in patch))
    logits, maps = predictor.predict_logits_and_maps(volume)
    assert logits.shape == (NUM_CLASSES, *volume.shape[1:]) and maps.shape == (1, *volume.shape[1:])
    torch.testing.assert_close(maps, torch.full_like(maps, 0.03), rtol=1e-5, atol=0)


def test_colour_scale_spans_the_bulk_of_the_values_inside_the_value_range():
    generator = np.random.default_rng(0)
    values = generator.uniform(0.016, 0.071, 10_000)
    values[:5] = 1.0  # a few extreme voxels must not wash out the rest
    low, high = colour_scale(values, (0.0, 1.0))
    assert (low, high) == (np.percentile(values, 1), np.percentile(values, 99))
    assert 0.016 < low < 0.0172 and 0.0698 < high < 0.071
    assert colour_scale(values, (0.02, 0.05)) == (0.02, 0.05)
    constant_low, constant_high = colour_scale(np.full(100, 0.25), (0.0, 1.0))
    assert constant_low == 0.25 and 0.25 < constant_high < 0.2503
    assert range_caption(values, (low, high)) == (
        f"values 0.016 to 1; colours span {low:.3g} to {high:.3g} (percentiles 1-99)")


class InputChannelMapNetwork(torch.nn.Module):
    """Zero logits and one unbounded attention map, the input's ``channel`` as the network sees it (preprocessed,
    cascade one-hot channels behind the image's): ``(B, C, *S)`` -> ``(B, classes, *S)``."""

    def __init__(self, num_classes: int, channel: int):
        super().__init__()
        self.num_classes, self.channel = num_classes, channel
        self.probe = AttentionProbe("input channel", value_range=(-math.inf, math.inf))
        self.probe.map_name = "input"

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        self.probe(x[:, self.channel:self.channel + 1])
        return torch.zeros(x.shape[0], self.num_classes, *x.shape[2:])


#: a 3D case (Z, Y, X): nonzero inside BOX, 0 around it (nnU-Net crops to BOX); spacing 1 as the plans', so nothing
#: is resampled
IMAGE_SHAPE, BOX = (12, 14, 30), (slice(2, 11), slice(0, 14), slice(3, 27))


def small_plans(cascade: bool = False) -> tuple[dict, str]:
    """(plans, configuration): a 3D plan of patch (8, 8, 24) whose transpose is not the identity (so reverting it
    is checked), z-score normalisation per input channel; with ``cascade``, its ``3d_cascade_fullres`` stage."""
    kwargs, patch = make_plan(3, 4, anisotropic=False)
    plans = cascade_plans_for(kwargs, patch) if cascade else plans_for(kwargs, patch, configuration="3d_fullres")
    plans.update(transpose_forward=[2, 0, 1], transpose_backward=[1, 2, 0],
                 foreground_intensity_properties_per_channel={str(c): {} for c in range(INPUT_CHANNELS)})
    plans["configurations"]["3d_fullres"].update(normalization_schemes=["ZScoreNormalization"] * INPUT_CHANNELS,
                                                 use_mask_for_norm=[False] * INPUT_CHANNELS)
    return plans, "3d_cascade_fullres" if cascade else "3d_fullres"


def probed_predictor(network: torch.nn.Module, plans: dict, configuration: str) -> AttentionMapPredictor:
    """:class:`AttentionMapPredictor` of ``network`` on the CPU, mirroring on, as the export builds it from a model
    folder."""
    plans_manager = PlansManager(plans)
    probed = ProbedNetwork(network)
    predictor = AttentionMapPredictor(device=torch.device("cpu"), perform_everything_on_device=False, allow_tqdm=False)
    predictor.manual_initialization(
        probed, plans_manager, plans_manager.get_configuration(configuration), [probed.state_dict()],
        dataset_json_for(INPUT_CHANNELS, NUM_CLASSES), "InputChannelMap", inference_allowed_mirroring_axes=(0, 1, 2))
    return predictor


def write_nifti(array: np.ndarray, path: Path) -> None:
    image = sitk.GetImageFromArray(array)
    image.SetOrigin((4.0, -3.0, 10.5))
    path.parent.mkdir(parents=True, exist_ok=True)
    sitk.WriteImage(image, str(path))


def write_case(folder: Path, name: str, seed: int) -> np.ndarray:
    """Write the channels of a random case ``(INPUT_CHANNELS, *IMAGE_SHAPE)`` (positive in BOX, 0 around it) as
    ``<name>_000c.nii.gz``; return them."""
    image = np.zeros((INPUT_CHANNELS, *IMAGE_SHAPE), dtype=np.float32)
    image[(slice(None), *BOX)] = np.random.default_rng(seed).uniform(1, 5, (INPUT_CHANNELS, 9, 14, 24))
    for channel in range(INPUT_CHANNELS):
        write_nifti(image[channel], folder / f"{name}_{channel:04d}.nii.gz")
    return image


def test_predicted_maps_are_the_network_input_taken_back_to_the_image_geometry(tmp_path):
    """A network whose map is its input's first channel gives, in the image's geometry, the image's first channel
    as nnU-Net normalises it (z-score over the region it keeps) inside that region and 0 outside; the overlay's
    background is the image as read."""
    images = [write_case(tmp_path / "images", name, seed) for seed, name in enumerate(["case_a", "case_b"])]
    predictor = probed_predictor(InputChannelMapNetwork(NUM_CLASSES, 0), *small_plans())
    cases = list(predict_attention_maps(predictor, tmp_path / "images", slice_index=4))
    assert [case.name for case in cases] == ["case_a", "case_b"]
    region = np.zeros(IMAGE_SHAPE, dtype=bool)
    region[BOX] = True
    for case, image in zip(cases, images):
        assert case.maps.shape == (1, *IMAGE_SHAPE) and case.maps.dtype == np.float32
        np.testing.assert_array_equal(case.region, region)
        assert case.overlay_slice == 4
        np.testing.assert_array_equal(case.image_slice, image[0, 4])
        kept = image[0][region].astype(np.float64)
        np.testing.assert_allclose(case.maps[0][region], (kept - kept.mean()) / kept.std(), rtol=1e-5, atol=1e-5)
        assert (case.maps[0][~region] == 0).all()
        assert case.properties["shape_before_cropping"] == tuple(IMAGE_SHAPE[i] for i in (2, 0, 1))


def test_a_cascade_stage_sees_the_previous_stage_segmentation_one_hot(tmp_path):
    """The cascade stage's input behind the image is nnU-Net's one-hot of the previous stage's segmentation (one
    channel per foreground label); without the folder of those segmentations the export says how to make them."""
    write_case(tmp_path / "images", "case", 0)
    segmentation = np.random.default_rng(1).integers(0, NUM_CLASSES, IMAGE_SHAPE).astype(np.uint8)
    write_nifti(segmentation, tmp_path / "lowres" / "case.nii.gz")
    predictor = probed_predictor(InputChannelMapNetwork(NUM_CLASSES, INPUT_CHANNELS + 1), *small_plans(cascade=True))
    with pytest.raises(UsageError, match="the cascade stage after 3d_lowres.*pass that folder with "
                                         "-prev_stage_predictions"):
        next(predict_attention_maps(predictor, tmp_path / "images"))
    with pytest.raises(UsageError, match="lacks the 3d_lowres segmentation of 1 case"):
        next(predict_attention_maps(predictor, tmp_path / "images", tmp_path / "images"))
    (case,) = predict_attention_maps(predictor, tmp_path / "images", tmp_path / "lowres")
    expected = np.where(case.region, segmentation == 2, 0)  # the channel of label 2; the crop is all 0
    np.testing.assert_allclose(case.maps[0], expected, rtol=0, atol=1e-6)


def test_prediction_refuses_what_it_cannot_export(tmp_path):
    """Each a user's mistake (the command line prints it, exit 2), raised before anything of the case is written."""
    with pytest.raises(UsageError, match="Conv3d exposes no attention maps"):
        ProbedNetwork(torch.nn.Conv3d(1, 1, 1))
    write_case(tmp_path / "images", "case", 0)
    plans, configuration = small_plans()
    predictor = probed_predictor(InputChannelMapNetwork(NUM_CLASSES, 0), plans, configuration)
    with pytest.raises(UsageError, match=r"--slice 12 is outside case case, which has 12 slices"):
        next(predict_attention_maps(predictor, tmp_path / "images", slice_index=12))
    with pytest.raises(UsageError, match="no images ending in .nii.gz with nnU-Net's channel suffix"):
        next(predict_attention_maps(predictor, tmp_path))
    with pytest.raises(UsageError, match="this model is not a cascade stage"):
        next(predict_attention_maps(predictor, tmp_path / "images", tmp_path))
    image_file = tmp_path / "images" / "case_0000.nii.gz"
    complete = image_file.read_bytes()
    image_file.write_bytes(complete[:-100])  # SimpleITK would read it, the missing voxels as zeros
    with pytest.raises(UsageError, match=r"1 damaged file\(s\):\n  \S+case_0000.nii.gz: truncated"):
        next(predict_attention_maps(predictor, tmp_path / "images"))
    image_file.write_bytes(complete)
    plans["image_reader_writer"] = "NibabelIO"
    predictor = probed_predictor(InputChannelMapNetwork(NUM_CLASSES, 0), plans, configuration)
    with pytest.raises(UsageError, match="this dataset is read with NibabelIO; use a NIfTI/NRRD/MHA dataset"):
        next(predict_attention_maps(predictor, tmp_path / "images"))


def two_dimensional_case(name: str) -> CaseMaps:
    """A 2D case as nnU-Net reads a 2D file (image shape ``(1, 6, 9)``): a map in [0.2, 0.9] and 0 in the border
    column nnU-Net cropped."""
    maps = np.random.default_rng(2).uniform(0.2, 0.9, (1, 1, 6, 9)).astype(np.float32)
    region = np.ones((1, 6, 9), dtype=bool)
    region[..., 8] = False
    maps[0][~region] = 0
    geometry = {"spacing": (0.5, 0.75), "origin": (3.0, -2.0), "direction": (0.0, 1.0, 1.0, 0.0)}
    return CaseMaps(name, maps, region, 0, np.arange(54.0).reshape(6, 9), {"sitk_stuff": geometry})


def test_a_written_case_holds_each_map_in_the_image_geometry_and_its_index_last(tmp_path, monkeypatch):
    network = ProbedNetwork(ConstantMapNetwork(NUM_CLASSES, 0.03))
    case = two_dimensional_case("case")
    assert write_case_maps(case, network, tmp_path) == tmp_path / "case"
    written = sitk.ReadImage(str(tmp_path / "case" / "constant.nii.gz"))
    np.testing.assert_array_equal(sitk.GetArrayFromImage(written), case.maps[0, 0])
    assert (written.GetSpacing(), written.GetOrigin(), written.GetDirection()) == tuple(
        case.properties["sitk_stuff"][key] for key in ("spacing", "origin", "direction"))
    values = case.maps[0][case.region]
    assert json.loads((tmp_path / "case" / "maps.json").read_text()) == {"constant": {
        "description": "constant map", "module": "probe", "value_range": [0.0, 1.0],
        "values": [float(values.min()), float(values.max())], "colour_scale": list(colour_scale(values, (0, 1))),
        "overlay_slice": 0, "files": ["constant.nii.gz", "constant_overlay.png", "constant.png"]}}
    for picture in ("constant_overlay.png", "constant.png"):
        assert (tmp_path / "case" / picture).read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"

    def failing_png(*_args):
        raise OSError("disk full")

    monkeypatch.setattr(attention_map_files, "write_png", failing_png)
    with pytest.raises(OSError, match="disk full"):
        write_case_maps(two_dimensional_case("interrupted"), network, tmp_path)
    assert sorted(path.name for path in (tmp_path / "interrupted").iterdir()) == [
        "constant.nii.gz", "constant_overlay.png"]


def changed_signature(self, data, slicers, do_on_device=True, results_dtype=torch.half):
    """A sliding window with a parameter the override does not take."""


def without_the_private_call(self, input_image):
    """A sliding window that no longer goes through _internal_predict_sliding_window_return_logits."""


def gaussian_without_dtype(tile_size, sigma_scale=0.125, value_scaling_factor=1, device=None):
    """compute_gaussian without its dtype parameter."""


@pytest.mark.parametrize("change,message", [
    (lambda patch: patch.setattr(nnUNetPredictor, "_internal_predict_sliding_window_return_logits",
                                 changed_signature),
     "_internal_predict_sliding_window_return_logits(self, data, slicers, do_on_device=True, results_dtype="),
    (lambda patch: patch.delattr(nnUNetPredictor, "_internal_maybe_mirror_and_predict"),
     "nnUNetPredictor._internal_maybe_mirror_and_predict is gone"),
    (lambda patch: patch.setattr(nnUNetPredictor, "predict_sliding_window_return_logits", without_the_private_call),
     "predict_sliding_window_return_logits no longer calls _internal_predict_sliding_window_return_logits"),
    (lambda patch: patch.setattr(attention_maps, "compute_gaussian", gaussian_without_dtype),
     "compute_gaussian has no parameter dtype"),
], ids=["signature", "method-gone", "not-called", "gaussian"])
def test_the_predictor_refuses_an_nnunet_whose_private_stitching_changed(change, message, monkeypatch):
    AttentionMapPredictor(device=torch.device("cpu"), perform_everything_on_device=False)  # the installed one
    change(monkeypatch)
    with pytest.raises(RuntimeError) as refusal:
        AttentionMapPredictor(device=torch.device("cpu"), perform_everything_on_device=False)
    assert message in str(refusal.value)
    assert f"nnunetv2 {version('nnunetv2')} changed it" in str(refusal.value)
    assert f"tested with nnunetv2{TESTED_NNUNETV2}; install one of those" in str(refusal.value)


def test_the_declared_nnunetv2_range_is_the_tested_one_and_holds_the_installed_version():
    tomllib = pytest.importorskip("tomllib")
    pyproject = tomllib.loads((Path(__file__).parents[1] / "pyproject.toml").read_text())
    requirement = [dependency for dependency in pyproject["project"]["dependencies"]
                   if dependency.startswith("nnunetv2")]
    assert requirement == [f"nnunetv2{TESTED_NNUNETV2}"]
    assert version("nnunetv2") in SpecifierSet(TESTED_NNUNETV2)
    assert "<" in TESTED_NNUNETV2, "an upper bound: a release may change the private stitching the export replaces"


def test_an_overlay_names_its_slice_and_leaves_the_image_visible_where_attention_is_low():
    assert overlay_title("case_007", "gate_2", 4, 12) == "case_007, slice 4 of 0-11 (first array axis): gate_2"
    assert overlay_title("case_007", "gate_2", 0, 1) == "case_007: gate_2"  # a 2D image has one slice
    opacity = overlay_opacity(np.array([[0.1, 0.2, 0.5], [0.8, 0.9, 1.0]]), (0.2, 0.8))
    np.testing.assert_allclose(opacity, OVERLAY_MAX_OPACITY * np.array([[0, 0, 0.5], [1, 1, 1]]))
    assert OVERLAY_MAX_OPACITY < 1  # the image shows through even at the top of the scale
