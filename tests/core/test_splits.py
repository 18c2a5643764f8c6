"""Splits: groups never straddle two parts; with ``stratify`` every part keeps the class proportions."""

from __future__ import annotations

import numpy as np
import pytest
from pydantic import ValidationError
from reflow.splits import SplitSpec, split_indices, strata_codes


def parts_of(groups: np.ndarray, parts: dict[str, np.ndarray]) -> dict[str, set]:
    return {name: set(groups[idx].tolist()) for name, idx in parts.items()}


def assert_partition(n: int, parts: dict[str, np.ndarray]) -> None:
    every = np.concatenate(list(parts.values()))
    assert sorted(every.tolist()) == list(range(n)), "every sample exactly once"


def assert_groups_on_one_side(groups: np.ndarray, parts: dict[str, np.ndarray]) -> None:
    sides = parts_of(groups, parts)
    assert not (sides["train"] & sides["test"]) and not (sides["train"] & sides["val"])
    assert not (sides["val"] & sides["test"])


def led_data(n_leds: int = 200, seed: int = 0):
    """LEDs imaged 5 times; ~30 % of LEDs are of a weak kind whose late images are defective."""
    rng = np.random.default_rng(seed)
    groups = np.repeat(np.arange(n_leds), 5)
    weak = np.repeat(rng.random(n_leds) < 0.3, 5)
    cycles = np.tile([0, 100, 500, 1000, 1500], n_leds)
    defective = weak & (cycles >= 1000)
    return groups, weak, defective


def test_plain_split_unchanged_without_stratify():
    """Existing callers: same fractions of groups, same draws from the generator as before."""
    groups = np.repeat(np.arange(10), 6)
    spec = SplitSpec(by="lot", test=0.3, val=0.2)
    parts = split_indices(60, spec, np.random.default_rng(5), groups)
    order = np.random.default_rng(5).permutation(10)  # the documented recipe: shuffle groups, cut
    assert set(groups[parts["test"]].tolist()) == set(order[:3].tolist())
    assert set(groups[parts["val"]].tolist()) == set(order[3:5].tolist())
    assert [len(parts[p]) for p in ("test", "val", "train")] == [18, 12, 30]


@pytest.mark.parametrize("seed", [0, 1, 2, 3])
def test_stratified_group_split_keeps_groups_and_proportions(seed):
    groups, weak, _ = led_data(seed=seed)
    spec = SplitSpec(by="led_id", test=0.2, val=0.2, stratify="weak")
    parts = split_indices(groups.size, spec, np.random.default_rng(seed), groups, weak)
    assert_partition(groups.size, parts)
    assert_groups_on_one_side(groups, parts)
    overall = weak.mean()
    for name, share in (("test", 0.2), ("val", 0.2), ("train", 0.6)):
        assert abs(parts[name].size / groups.size - share) <= 0.03, name
        assert abs(weak[parts[name]].mean() - overall) <= 0.02, (name, weak[parts[name]].mean(), overall)


def test_stratification_beats_a_plain_split_on_average():
    worst_plain, worst_strat = [], []
    for seed in range(10):
        groups, weak, _ = led_data(n_leds=60, seed=seed)
        overall = weak.mean()
        for stratify, out in ((None, worst_plain), ("weak", worst_strat)):
            spec = SplitSpec(by="led_id", test=0.2, val=0.2, stratify=stratify)
            parts = split_indices(groups.size, spec, np.random.default_rng(seed), groups,
                                  weak if stratify else None)
            out.append(max(abs(weak[idx].mean() - overall) for idx in parts.values()))
    assert np.mean(worst_strat) < 0.5 * np.mean(worst_plain)
    assert max(worst_strat) <= 0.06


def test_labels_that_vary_inside_groups():
    """``defective`` changes along an LED's cycles: whole LEDs still move together, shares stay close."""
    groups, _, defective = led_data(n_leds=300, seed=7)
    spec = SplitSpec(by="led_id", test=0.25, val=0.15, stratify="defective")
    parts = split_indices(groups.size, spec, np.random.default_rng(7), groups, defective)
    assert_partition(groups.size, parts)
    assert_groups_on_one_side(groups, parts)
    for idx in parts.values():
        assert abs(defective[idx].mean() - defective.mean()) <= 0.02


