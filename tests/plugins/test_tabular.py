"""Data sources csv and netcdf: loading, units, and errors that name the file, column and line."""

from __future__ import annotations

import numpy as np
import pytest
import xarray as xr
from reflow.context import RunContext
from reflow.errors import DataError
from reflow.plugins.data.tabular import CsvSource, NetcdfSource


@pytest.fixture
def ctx(tmp_path):
    study_dir = tmp_path / "study"
    study_dir.mkdir()
    return RunContext(run=None, stage="s", seed=1, device="cpu", folder=tmp_path / "run", study_dir=study_dir,
                      quiet=True)


def write(ctx, name: str, text: str):
    path = ctx.study_dir / name
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(text)
    return path


# ---- csv ----------------------------------------------------------------------------------------


def test_csv_loads_numbers_with_units_from_names(ctx):
    write(ctx, "doe.csv", "die_thickness_mm,warpage_um,stress_mpa,count\n0.1,12.5,80\t,3\n 0.2 ,25.0,90,4\n")
    ds = CsvSource(path="doe.csv").load(ctx)
    assert list(ds.data_vars) == ["die_thickness_mm", "warpage_um", "stress_mpa", "count"]
    assert ds.sizes["sample"] == 2
    assert ds["sample"].values.tolist() == [0, 1]
    assert ds["die_thickness_mm"].dims == ("sample",)
    assert ds["die_thickness_mm"].values.tolist() == [0.1, 0.2]
    assert ds["stress_mpa"].values.tolist() == [80.0, 90.0]
    assert ds["warpage_um"].dtype == np.float64
    assert ds["die_thickness_mm"].attrs["units"] == "mm"
    assert ds["warpage_um"].attrs["units"] == "um"
    assert ds["stress_mpa"].attrs["units"] == "MPa"
    assert ds["count"].attrs["units"] == ""
    assert ds.attrs["source"] == "csv"
    assert ds.attrs["path"] == str(ctx.study_dir / "doe.csv")


def test_csv_explicit_units_override_names(ctx):
    write(ctx, "d.csv", "temp,warpage_um\n1,2\n")
    ds = CsvSource(path="d.csv", units={"temp": "K", "warpage_um": "mm"}).load(ctx)
    assert ds["temp"].attrs["units"] == "K"
    assert ds["warpage_um"].attrs["units"] == "mm"  # no silent conversion: the user said mm


def test_csv_categorical_column(ctx):
    write(ctx, "d.csv", "underfill,lot,warpage_um\nUF-A, 7,1.5\nUF-B,8,2.5\nUF-A,9,3\n")
    ds = CsvSource(path="d.csv", categorical=["underfill"]).load(ctx)
    assert ds["underfill"].values.tolist() == ["UF-A", "UF-B", "UF-A"]
    assert ds["underfill"].dtype.kind == "U"
    assert ds["lot"].values.tolist() == [7.0, 8.0, 9.0]


def test_csv_column_subset_and_path_in_subfolder(ctx):
    write(ctx, "data/d.csv", "a,b,c\n1,2,3\n4,5,6\n")
    ds = CsvSource(path="data/d.csv", columns=["c", "a"]).load(ctx)
    assert list(ds.data_vars) == ["c", "a"]
    assert ds["c"].values.tolist() == [3.0, 6.0]


def test_csv_only_kept_columns_must_be_numeric(ctx):
    write(ctx, "d.csv", "a,note\n1,hello\n2,world\n")
    ds = CsvSource(path="d.csv", columns=["a"]).load(ctx)
    assert list(ds.data_vars) == ["a"]


def test_csv_delimiter_and_absolute_path(ctx, tmp_path):
    path = tmp_path / "elsewhere.csv"
    path.write_text("a;b\n1;2\n")
    ds = CsvSource(path=str(path), delimiter=";").load(ctx)
    assert ds["b"].values.tolist() == [2.0]


def test_csv_scientific_notation_and_negative(ctx):
    write(ctx, "d.csv", "x\n1e-3\n-2.5E2\n+4\n")
    assert CsvSource(path="d.csv").load(ctx)["x"].values.tolist() == [1e-3, -250.0, 4.0]


