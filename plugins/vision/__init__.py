"""Built-in vision models and the ``explain`` task: ``vit`` (supervised ViT), ``vit-mae`` (ViT with MAE self
pre-training, seed 003), ``cnn`` (sam-cnn or a timm backbone), and Grad-CAM explanations.

Heavy libraries (torch, timm, grad-cam) load only when a model is built or a task runs.
"""

import reflow

from .cnn import CNN
from .explain import ExplainTask
from .mae import ViTMAE
from .vit import ViT


@reflow.hookimpl
def register_models(register):
    register("vit", ViT)
    register("vit-mae", ViTMAE)
    register("cnn", CNN)


@reflow.hookimpl
def register_tasks(register):
    register("explain", ExplainTask)
