"""Built-in data sources: csv and netcdf tables, image folders, manifests and COCO detection JSON, synthetic SAM,
WLP-defect, IC-package and SEM-sintering images."""

import reflow

from .coco import CocoSource
from .icpackage import SyntheticIcPackage
from .images import ImageFolder, ImageManifest
from .sam import SyntheticSam
from .sem import SyntheticSemSinter
from .tabular import CsvSource, NetcdfSource
from .wlp import SyntheticWlp


@reflow.hookimpl
def register_data_sources(register):
    register("csv", CsvSource)
    register("netcdf", NetcdfSource)
    register("image-folder", ImageFolder)
    register("image-manifest", ImageManifest)
    register("synthetic-sam", SyntheticSam)
    register("synthetic-wlp", SyntheticWlp)
    register("synthetic-ic-package", SyntheticIcPackage)
    register("synthetic-sem-sinter", SyntheticSemSinter)
    register("coco", CocoSource)
