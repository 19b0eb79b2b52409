"""The folder that ``nnUNet_extTrainer`` points at (the installed start-up hook appends it).

nnU-Net imports each module here as a top-level module and drops it from ``sys.modules`` afterwards, so
the module here is a thin shim that imports the trainers from the installed package.
"""