def test_multiclass_without_groups():
    rng = np.random.default_rng(3)
    labels = rng.choice(np.array(["ok", "void", "crack", "delam"]), p=[0.7, 0.15, 0.1, 0.05], size=400)
    parts = split_indices(400, SplitSpec(test=0.25, stratify="label"), rng, None, labels)
    assert_partition(400, parts)
    assert parts["val"].size == 0
    for cls in ("ok", "void", "crack", "delam"):
        total = (labels == cls).sum()
        in_test = (labels[parts["test"]] == cls).sum()
        assert abs(in_test - 0.25 * total) <= 1, cls  # singletons: within one sample of the exact share


def test_continuous_target_is_binned_by_quantiles():
    rng = np.random.default_rng(4)
    y = rng.lognormal(0.0, 1.0, 800)
    codes = strata_codes(y, bins=4)
    assert sorted(np.bincount(codes).tolist()) == [200, 200, 200, 200]
    groups = np.repeat(np.arange(400), 2)
    y_grouped = np.repeat(rng.lognormal(0.0, 1.0, 400), 2)
    parts = split_indices(800, SplitSpec(by="g", test=0.25, stratify="y", bins=5), rng, groups, y_grouped)
    assert_groups_on_one_side(groups, parts)
    q = np.quantile(y_grouped, [0.2, 0.4, 0.6, 0.8])
    for idx in (parts["test"], parts["train"]):
        assert np.all(np.abs(np.quantile(y_grouped[idx], [0.2, 0.4, 0.6, 0.8]) / q - 1.0) < 0.15)


def test_strata_codes_of_classes_and_nan():
    assert strata_codes(np.array([True, False, True])).tolist() == [1, 0, 1]
    assert strata_codes(np.array([3, 1, 3, 2])).tolist() == [2, 0, 2, 1]
    codes = strata_codes(np.array([0.1, np.nan, 0.1, 0.5]))
    assert codes[0] == codes[2] != codes[3] and codes[1] not in (codes[0], codes[3])
    many = np.append(np.linspace(0, 1, 20), np.nan)
    assert len(set(strata_codes(many, bins=4).tolist())) == 5  # 4 bins and NaN


def test_tiny_data_still_fills_every_part():
    groups = np.array([0, 0, 1, 1, 2, 3])
    parts = split_indices(6, SplitSpec(by="g", test=0.2, val=0.2, stratify="y"), np.random.default_rng(0), groups,
                          np.array([1, 1, 0, 0, 0, 1]))
    assert all(parts[p].size for p in ("test", "val", "train"))
    assert_groups_on_one_side(groups, parts)


def test_same_seed_same_stratified_split():
    groups, weak, _ = led_data(seed=2)
    spec = SplitSpec(by="led_id", test=0.2, val=0.2, stratify="weak")
    a = split_indices(groups.size, spec, np.random.default_rng(9), groups, weak)
    b = split_indices(groups.size, spec, np.random.default_rng(9), groups, weak)
    c = split_indices(groups.size, spec, np.random.default_rng(10), groups, weak)
    assert all(np.array_equal(a[p], b[p]) for p in a)
    assert not np.array_equal(a["test"], c["test"])


def test_spec_validation():
    with pytest.raises(ValidationError, match="leave data to train on"):
        SplitSpec(test=0.6, val=0.4)
    with pytest.raises(ValidationError):
        SplitSpec(stratify="y", bins=1)
    with pytest.raises(ValidationError):
        SplitSpec(stratfy="y")  # typo: unknown keys are errors


def test_a_split_seed_gives_every_stage_the_same_split():
    spec = SplitSpec(by=None, test=0.25, val=0.25, seed=7)
    a = split_indices(40, spec, spec.generator(np.random.default_rng(1)))
    b = split_indices(40, spec, spec.generator(np.random.default_rng(2)))
    assert all(np.array_equal(a[k], b[k]) for k in ("train", "val", "test"))
    own = SplitSpec(test=0.25, val=0.25)
    c = split_indices(40, own, own.generator(np.random.default_rng(2)))
    assert not np.array_equal(a["test"], c["test"])
