"""Shim for nnU-Net's trainer lookup: exposes the trainers of the installed nnunet_attention package.

A failure here must never stop nnU-Net from finding its other trainers, so it is reported as a warning.
"""

import warnings

try:
    from nnunet_attention.trainers import *  # noqa: F403 - the shim re-exports every trainer
except Exception as import_error:  # noqa: BLE001 - any failure must leave nnU-Net's lookup working
    warnings.warn(
        f"nnunet-attention trainers are unavailable ({import_error!r}); nnU-Net's other trainers still work. "
        f"Reinstall the package from its clone (pip install . in the repository folder) to fix it.",
        stacklevel=1,
    )
