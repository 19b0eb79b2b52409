"""nnunet-attention: attention architectures for medical image segmentation as nnU-Net v2 trainers.

- ``nnunet_attention.trainers``: the trainers (``nnUNetTrainerAttentionUNet``, ...), found by the stock
  ``nnUNetv2_*`` commands after installation;
- ``nnunet_attention.architectures``: the networks, built from an nnU-Net plan's ``arch_kwargs``;
- ``nnunet-attention demo | synth | attention-maps | benchmark | plan | train-grid | compare``: the command line
  (:mod:`nnunet_attention.cli`), and the tools behind it in this package.
"""

from pathlib import Path

__version__ = "0.1.0"

# The repository keeps ``architectures/`` and ``trainers/`` at its top level; installation maps them to
# ``nnunet_attention.architectures`` and ``nnunet_attention.trainers``. Python started at the repository root
# (a script, a notebook, ``python -m``) imports this source folder instead of the installed package; its
# ``__path__`` then also covers the repository root, so that the same subpackages (the same files) load.
_package_folder = Path(__file__).resolve().parent
if not (_package_folder / "architectures").is_dir() and (_package_folder.parent / "architectures").is_dir():
    __path__.append(str(_package_folder.parent))
