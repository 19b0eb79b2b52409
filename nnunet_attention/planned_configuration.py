"""One configuration of an nnU-Net plan with its dataset, as every tool takes it: the benchmark, the memory
estimate, the planner's candidates, ``plan --verify`` and ``compare --with-cost``.

A :class:`PlannedConfiguration` holds the whole plans dict in nnU-Net's format and the dataset.json, so what it
gives (nnU-Net's ``PlansManager``, input channels, segmentation heads) comes from nnU-Net's own classes, and a
trainer constructed on it (:mod:`nnunet_attention.trainer_step`) sees exactly what ``nnUNetv2_train`` would.
"""

from __future__ import annotations

import copy
import json
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from .errors import UsageError


@dataclass(frozen=True)
class PlannedConfiguration:
    """Configuration ``configuration`` of ``plans`` (an ``nnUNetPlans.json`` dict) for a dataset described by
    ``dataset_json``.

    Attributes:
        name: what it is, for tables (``"ACDC 2d"``).
        case_shape: voxels of a median case on the configuration's grid (a 2d configuration: the median number
            of slices, then the 2D median size), for the inference timing.
        source: where the numbers come from.
    """

    name: str
    plans: dict[str, Any] = field(repr=False)
    configuration: str
    dataset_json: dict[str, Any] = field(repr=False)
    case_shape: tuple[int, ...]
    source: str

    def plans_manager(self):
        """nnU-Net's ``PlansManager`` of :attr:`plans`."""
        from nnunetv2.utilities.plans_handling.plans_handler import PlansManager

        return PlansManager(self.plans)

    def configuration_manager(self):
        """nnU-Net's ``ConfigurationManager`` of :attr:`configuration` (inheritance resolved)."""
        return self.plans_manager().get_configuration(self.configuration)

    def fitted_to(self, patch_divisor: int) -> PlannedConfiguration:
        """This configuration with every patch axis rounded up to a multiple of ``patch_divisor`` that its U-Net's
        total stride also divides (for a network that declares one, see ``PlannedNetwork.patch_divisor``), as
        ``nnunet-attention plan`` rounds it; itself where the patch already fits."""
        from nnunet_attention.architectures.plan import patch_multiples, rounded_up, total_strides

        strides = self.configuration_manager().network_arch_init_kwargs["strides"]
        fitted = rounded_up(self.patch_size, patch_multiples(total_strides(strides), patch_divisor))
        if fitted == self.patch_size:
            return self
        plans = copy.deepcopy(self.plans)
        plans["configurations"][self.configuration]["patch_size"] = fitted
        return PlannedConfiguration(self.name, plans, self.configuration, self.dataset_json, self.case_shape,
                                    f"{self.source}, patch rounded up to multiples of {patch_divisor}")

    @property
    def patch_size(self) -> list[int]:
        return [int(size) for size in self.configuration_manager().patch_size]

    @property
    def batch_size(self) -> int:
        return int(self.configuration_manager().batch_size)

    @property
    def input_channels(self) -> int:
        """What nnU-Net feeds the network: the image channels, plus the previous stage's one-hot labels for a
        cascade stage."""
        from nnunetv2.utilities.label_handling.label_handling import determine_num_input_channels

        return determine_num_input_channels(self.plans_manager(), self.configuration_manager(), self.dataset_json)

    @property
    def num_classes(self) -> int:
        """The network's output channels (nnU-Net's segmentation heads: labels incl. background, or regions)."""
        return self.plans_manager().get_label_manager(self.dataset_json).num_segmentation_heads

    def label(self, batch_size: int) -> str:
        return f"{self.name} {self.patch_size} b{batch_size}"

    def cache_key(self) -> str:
        """Equal for equal plans, configuration and dataset: a key for caching what is computed from them."""
        return json.dumps([self.plans, self.configuration, self.dataset_json], sort_keys=True, default=str)

    @classmethod
    def from_plans_file(cls, plans_file: str | os.PathLike, configuration: str) -> PlannedConfiguration:
        """``configuration`` of an ``nnUNetPlans.json``, with the dataset.json beside it (nnUNet_preprocessed/
        DatasetXXX/ and model folders hold both). A :class:`UsageError` saying what is missing."""
        plans_file = Path(plans_file)
        if not plans_file.is_file():
            raise UsageError(f"no plans file {plans_file}")
        plans = json.loads(plans_file.read_text())
        dataset_file = plans_file.with_name("dataset.json")
        if configuration not in plans.get("configurations", {}):
            raise UsageError(f"{plans_file} has no configuration {configuration!r}; it has "
                             f"{sorted(plans.get('configurations', {}))}")
        if not dataset_file.is_file():
            raise UsageError(f"no dataset.json beside {plans_file}: copy the dataset's dataset.json there (it gives "
                             f"the number of input channels and classes)")
        planned = cls(f"{plans['dataset_name']} {configuration}", plans, configuration,
                      json.loads(dataset_file.read_text()), (), str(plans_file))
        median = [round(v) for v in planned.configuration_manager().median_image_size_in_voxels]
        if len(median) == 2:  # 2d configuration: the median number of slices comes from the original median shape
            median = [round(plans["original_median_shape_after_transp"][0]), *median]
        return cls(planned.name, plans, configuration, planned.dataset_json, tuple(median), str(plans_file))
