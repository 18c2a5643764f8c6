"""Built-in augmenters and the ``augment`` task: ``wgan-gp`` (a class-conditional DCGAN trained as a WGAN-GP with
feature matching, seed 001) and ``classic`` (flips, rotations, brightness/contrast jitter, seed 002).

torch, torchvision and scikit-learn load only when a model is fit or the task runs.
"""

import reflow

from .classic import ClassicAugmenter
from .task import AugmentTask
from .wgan import WGANGP


@reflow.hookimpl
def register_models(register):
    register("wgan-gp", WGANGP)
    register("classic", ClassicAugmenter)


@reflow.hookimpl
def register_tasks(register):
    register("augment", AugmentTask)
