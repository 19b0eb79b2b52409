"""nnunet-attention: attention architectures for medical image segmentation as nnU-Net v2 trainers.

- ``nnunet_attention.trainers``: the trainers (``nnUNetTrainerAttentionUNet``, ...), found by the stock
  ``nnUNetv2_*`` commands after installation;
- ``nnunet_attention.architectures``: the networks, built from an nnU-Net plan's ``arch_kwargs``;
- ``nnunet-attention demo | synth``: the command line.
"""

__version__ = "0.1.0"
