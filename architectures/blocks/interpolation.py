"""The linear interpolation mode of ``F.interpolate`` for a number of spatial axes."""

LINEAR_MODE = {1: "linear", 2: "bilinear", 3: "trilinear"}
