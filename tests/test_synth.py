"""The synthetic dataset: nnU-Net raw format, reproducible, context-dependent labels, safe writes."""

import json

import numpy as np
import pytest
import SimpleITK as sitk
from scipy import ndimage

from nnunet_attention.errors import UsageError
from nnunet_attention.synth import LABELS, SynthSpec, generate_case, write_dataset


def test_same_seed_same_cases_other_seed_other_cases():
    spec = SynthSpec(shape=(40, 48))
    first = generate_case(spec, np.random.default_rng(3))
    again = generate_case(spec, np.random.default_rng(3))
    other = generate_case(spec, np.random.default_rng(4))
    np.testing.assert_array_equal(first[0], again[0])
    np.testing.assert_array_equal(first[1], again[1])
    assert not np.array_equal(first[1], other[1])


@pytest.mark.parametrize("shape,spacing", [((64, 72), (1.0, 1.0)), ((12, 40, 48), (3.0, 1.0, 1.0))])
def test_labels_need_context(shape, spacing):
    spec = SynthSpec(shape=shape, spacing=spacing, noise_std=0.0)
    rng = np.random.default_rng(0)
    for _ in range(5):
        image, labels = generate_case(spec, rng)
        assert set(np.unique(labels)) == set(LABELS.values())
        ellipsoid_region = ndimage.binary_fill_holes(labels == LABELS["ellipsoid"]) | (labels == LABELS["inclusion"])
        # every inclusion lies inside the ellipsoid
        assert np.all(ellipsoid_region[labels == LABELS["inclusion"]])
        # noise-free, ellipsoid and cuboid show one intensity (up to the bias field): shape alone tells them apart
        ellipsoid_mean = image[0][labels == LABELS["ellipsoid"]].mean()
        cuboid_mean = image[0][labels == LABELS["cuboid"]].mean()
        assert abs(ellipsoid_mean - cuboid_mean) < 0.25 * abs(ellipsoid_mean)


def test_write_dataset_in_nnunet_raw_format(tmp_path):
    spec = SynthSpec(
        dataset_id=7, name="Tiny", shape=(6, 20, 24), spacing=(2.5, 0.8, 0.8), n_channels=2, n_train=5, n_test=2
    )
    folder = write_dataset(spec, tmp_path)
    assert folder.name == "Dataset007_Tiny"
    dataset = json.loads((folder / "dataset.json").read_text())
    assert dataset["labels"] == LABELS and dataset["numTraining"] == 5
    assert dataset["channel_names"] == {"0": "contrast0", "1": "contrast1"}
    assert len(list((folder / "imagesTr").iterdir())) == 10 and len(list((folder / "labelsTs").iterdir())) == 2
    image = sitk.ReadImage(str(folder / "imagesTr" / "train_000_0001.nii.gz"))
    assert image.GetSize() == (24, 20, 6)
    np.testing.assert_allclose(image.GetSpacing(), (0.8, 0.8, 2.5))
    assert [path.name for path in tmp_path.iterdir()] == ["Dataset007_Tiny"]  # no partial folder left


def test_existing_dataset_is_not_overwritten_without_asking(tmp_path):
    spec = SynthSpec(dataset_id=8, shape=(16, 16), n_train=5, n_test=1)
    write_dataset(spec, tmp_path)
    with pytest.raises(UsageError, match="--overwrite"):
        write_dataset(spec, tmp_path)
    write_dataset(spec, tmp_path, overwrite=True)


@pytest.mark.parametrize(
    "arguments,message",
    [
        (dict(n_train=3), "--train 3: nnU-Net's 5-fold split needs at least 5 training cases"),
        (dict(shape=(8, 64)), "--shape 8 64 is too small"),
        (dict(shape=(0, 32, 32), spacing=(1.0, 1.0, 1.0)), "--shape 0 32 32: a 3D dataset needs at least 2 slices"),
        (dict(shape=(1, 32, 32), spacing=(1.0, 1.0, 1.0)), "--shape 1 32 32: a 3D dataset needs at least 2 slices"),
        (dict(shape=(32,), spacing=(1.0,)), "--shape 32: give 2 values"),
        (dict(shape=(32, 32), spacing=(1.0,)), "--spacing needs as many values as --shape (2), got 1"),
        (dict(shape=(32, 32), spacing=(0.0, 1.0)), "--spacing values must be positive"),
        (dict(noise_std=-1.0), "--noise is a standard deviation and must be 0 or more, got -1.0"),
        (dict(n_channels=5), "--channels must be between 1 and 4"),
        (dict(seed=-1), "--seed must be 0 or more"),
        (dict(name="My Data/1"), "--name 'My Data/1': use letters, digits and '-'"),
    ],
)
def test_bad_specs_say_what_is_wrong(arguments, message):
    with pytest.raises(ValueError) as error:
        SynthSpec(**arguments)
    assert message in str(error.value)


def test_a_failed_write_leaves_nothing_nnunet_could_take_for_a_dataset(tmp_path, monkeypatch):
    """Interrupted half-way (here: the disk fills up at the 7th image), the raw folder holds nothing: no
    DatasetXXX_ folder, and no partial folder either."""
    import nnunet_attention.synth as synth

    written = []
    real_write = synth._write_image

    def write_until_full(array, spacing, path):
        if len(written) == 6:
            raise OSError(28, "No space left on device")
        written.append(path)
        real_write(array, spacing, path)

    monkeypatch.setattr(synth, "_write_image", write_until_full)
    with pytest.raises(OSError, match="No space left"):
        write_dataset(SynthSpec(dataset_id=9, shape=(16, 16), n_train=5, n_test=1), tmp_path)
    assert len(written) == 6 and list(tmp_path.iterdir()) == []
