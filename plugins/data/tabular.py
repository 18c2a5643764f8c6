"""Tabular and array files: ``csv`` (one row per sample) and ``netcdf`` (any xarray file)."""

from __future__ import annotations

import numpy as np
import reflow
from pydantic import Field
from reflow.errors import DataError
from reflow.units import units_from_name


class CsvSource(reflow.DataSource):
    """A CSV file, one row per sample (dim ``sample``); the path is relative to the study file.

    Every column must be numeric except those listed in ``categorical``. Units come from ``units`` or
    from the column name's suffix (``warpage_um`` -> um).
    """

    class Params(reflow.Params):
        path: str = Field(description="the CSV file, relative to the study file")
        columns: list[str] | None = Field(None, description="columns to keep (default: all)")
        categorical: list[str] = Field(default_factory=list, description="columns holding text labels")
        units: dict[str, str] = Field(default_factory=dict, description="units by column")
        allow_missing: bool = Field(False, description="empty cells become NaN instead of an error")
        delimiter: str = Field(",", description="field separator")

    def load(self, ctx):
        import pandas as pd
        import xarray as xr

        path = ctx.resolve_path(self.params.path)
        if not path.is_file():
            raise DataError(f"csv: file not found: {path} (path {self.params.path!r} is relative to the study)")
        try:
            frame = pd.read_csv(path, dtype=str, keep_default_na=False, sep=self.params.delimiter)
        except (pd.errors.ParserError, UnicodeDecodeError) as exc:
            raise DataError(f"csv: cannot parse {path}: {exc}") from None
        except pd.errors.EmptyDataError:
            raise DataError(f"csv: {path} is empty") from None
        frame.columns = [c.strip() for c in frame.columns]
        wanted = self.params.columns or list(frame.columns)
        missing = [c for c in wanted + self.params.categorical if c not in frame.columns]
        if missing:
            raise DataError(f"csv: {path.name} has no column(s) {', '.join(map(repr, missing))} "
                            f"(columns: {', '.join(frame.columns)})")
        data = {}
        problems = []
        for col in wanted:
            raw = frame[col].str.strip()
            if col in self.params.categorical:
                data[col] = ("sample", raw.to_numpy(dtype=str))
                continue
            numbers = pd.to_numeric(raw.where(raw != "", None), errors="coerce")
            bad = numbers.isna() & (raw != "")
            empty = raw == ""
            if bad.any():
                i = int(np.flatnonzero(bad.to_numpy())[0])
                problems.append(f"column {col!r}, line {i + 2}: {raw.iloc[i]!r} is not a number "
                                f"({int(bad.sum())} such value(s); list text columns under 'categorical')")
            elif empty.any() and not self.params.allow_missing:
                i = int(np.flatnonzero(empty.to_numpy())[0])
                problems.append(f"column {col!r}, line {i + 2}: empty cell ({int(empty.sum())} in all; "
                                "set allow_missing: true to read them as NaN)")
            data[col] = ("sample", numbers.to_numpy(dtype=float))
        if problems:
            raise DataError(f"csv: {path.name}: " + "; ".join(problems))
        ds = xr.Dataset(data, coords={"sample": np.arange(len(frame))})
        for col in wanted:
            units = self.params.units.get(col) or units_from_name(col)
            ds[col].attrs["units"] = units
        ds.attrs.update(source="csv", path=str(path))
        return ds


class NetcdfSource(reflow.DataSource):
    """Any xarray file: netCDF (``.nc``) or, with the zarr package installed, a ``.zarr`` store."""

    class Params(reflow.Params):
        path: str = Field(description="the file or store, relative to the study file")
        variables: list[str] | None = Field(None, description="variables to keep (default: all)")
        group: str | None = Field(None, description="netCDF4/zarr group to read")

    def load(self, ctx):
        import xarray as xr

        path = ctx.resolve_path(self.params.path)
        if not path.exists():
            raise DataError(f"netcdf: not found: {path} (path {self.params.path!r} is relative to the study)")
        kwargs = {"group": self.params.group} if self.params.group else {}
        if path.suffix == ".zarr" or (path.is_dir() and (path / ".zgroup").exists() or (path / "zarr.json").exists()):
            try:
                import zarr  # noqa: F401
            except ImportError:
                raise DataError(f"netcdf: {path} is a zarr store; install the 'zarr' package to read it") from None
            ds = xr.open_zarr(path, **kwargs).load()
        else:
            try:
                ds = xr.load_dataset(path, **kwargs)  # xarray picks the engine: netCDF-4/HDF5 or netCDF-3
            except (OSError, ValueError) as exc:
                raise DataError(f"netcdf: cannot read {path}: {exc}") from None
        if self.params.variables:
            missing = [v for v in self.params.variables if v not in ds]
            if missing:
                raise DataError(f"netcdf: {path.name} has no variable(s) {', '.join(map(repr, missing))} "
                                f"(variables: {', '.join(map(str, ds.data_vars))})")
            ds = ds[self.params.variables]
        ds.attrs.setdefault("source", "netcdf")
        ds.attrs["path"] = str(path)
        return ds
