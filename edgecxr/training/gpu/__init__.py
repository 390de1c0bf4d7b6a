"""Training with the whole data set on the accelerator: decode once, augment on the device.

`data` decodes an image folder once into one uint8 tensor at the model's size, with the
project's one preprocessing (`edgecxr.core.preprocess`); `augment` draws a batch's random
geometry and intensity changes as vectorised torch ops; `loop` trains (bf16 autocast,
AdamW, warmup + cosine, label smoothing, optional weight average), chooses the checkpoint
on the patient-grouped validation split only and writes the run folder `edgecxr export`
reads. `train/gpu_train.py` is the command line.
"""
