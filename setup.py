"""Installs the start-up hook that lets the stock nnU-Net commands find our trainers.

Everything else is declared in pyproject.toml. The hook is a `.pth` file, which must sit at the top of
site-packages; setuptools has no declarative option for that, so the wheel build (`build_py`) and the
editable build (`editable_wheel`) each put it at the root of the wheel they write.
"""

import shutil
from pathlib import Path

from setuptools import setup
from setuptools.command.build_py import build_py
from setuptools.command.editable_wheel import editable_wheel

HOOK_FILE = Path(__file__).parent / "nnunet_attention_ext_trainer.pth"


class BuildPyWithStartupHook(build_py):
    def run(self):
        super().run()
        self.copy_file(str(HOOK_FILE), str(Path(self.build_lib) / HOOK_FILE.name))

    def get_outputs(self, include_bytecode=True):
        return super().get_outputs(include_bytecode) + [str(Path(self.build_lib) / HOOK_FILE.name)]


class EditableWheelWithStartupHook(editable_wheel):
    # The only step of editable_wheel that writes into the wheel's root folder; the hook goes beside.
    def _install_namespaces(self, installation_dir, pth_prefix):
        super()._install_namespaces(installation_dir, pth_prefix)
        shutil.copy(HOOK_FILE, Path(installation_dir) / HOOK_FILE.name)


setup(cmdclass={"build_py": BuildPyWithStartupHook, "editable_wheel": EditableWheelWithStartupHook})
