"""ONNX export with a parity check: :func:`export_onnx` (any torch module) and the ``export`` task (a trained
vision model of an earlier ``train`` stage -> ``model.onnx`` in the stage folder).

:func:`export_onnx` is generic: give it a module, example inputs and the names of the inputs and outputs (a
detector passes its own); it writes the file with ``torch.onnx.export`` (the torch.export-based "dynamo" exporter,
or the older TorchScript one), runs the file with onnxruntime on the example inputs (and on a batch of another
size when the batch dim is dynamic) and raises :class:`ExportError` when any output differs from torch's by more
than ``atol + rtol * |torch|``. It needs the optional packages of the ``export`` extra:
``pip install 'reflow[export]'`` (onnx, onnxruntime, onnxscript).

The ``export`` task wraps a vision model's network so the ONNX file is usable on its own: the input ``image`` is
(batch, channels, height, width) pixels in [0, 1] at the size the network was trained on (after the centre crop);
the model's ``normalize`` transforms run inside the graph; a classifier's outputs are ``logits`` and
``probabilities`` (softmax, classes in the order of the ``classes`` metadata), a regressor's output ``prediction``
is in the target's units. The model's task, classes, target, transforms and input notes are stored in the file's
metadata (``metadata_props``).
"""

from __future__ import annotations

import copy
import json
import time
import warnings
from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal

import numpy as np
import reflow
from pydantic import Field
from reflow.specs import ModelSpec, StageData

if TYPE_CHECKING:
    import torch
    import xarray as xr

ONNX_FILE = "model.onnx"
EXTRA = "pip install 'reflow[export]'"


class ExportError(reflow.ReflowError):
    """The ONNX file could not be written, or onnxruntime's outputs differ from torch's."""


def _needed(exporter: str) -> list[str]:
    return ["onnx", "onnxruntime"] + (["onnxscript"] if exporter == "dynamo" else [])


def _missing_message(missing: list[str]) -> str:
    hint = " (or use exporter: torchscript, which needs no onnxscript)" if missing == ["onnxscript"] else ""
    return f"ONNX export needs the packages {', '.join(missing)} of the optional 'export' extra: {EXTRA}{hint}"


def missing_packages(exporter: str = "torchscript") -> list[str]:
    """The packages of the ``export`` extra that cannot be found (without importing them: cheap at validation)."""
    from importlib.util import find_spec

    missing = []
    for name in _needed(exporter):
        try:
            found = find_spec(name) is not None
        except (ImportError, ValueError):
            found = False
        if not found:
            missing.append(name)
    return missing


def require_onnx(exporter: str = "torchscript") -> None:
    """Raise a UserInputError naming the ``export`` extra when onnx/onnxruntime (or onnxscript) are missing."""
    missing = []
    for name in _needed(exporter):
        try:
            __import__(name)
        except ImportError:
            missing.append(name)
    if missing:
        raise reflow.UserInputError(_missing_message(missing))


def _as_tuple(inputs: Any) -> tuple[Any, ...]:
    return tuple(inputs) if isinstance(inputs, (tuple, list)) else (inputs,)


def _flatten(outputs: Any) -> list[Any]:
    """torch outputs (a tensor, or tuples/lists/dicts of them) as a flat list, in ONNX output order."""
    import torch

    if isinstance(outputs, torch.Tensor):
        return [outputs]
    if isinstance(outputs, dict):
        return [t for v in outputs.values() for t in _flatten(v)]
    if isinstance(outputs, (tuple, list)):
        return [t for v in outputs for t in _flatten(v)]
    raise ExportError(f"cannot compare an output of type {type(outputs).__name__} with onnxruntime's")


def _other_batch(example: tuple[Any, ...], generator: Any) -> tuple[Any, ...]:
    """Inputs like ``example`` with 3 more rows: random values within each float input's range (checks the
    dynamic batch dim)."""
    import torch

    out = []
    for t in example:
        extra = t[:1].expand(3, *t.shape[1:]).clone()
        if t.is_floating_point():
            lo, hi = float(t.min()), float(t.max())
            extra = lo + (hi - lo) * torch.rand(extra.shape, generator=generator, dtype=t.dtype)
        out.append(torch.cat([t, extra]))
    return tuple(out)