def test_csv_missing_file(ctx):
    with pytest.raises(DataError, match=r"file not found: .*nothere\.csv.*relative to the study"):
        CsvSource(path="nothere.csv").load(ctx)


def test_csv_missing_column(ctx):
    write(ctx, "d.csv", "a,b\n1,2\n")
    with pytest.raises(DataError) as err:
        CsvSource(path="d.csv", columns=["a", "warpage_um"]).load(ctx)
    msg = str(err.value)
    assert "d.csv" in msg and "'warpage_um'" in msg and "columns: a, b" in msg


def test_csv_missing_categorical_column(ctx):
    write(ctx, "d.csv", "a,b\n1,2\n")
    with pytest.raises(DataError, match="'lot'"):
        CsvSource(path="d.csv", categorical=["lot"]).load(ctx)


def test_csv_non_numeric_value_names_column_and_line(ctx):
    write(ctx, "d.csv", "a,warpage_um\n1,2\n3,4\n5,oops\n7,8\n9,bad\n")
    with pytest.raises(DataError) as err:
        CsvSource(path="d.csv").load(ctx)
    msg = str(err.value)
    assert "d.csv" in msg
    assert "column 'warpage_um'" in msg
    assert "line 4" in msg  # header is line 1, so the third data row is line 4
    assert "'oops'" in msg
    assert "2 such value(s)" in msg
    assert "categorical" in msg


def test_csv_reports_every_bad_column_at_once(ctx):
    write(ctx, "d.csv", "a,b,c\n1,x,3\n4,5,\n")
    with pytest.raises(DataError) as err:
        CsvSource(path="d.csv").load(ctx)
    msg = str(err.value)
    assert "column 'b', line 2" in msg
    assert "column 'c', line 3: empty cell" in msg


def test_csv_empty_cell(ctx):
    write(ctx, "d.csv", "a,b\n1,2\n3,\n5,6\n")
    with pytest.raises(DataError) as err:
        CsvSource(path="d.csv").load(ctx)
    msg = str(err.value)
    assert "column 'b', line 3: empty cell" in msg
    assert "allow_missing" in msg


def test_csv_allow_missing_reads_nan(ctx):
    write(ctx, "d.csv", "a,b\n1,2\n3,\n5,  \n")
    ds = CsvSource(path="d.csv", allow_missing=True).load(ctx)
    b = ds["b"].values
    assert b[0] == 2.0 and np.isnan(b[1]) and np.isnan(b[2])


def test_csv_allow_missing_still_rejects_text(ctx):
    write(ctx, "d.csv", "a,b\n1,\n3,abc\n")
    with pytest.raises(DataError, match="line 3"):
        CsvSource(path="d.csv", allow_missing=True).load(ctx)


def test_csv_unparsable(ctx):
    write(ctx, "d.csv", "a,b\n1,2\n3,4,5,6\n")
    with pytest.raises(DataError, match=r"cannot parse .*d\.csv"):
        CsvSource(path="d.csv").load(ctx)


def test_csv_not_utf8(ctx):
    (ctx.study_dir / "d.csv").write_bytes(b"a,b\n1,\xff\xfe\n")
    with pytest.raises(DataError, match="cannot parse"):
        CsvSource(path="d.csv").load(ctx)


def test_csv_empty_file(ctx):
    write(ctx, "d.csv", "")
    with pytest.raises(DataError, match="empty"):
        CsvSource(path="d.csv").load(ctx)


def test_csv_header_only(ctx):
    write(ctx, "d.csv", "a,b\n")
    ds = CsvSource(path="d.csv").load(ctx)
    assert ds.sizes["sample"] == 0
    assert list(ds.data_vars) == ["a", "b"]


def test_csv_params_validated():
    with pytest.raises(ValueError):
        CsvSource()  # path is required
    with pytest.raises(ValueError):
        CsvSource(path="x.csv", colums=["a"])


