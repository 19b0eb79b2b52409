"""The stock nnU-Net lookup finds our trainers after installation, with no manual setting."""

import inspect
import os
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest
from nnunet_attention.trainers import CONTROLS, TRAINERS, AttentionTrainerBase
from nnunetv2.training.nnUNetTrainer.nnUNetTrainer import nnUNetTrainer

SHIM_FOLDER = os.path.join(os.path.dirname(__import__("nnunet_attention").__file__), "ext_trainers")
REPOSITORY_ROOT = Path(__file__).resolve().parent.parent


def run_python(code: str, environment: dict[str, str], *options: str) -> subprocess.CompletedProcess:
    """Run ``code`` in a fresh interpreter started at the repository root, as scripts and notebooks of a clone
    are (``python -c`` and ``-m`` put that folder, with the source folder ``nnunet_attention/``, first on
    sys.path)."""
    return subprocess.run(
        [sys.executable, *options, "-c", textwrap.dedent(code)], env=environment, capture_output=True, text=True,
        timeout=300, cwd=REPOSITORY_ROOT,
    )


def test_python_started_at_the_repository_root_imports_the_trainers_and_architectures():
    """The source folder ``nnunet_attention/`` lacks ``architectures/`` and ``trainers/`` (top-level folders that
    installation maps into the package); imported from the repository root it must still provide them, the same
    files, with every trainer registered. An editable install's import hook would resolve them anyway; it is
    taken out, so that the check holds for a regular install (``pip install .``) as for an editable one."""
    result = run_python(
        """
        import sys
        sys.meta_path = [finder for finder in sys.meta_path if "Editable" not in getattr(finder, "__name__", "")]
        import nnunet_attention, nnunet_attention.architectures as architectures, nnunet_attention.trainers as trainers
        print("PACKAGE", nnunet_attention.__file__)
        print("ARCHITECTURES", architectures.__file__)
        print("TRAINERS", sorted(trainers.TRAINERS))
        """,
        environment_without_ext_trainer(),
    )
    assert result.returncode == 0, result.stderr
    lines = dict(line.split(" ", 1) for line in result.stdout.splitlines())
    assert lines["PACKAGE"] == str(REPOSITORY_ROOT / "nnunet_attention" / "__init__.py")
    assert lines["ARCHITECTURES"] == str(REPOSITORY_ROOT / "architectures" / "__init__.py")
    assert lines["TRAINERS"] == str(sorted(TRAINERS))
    assert "unavailable" not in result.stderr


def environment_without_ext_trainer() -> dict[str, str]:
    return {k: v for k, v in os.environ.items() if k != "nnUNet_extTrainer"}


def test_registry_holds_the_attention_unet_trainer():
    assert "nnUNetTrainerAttentionUNet" in TRAINERS


@pytest.mark.parametrize("trainer_name", sorted({**TRAINERS, **CONTROLS}))
def test_trainer_keeps_nnunet_init_signature_and_naming(trainer_name):
    """nnU-Net picks the network hook's calling convention by its parameter names, so a control's hook must
    spell them out as the trainers' does."""
    trainer = {**TRAINERS, **CONTROLS}[trainer_name]
    assert issubclass(trainer, nnUNetTrainer)
    assert inspect.signature(trainer.__init__) == inspect.signature(nnUNetTrainer.__init__)
    assert trainer_name.startswith("nnUNetTrainer") and "__" not in trainer_name
    hook = inspect.signature(trainer.build_network_architecture)
    assert list(hook.parameters) == [
        "plans_manager",
        "configuration_manager",
        "num_input_channels",
        "num_output_channels",
        "enable_deep_supervision",
    ]


def test_startup_hook_sets_ext_trainer_and_stock_lookup_finds_every_trainer():
    names = sorted(TRAINERS)
    result = run_python(
        f"""
        import os, pickle
        from nnunetv2.utilities.find_objects import recursive_find_trainer_class_by_name
        print("EXT", os.environ["nnUNet_extTrainer"])
        for name in {names!r}:
            cls = recursive_find_trainer_class_by_name(name)
            assert cls.__module__.startswith("nnunet_attention.trainers"), cls.__module__
            assert pickle.loads(pickle.dumps(cls)) is cls
            print("FOUND", name)
        """,
        environment_without_ext_trainer(),
    )
    assert result.returncode == 0, result.stderr
    assert f"EXT {SHIM_FOLDER}" in result.stdout
    assert all(f"FOUND {name}" in result.stdout for name in names)


def test_startup_hook_keeps_the_users_ext_trainer_value(tmp_path):
    environment = {**environment_without_ext_trainer(), "nnUNet_extTrainer": str(tmp_path)}
    result = run_python("import os; print(os.environ['nnUNet_extTrainer'])", environment)
    assert result.stdout.strip() == os.pathsep.join([str(tmp_path), SHIM_FOLDER])


def test_broken_package_import_leaves_other_external_trainers_findable(tmp_path):
    (tmp_path / "user_trainers.py").write_text(
        "from nnunetv2.training.nnUNetTrainer.nnUNetTrainer import nnUNetTrainer\n"
        "class nnUNetTrainerUserVariant(nnUNetTrainer):\n    pass\n"
    )
    # our shim folder first, so the lookup imports it before reaching the user's folder
    ext_trainer = os.pathsep.join([SHIM_FOLDER, str(tmp_path)])
    environment = {**environment_without_ext_trainer(), "nnUNet_extTrainer": ext_trainer}
    result = run_python(
        """
        import sys
        sys.modules["nnunet_attention.trainers"] = None  # the package's trainers fail to import
        from nnunetv2.utilities.find_objects import recursive_find_trainer_class_by_name
        print("FOUND", recursive_find_trainer_class_by_name("nnUNetTrainerUserVariant").__name__)
        """,
        environment,
    )
    assert result.returncode == 0, result.stderr
    assert "FOUND nnUNetTrainerUserVariant" in result.stdout
    assert "nnunet-attention trainers are unavailable" in result.stderr


def test_base_trainer_without_architecture_says_what_to_use():
    with pytest.raises(TypeError, match="sets no architecture_class; use one of"):
        AttentionTrainerBase.build_network_architecture(None, None, 1, 2, True)
