"""Built-in vision models and the ``explain`` task: ``vit`` (supervised ViT), ``vit-mae`` (ViT with MAE self
pre-training, seed 003), ``cnn`` (sam-cnn or a timm backbone), ``ffn-multiscale`` (seed 001), ``cti`` (seed 002),
``timm-features`` and the ``pca-logistic`` baseline (seed 004), ``faster-rcnn`` (a torchvision defect detector),
Grad-CAM explanations and the ONNX ``export`` task.

Heavy libraries (torch, timm, grad-cam) load only when a model is built or a task runs.
"""

import reflow

from .cnn import CNN
from .cti import CTI
from .detector import FasterRCNN
from .explain import ExplainTask
from .features import TimmFeatures
from .ffn import FFNMultiscale
from .mae import ViTMAE
from .onnx import ExportTask
from .pca import PCALogistic
from .vit import ViT


@reflow.hookimpl
def register_models(register):
    register("vit", ViT)
    register("vit-mae", ViTMAE)
    register("cnn", CNN)
    register("ffn-multiscale", FFNMultiscale)
    register("cti", CTI)
    register("timm-features", TimmFeatures)
    register("pca-logistic", PCALogistic)
    register("faster-rcnn", FasterRCNN)


@reflow.hookimpl
def register_tasks(register):
    register("explain", ExplainTask)
    register("export", ExportTask)
