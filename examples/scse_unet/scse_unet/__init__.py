"""scSE U-Net: nnU-Net's planned U-Net whose skips pass through concurrent spatial and channel squeeze-and-excitation
(Roy, Navab and Wachinger, MICCAI 2018), brought to nnU-Net with nnunet-attention's building blocks."""