def export_onnx(module: torch.nn.Module, example: Any, path: str | Path, *, input_names: Sequence[str] = ("input",),
                output_names: Sequence[str] = ("output",), opset: int = 18, dynamic_batch: bool = True,
                exporter: Literal["dynamo", "torchscript"] = "dynamo", atol: float = 1e-4, rtol: float = 1e-3,
                check_inputs: Sequence[Any] | None = None, metadata: dict[str, str] | None = None,
                seed: int = 0) -> dict[str, Any]:
    """Export ``module`` to ``path`` and check it against torch with onnxruntime (on the CPU, float32).

    Args:
        module: the network; a copy is exported in eval mode on the CPU (``module`` itself is left as it is).
        example: one input tensor or a tuple of them (batch first), as ``module(*example)`` takes them.
        path: the ``.onnx`` file to write.
        input_names, output_names: names in the graph, one per input and per (flattened) output.
        opset: ONNX opset version.
        dynamic_batch: make dim 0 of every input and output dynamic (else the example's batch size is fixed).
        exporter: ``dynamo`` (torch.export; needs onnxscript) or ``torchscript`` (torch's older tracer).
        atol, rtol: parity tolerance: every output must satisfy ``|onnx - torch| <= atol + rtol * |torch|``.
        check_inputs: inputs to compare on (default: ``example``, plus a 3-larger random batch when dynamic).
        metadata: strings stored in the model's ``metadata_props``.
        seed: seeds the random check batch.

    Returns:
        Metrics: ``onnx_max_abs_diff``, ``onnx_max_rel_diff``, ``onnx_bytes``, ``onnx_opset``, ``onnx_exporter``,
        ``onnx_dynamic_batch``, ``onnx_check_batches``, ``onnx_check_samples``, ``export_seconds``,
        ``onnxruntime_version``; and ``per_sample_max_abs_diff`` (a list over the check samples' rows).

    Raises:
        UserInputError: onnx/onnxruntime (or onnxscript for ``dynamo``) are not installed.
        ExportError: torch cannot export the module, or the outputs differ beyond the tolerance.
    """
    import torch

    require_onnx(exporter)
    import onnx
    import onnxruntime as ort

    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    net = copy.deepcopy(module).to("cpu").float().eval()
    example = tuple(t.detach().to("cpu") for t in _as_tuple(example))
    if dynamic_batch and example[0].shape[0] == 1:  # torch.export specializes a dim of size 1: use 2 rows
        example = tuple(torch.cat([t, t]) for t in example)
    if len(input_names) != len(example):
        raise ExportError(f"{len(input_names)} input names ({', '.join(input_names)}) for {len(example)} inputs")
    with torch.no_grad():
        reference = _flatten(net(*example))
    if len(output_names) != len(reference):
        raise ExportError(f"{len(output_names)} output names ({', '.join(output_names)}) for the module's "
                          f"{len(reference)} outputs")

    start = time.perf_counter()
    tmp = path.with_name(path.name + ".tmp")
    large = sum(p.numel() * p.element_size() for p in net.parameters()) > 1.8e9  # protobuf's 2 GB limit
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")  # the TorchScript exporter's deprecation notes; dynamo's advice
            if exporter == "dynamo":
                batch = torch.export.Dim("batch")
                shapes = tuple({0: batch} for _ in example) if dynamic_batch else None
                torch.onnx.export(net, example, str(tmp), dynamo=True, input_names=list(input_names),
                                  output_names=list(output_names), opset_version=opset, dynamic_shapes=shapes,
                                  external_data=large, verbose=False)
            else:
                axes = {n: {0: "batch"} for n in [*input_names, *output_names]} if dynamic_batch else None
                torch.onnx.export(net, example, str(tmp), dynamo=False, input_names=list(input_names),
                                  output_names=list(output_names), opset_version=opset, dynamic_axes=axes)
    except Exception as err:
        tmp.unlink(missing_ok=True)
        raise ExportError(f"torch.onnx.export ({exporter}, opset {opset}) failed for {type(module).__name__}: "
                          f"{err}") from err
    if metadata:
        model = onnx.load(str(tmp), load_external_data=False)
        onnx.helper.set_model_props(model, {str(k): str(v) for k, v in metadata.items()})
        onnx.save(model, str(tmp))
    tmp.replace(path)
    seconds = time.perf_counter() - start

    session = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    names = [i.name for i in session.get_inputs()]
    batches = list(check_inputs) if check_inputs is not None else (
        [example, _other_batch(example, torch.Generator().manual_seed(seed))] if dynamic_batch else [example])
    max_abs, max_rel, per_sample, samples = 0.0, 0.0, [], 0
    for inputs in batches:
        inputs = tuple(t.detach().to("cpu") for t in _as_tuple(inputs))
        with torch.no_grad():
            expected = [t.float().numpy() for t in _flatten(net(*inputs))]
        got = session.run(None, {n: t.numpy() for n, t in zip(names, inputs, strict=True)})
        rows = np.zeros(inputs[0].shape[0])
        for name, want, have in zip(output_names, expected, got, strict=True):
            if tuple(want.shape) != tuple(np.shape(have)):
                raise ExportError(f"ONNX output {name!r} has shape {np.shape(have)}, torch gives {want.shape} "
                                  f"(inputs of batch {inputs[0].shape[0]})")
            diff = np.abs(np.asarray(have, dtype=np.float64) - want.astype(np.float64))
            if diff.size:
                max_abs = max(max_abs, float(diff.max()))
                max_rel = max(max_rel, float((diff / (np.abs(want) + 1e-12)).max()))
                if diff.ndim and diff.shape[0] == rows.shape[0]:
                    rows = np.maximum(rows, diff.reshape(diff.shape[0], -1).max(axis=1))
            bad = diff > atol + rtol * np.abs(want)
            if bad.any():
                raise ExportError(
                    f"ONNX parity check failed for {type(module).__name__}: output {name!r} differs from torch by up "
                    f"to {float(diff.max()):.3g} ({int(bad.sum())} of {bad.size} values beyond atol {atol:g} + rtol "
                    f"{rtol:g} x |torch|; exporter {exporter}, opset {opset}); the file is {path}")
        per_sample += rows.tolist()
        samples += int(inputs[0].shape[0])
    return {"onnx_max_abs_diff": max_abs, "onnx_max_rel_diff": max_rel, "onnx_bytes": int(path.stat().st_size),
            "onnx_opset": int(opset), "onnx_exporter": exporter, "onnx_dynamic_batch": bool(dynamic_batch),
            "onnx_check_batches": len(batches), "onnx_check_samples": samples,
            "export_seconds": round(seconds, 3), "onnxruntime_version": ort.__version__,
            "per_sample_max_abs_diff": per_sample}


