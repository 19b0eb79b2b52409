"""Atomic writes: the target appears only complete, and a failed write leaves neither it nor a partial file."""

import pytest

from nnunet_attention.atomic import atomic_path


def test_the_target_appears_only_when_the_block_succeeds(tmp_path):
    target = tmp_path / "map.nii.gz"
    with atomic_path(target) as partial:
        assert partial.name.endswith(".nii.gz") and partial.parent == tmp_path
        partial.write_bytes(b"complete")
        assert not target.exists()
    assert target.read_bytes() == b"complete"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["map.nii.gz"]


def test_a_failed_write_keeps_the_old_file_and_removes_the_partial_one(tmp_path):
    target = tmp_path / "maps.json"
    target.write_text("old")
    with pytest.raises(RuntimeError, match="interrupted"), atomic_path(target) as partial:
        partial.write_text("half")
        raise RuntimeError("interrupted")
    assert target.read_text() == "old"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["maps.json"]