def test_csv_through_a_study(write_study, tmp_path):
    from reflow.runner import run_study
    from reflow.study import load_study

    (tmp_path / "lab.csv").write_text("die_thickness_mm,underfill,warpage_um\n0.2,UF-A,30\n0.4,UF-B,20\n")
    path = write_study("""
        study: csv-load
        stages:
          lab:
            task: data
            source: {csv: {path: lab.csv, categorical: [underfill]}}
    """)
    run = run_study(load_study(path), out=tmp_path / "runs", quiet=True)
    ds = run.output("lab")
    assert ds["warpage_um"].values.tolist() == [30.0, 20.0]
    assert ds["underfill"].values.tolist() == ["UF-A", "UF-B"]
    assert ds["warpage_um"].attrs["units"] == "um"
    assert run.manifest["stages"]["lab"]["metrics"] == {"samples": 2, "variables": 3}


# ---- netcdf -------------------------------------------------------------------------------------


def sample_dataset() -> xr.Dataset:
    ds = xr.Dataset(
        {
            "die_thickness_mm": ("sample", np.array([0.1, 0.2, 0.3])),
            "warpage_um": ("sample", np.array([10.0, 20.0, 30.0])),
            "lot": ("sample", np.array(["a", "b", "c"])),
            "image": (("sample", "y", "x"), np.arange(12, dtype=np.float32).reshape(3, 2, 2)),
        },
        coords={"sample": np.arange(3)},
        attrs={"origin": "lab"},
    )
    ds["warpage_um"].attrs["units"] = "um"
    return ds


def test_netcdf_round_trip(ctx):
    ds = sample_dataset()
    ds.to_netcdf(ctx.study_dir / "d.nc", engine="h5netcdf")
    loaded = NetcdfSource(path="d.nc").load(ctx)
    xr.testing.assert_equal(loaded, ds)  # values, dims, coords and dtypes
    assert loaded["image"].dtype == np.float32
    assert loaded["warpage_um"].attrs["units"] == "um"
    assert loaded.attrs["origin"] == "lab"
    assert loaded.attrs["source"] == "netcdf"
    assert loaded.attrs["path"] == str(ctx.study_dir / "d.nc")


def test_netcdf3_classic_file(ctx):
    """Classic netCDF-3 files (written by scipy, NCO, many solvers) load too, not only netCDF-4/HDF5."""
    ds = sample_dataset()[["die_thickness_mm", "warpage_um"]]
    ds.to_netcdf(ctx.study_dir / "classic.nc", engine="scipy")
    assert (ctx.study_dir / "classic.nc").read_bytes()[:3] == b"CDF"
    loaded = NetcdfSource(path="classic.nc").load(ctx)
    xr.testing.assert_equal(loaded, ds)
    assert loaded["warpage_um"].attrs["units"] == "um"


def test_netcdf_variables_subset(ctx):
    sample_dataset().to_netcdf(ctx.study_dir / "d.nc", engine="h5netcdf")
    loaded = NetcdfSource(path="d.nc", variables=["warpage_um", "image"]).load(ctx)
    assert set(loaded.data_vars) == {"warpage_um", "image"}
    assert loaded["image"].shape == (3, 2, 2)


def test_netcdf_missing_variable(ctx):
    sample_dataset().to_netcdf(ctx.study_dir / "d.nc", engine="h5netcdf")
    with pytest.raises(DataError) as err:
        NetcdfSource(path="d.nc", variables=["warpage_um", "stress_mpa"]).load(ctx)
    msg = str(err.value)
    assert "d.nc" in msg and "'stress_mpa'" in msg and "warpage_um" in msg
    assert "'warpage_um'" not in msg.split("variables:")[0]  # only the missing one is named as missing


def test_netcdf_missing_file(ctx):
    with pytest.raises(DataError, match=r"not found: .*absent\.nc"):
        NetcdfSource(path="absent.nc").load(ctx)


def test_netcdf_not_a_netcdf_file(ctx):
    write(ctx, "junk.nc", "this is not netCDF\n")
    with pytest.raises(DataError, match=r"cannot read .*junk\.nc"):
        NetcdfSource(path="junk.nc").load(ctx)


def test_netcdf_does_not_keep_the_file_open(ctx):
    path = ctx.study_dir / "d.nc"
    sample_dataset().to_netcdf(path, engine="h5netcdf")
    NetcdfSource(path="d.nc").load(ctx)
    path.unlink()  # would fail on some platforms if a handle were left open; the data is already loaded
    assert not path.exists()