# --- vision models -------------------------------------------------------------------------------------------


def vision_export(model: Any) -> dict[str, Any]:
    """How to export a trained vision model: ``module`` (the wrapped network), ``input_shape`` (C, H, W),
    ``output_names``, ``metadata`` and ``inputs(data)`` (its images as network inputs, for the parity check).

    Models with their own preprocessing (timm-features) say so in ``onnx_spec()`` (the base's gives no hints)."""
    from .base import VisionModel

    if not isinstance(model, VisionModel):
        raise reflow.UserInputError(
            f"export: {type(model).__name__} is not a torch vision model; ONNX export supports the vision models "
            "(vit, vit-mae, cnn, ffn-multiscale, cti, timm-features); pca-logistic and other scikit-learn models "
            "are saved as arrays instead")
    model.require_fitted("module_")
    own = model.onnx_spec()
    steps = [s for s in model.eval_transform().steps if s.op == "normalize"]
    classes = [str(c) for c in model.classes_]
    wrapper = _wrap(own.get("module", model.module_), [(s.mean, s.std) for s in steps], model.task_,
                    model.target_mean_, model.target_std_)
    shape = tuple(own.get("input_shape", (model.in_chans_, *model.img_size_)))
    outputs = ["prediction"] if model.task_ == "regression" else ["logits", "probabilities"]
    metadata = {"reflow_model": type(model).__name__, "task": model.task_, "target": ",".join(model.targets),
                "classes": json.dumps(classes),
                "input": f"image: (batch, {shape[0]}, {shape[1]}, {shape[2]}) pixels in [0, 1]",
                "transforms": json.dumps(model.transforms_), "note": own.get("note", "")}
    return {"module": wrapper, "input_shape": shape, "output_names": outputs, "metadata": metadata,
            "inputs": own.get("inputs") or (lambda data: _eval_inputs(model, data))}


def _eval_inputs(model: Any, data: xr.Dataset) -> torch.Tensor:
    """The images as the wrapped network takes them: the evaluation transforms without normalize."""
    from reflow.imaging import ImageDataset

    dataset = ImageDataset(data, transform=model.eval_transform(normalize=False))
    return dataset.batch(range(len(dataset)))


def _wrap(module: Any, normalize: list[tuple[tuple[float, ...], tuple[float, ...]]], task: str, mean: Any,
          std: Any) -> Any:
    """``mean``/``std``: the target scaling, one number or one per target (a model with several targets
    exports a (batch, targets) prediction, each column in its target's units)."""
    import torch
    from torch import nn

    scale_mean = torch.tensor(np.atleast_1d(np.asarray(mean, dtype=np.float32))).view(1, -1)
    scale_std = torch.tensor(np.atleast_1d(np.asarray(std, dtype=np.float32))).view(1, -1)
    n_out = scale_mean.shape[1]

    class Exported(nn.Module):
        """normalize steps -> network -> (logits, probabilities) or the prediction in the target's units."""

        def __init__(self) -> None:
            super().__init__()
            self.net = module
            for i, (m, s) in enumerate(normalize):
                self.register_buffer(f"mean{i}", torch.tensor(m, dtype=torch.float32).view(1, -1, 1, 1))
                self.register_buffer(f"std{i}", torch.tensor(s, dtype=torch.float32).view(1, -1, 1, 1))
            self.register_buffer("target_mean", scale_mean)
            self.register_buffer("target_std", scale_std)

        def forward(self, image: torch.Tensor) -> Any:
            for i in range(len(normalize)):
                image = (image - getattr(self, f"mean{i}")) / getattr(self, f"std{i}")
            out = self.net(image)
            if task == "regression":
                return out[:, :n_out] * self.target_std + self.target_mean
            return out, torch.softmax(out, dim=-1)

    return Exported().eval()


