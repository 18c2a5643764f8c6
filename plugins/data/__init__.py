"""Built-in data sources: csv and netcdf."""

import reflow

from .tabular import CsvSource, NetcdfSource


@reflow.hookimpl
def register_data_sources(register):
    register("csv", CsvSource)
    register("netcdf", NetcdfSource)
