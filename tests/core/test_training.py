"""The shared torch training loop: learning, early stopping, checkpoints, schedule, determinism, DDP."""

from __future__ import annotations

import csv
import math

import pytest

torch = pytest.importorskip("torch")

from reflow.errors import UserInputError  # noqa: E402
from reflow.training import TrainingConfig, _schedule, fit_module, predict_batches  # noqa: E402


def mse(module, batch):
    x, y = batch
    return torch.nn.functional.mse_loss(module(x), y)


def linear_data(n=256, seed=0, noise=0.01):
    g = torch.Generator().manual_seed(seed)
    x = torch.randn(n, 3, generator=g)
    y = x @ torch.tensor([[1.5], [-2.0], [0.5]]) + 0.3 + noise * torch.randn(n, 1, generator=g)
    return x, y


def test_learns_a_linear_map_and_writes_epochs_and_the_best_checkpoint(tmp_path):
    x, y = linear_data()
    xv, yv = linear_data(64, seed=1)
    net = torch.nn.Linear(3, 1)
    history = fit_module(net, mse, (x, y), val=(xv, yv), config=TrainingConfig(epochs=40, lr=0.05, weight_decay=0.0),
                         folder=tmp_path, seed=3)
    assert history.best_val_loss < 1e-3
    assert torch.allclose(net.weight.detach(), torch.tensor([[1.5, -2.0, 0.5]]), atol=0.02)
    rows = list(csv.DictReader((tmp_path / "epochs.csv").open()))
    assert len(rows) == len(history.epochs) and float(rows[0]["train_loss"]) > float(rows[-1]["train_loss"])
    state = torch.load(tmp_path / "checkpoint.pt", weights_only=True)
    assert torch.equal(state["weight"], net.weight.detach())


def test_the_same_seed_gives_the_same_weights_and_another_seed_does_not():
    x, y = linear_data()

    def train(seed):
        torch.manual_seed(0)  # same initial weights; the training seed drives only shuffling and dropout
        net = torch.nn.Sequential(torch.nn.Linear(3, 16), torch.nn.Dropout(0.2), torch.nn.Linear(16, 1))
        fit_module(net, mse, (x, y), config=TrainingConfig(epochs=3, batch_size=16), seed=seed)
        return torch.cat([p.detach().flatten() for p in net.parameters()])

    assert torch.equal(train(5), train(5))
    assert not torch.equal(train(5), train(6))


def test_early_stopping_keeps_the_weights_of_the_best_validation_epoch():
    # 12 training points, 200 noise inputs: a wide net overfits and the validation loss turns up
    g = torch.Generator().manual_seed(0)
    x, xv = torch.randn(12, 200, generator=g), torch.randn(200, 200, generator=g)
    w = torch.zeros(200, 1)
    w[0] = 1.0
    y, yv = x @ w + 0.5 * torch.randn(12, 1, generator=g), xv @ w
    net = torch.nn.Linear(200, 1)
    history = fit_module(net, mse, (x, y), val=(xv, yv),
                         config=TrainingConfig(epochs=200, lr=0.05, patience=5, weight_decay=0.0), seed=0)
    assert history.stopped_early and len(history.epochs) < 200
    assert len(history.epochs) == history.best_epoch + 5
    with torch.no_grad():
        final = float(torch.nn.functional.mse_loss(net(xv), yv))
    assert final == pytest.approx(history.best_val_loss, rel=1e-5)
    assert history.best_val_loss == min(r["val_loss"] for r in history.epochs)


def test_warm_up_then_cosine_decay():
    net = torch.nn.Linear(1, 1)
    opt = torch.optim.AdamW(net.parameters(), lr=1.0)
    sched = _schedule(opt, TrainingConfig(epochs=4, warmup_epochs=1, lr=1.0), steps_per_epoch=10)
    lrs = []
    for _ in range(40):
        lrs.append(opt.param_groups[0]["lr"])
        opt.step()
        sched.step()
    assert lrs[0] == pytest.approx(0.1) and lrs[9] == pytest.approx(1.0)
    assert lrs[10] == pytest.approx(1.0)
    assert lrs[25] == pytest.approx(0.5 * (1 + math.cos(math.pi * 15 / 30)))
    assert all(a >= b for a, b in zip(lrs[10:], lrs[11:], strict=False))


def test_predict_batches_equals_one_forward_pass():
    x, _ = linear_data(70)
    net = torch.nn.Linear(3, 2)
    out = predict_batches(net, lambda m, b: m(b), x, batch_size=16)
    assert out.shape == (70, 2) and out.dtype == torch.float32
    assert torch.allclose(out, net(x).detach())


def test_a_diverging_loss_stops_with_a_clear_error():
    x, y = linear_data(32)
    y[3] = float("nan")
    with pytest.raises(FloatingPointError, match="loss became nan"):
        fit_module(torch.nn.Linear(3, 1), mse, (x, y), config=TrainingConfig(epochs=1, batch_size=64))


def test_ddp_without_torch_distributed_says_how_to_start_it():
    x, y = linear_data(32)
    with pytest.raises(UserInputError, match="torchrun"):
        fit_module(torch.nn.Linear(3, 1), mse, (x, y), config=TrainingConfig(strategy="ddp"))


def _ddp_worker(rank, world, init, out):
    import torch.distributed as dist

    dist.init_process_group("gloo", init_method=init, rank=rank, world_size=world)
    torch.set_num_threads(1)
    x, y = linear_data(128)
    torch.manual_seed(0)
    net = torch.nn.Linear(3, 1)
    fit_module(net, mse, (x, y), config=TrainingConfig(epochs=30, batch_size=16, lr=0.05, weight_decay=0.0,
                                                                     strategy="ddp"), seed=1)
    torch.save({k: v.detach() for k, v in net.state_dict().items()}, f"{out}/rank{rank}.pt")
    # both ranks leave together: a rank that tears gloo down while its peer still uses the connection can abort
    # the peer ("terminate called without an active exception", seen once in a full suite run)
    dist.barrier()
    dist.destroy_process_group()


def test_ddp_ranks_train_one_shared_model(tmp_path):
    import torch.multiprocessing as mp

    mp.spawn(_ddp_worker, args=(2, f"file://{tmp_path}/init", str(tmp_path)), nprocs=2, join=True)
    a = torch.load(tmp_path / "rank0.pt", weights_only=True)
    b = torch.load(tmp_path / "rank1.pt", weights_only=True)
    assert torch.equal(a["weight"], b["weight"])
    assert torch.allclose(a["weight"], torch.tensor([[1.5, -2.0, 0.5]]), atol=0.05)