class ExportTask(reflow.Task):
    """Export a trained vision model to ``model.onnx`` in this stage's folder and check it with onnxruntime.

    Output ``parity``: per checked sample, the largest absolute difference between onnxruntime's and torch's
    outputs (``max_abs_diff``). Metrics: ``onnx_max_abs_diff``, ``onnx_bytes``, ``onnx_opset``, ... The stage fails
    with a clear message if the difference exceeds ``atol + rtol * |torch|``. Needs the ``export`` extra.
    """

    outputs = ("parity",)

    class Params(reflow.Params):
        model: ModelSpec = Field(description="the trained vision model: {stage: NAME} of a train stage")
        opset: int = Field(18, ge=11, le=23, description="ONNX opset version")
        dynamic_batch: bool = Field(True, description="a dynamic batch dim (else fixed to the check batch size)")
        exporter: Literal["dynamo", "torchscript"] = Field(
            "dynamo", description="dynamo: torch.export-based (torch's default; needs onnxscript); torchscript: the "
                                  "older, faster tracer")
        data: StageData | None = Field(None, description="images to check parity on (an earlier stage's image "
                                                         "dataset); default: random pixels")
        samples: int = Field(8, ge=1, le=1024, description="images in the parity check")
        atol: float = Field(1e-4, ge=0, description="absolute parity tolerance")
        rtol: float = Field(1e-3, ge=0, description="relative parity tolerance")

    def check(self, check: Any) -> None:
        if self.params.model.stage is None:
            check.problem(("model",), "export a trained model: {stage: NAME} of a train stage")
        missing = missing_packages(self.params.exporter)
        if missing:
            check.problem(("exporter",), _missing_message(missing))

    def run(self, ctx: Any) -> reflow.StageResult:
        import torch
        import xarray as xr

        require_onnx(self.params.exporter)
        model = ctx.model(self.params.model.stage)
        spec = vision_export(model)
        n = self.params.samples
        if self.params.data is not None:
            from reflow.imaging import image_array

            data = ctx.data(self.params.data)
            dim = image_array(data).dims[0]
            rows = np.sort(ctx.rng.choice(data.sizes[dim], size=min(n, data.sizes[dim]), replace=False))
            images = spec["inputs"](data.isel({dim: rows}))[:n]
        else:
            images = torch.rand((n, *spec["input_shape"]), generator=ctx.torch_generator())
        if tuple(images.shape[1:]) != tuple(spec["input_shape"]):
            raise reflow.DataError(f"export: the parity images give network inputs of shape "
                                   f"{tuple(images.shape[1:])}; the model takes {spec['input_shape']}")
        batches = [images] if not self.params.dynamic_batch or len(images) < 2 else [images[:1], images]
        metrics = export_onnx(spec["module"], images, ctx.folder / ONNX_FILE, input_names=("image",),
                              output_names=spec["output_names"], opset=self.params.opset,
                              dynamic_batch=self.params.dynamic_batch and len(images) > 1,
                              exporter=self.params.exporter, atol=self.params.atol, rtol=self.params.rtol,
                              check_inputs=batches if self.params.dynamic_batch else None,
                              metadata=spec["metadata"], seed=ctx.seed)
        per_sample = metrics.pop("per_sample_max_abs_diff")[-len(images):]
        parity = xr.Dataset({"max_abs_diff": ("sample", np.asarray(per_sample, dtype=np.float64))},
                            coords={"sample": np.arange(len(images))})
        parity.attrs.update({"onnx_file": ONNX_FILE, "model_stage": self.params.model.stage,
                             "source": "data" if self.params.data is not None else "random pixels"})
        metrics.update({"onnx_file": ONNX_FILE, "onnx_input_shape": list(spec["input_shape"]),
                        "onnx_outputs": list(spec["output_names"]), "model": type(model).__name__})
        return reflow.StageResult({"parity": parity}, metrics)


def onnx_predict(path: str | Path, images: np.ndarray) -> dict[str, np.ndarray]:
    """Run an exported file on ``images`` (batch, C, H, W) float32 with onnxruntime: ``{output name: array}``."""
    require_onnx()
    import onnxruntime as ort

    session = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    names = [o.name for o in session.get_outputs()]
    values = session.run(None, {session.get_inputs()[0].name: np.asarray(images, dtype=np.float32)})
    return dict(zip(names, values, strict=True))

