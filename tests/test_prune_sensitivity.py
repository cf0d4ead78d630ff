"""benchmarks/prune_sensitivity.py: the alternative channel choices it validates against prune.py's."""

from __future__ import annotations

import pytest
import torch

from benchmarks.prune_sensitivity import main, reselect
from models.yolo import Model
from pruning import build_groups, compute_masks
from tests.test_pruning import randomize_bn


@pytest.fixture(scope="module")
def plan():
    model = randomize_bn(Model("models/yolov5n.yaml", nc=80))
    return compute_masks(model, build_groups(model), 0.2)


def removed(p, gid: int) -> set[int]:
    return set(torch.nonzero(~p.masks[gid]).flatten().tolist())


def test_same_counts_per_group_chosen_by_rank_or_at_random(plan):
    g = torch.Generator().manual_seed(0)
    low, rnd, high = (reselect(plan, how, g) for how in ("lowest", "random", "highest"))
    assert plan.removed_channels() > 0
    moved = 0
    for gid, keep in plan.masks.items():
        n = int((~keep).sum())
        assert [int((~p.masks[gid]).sum()) for p in (low, rnd, high)] == [n, n, n]
        if n:
            s = plan.scores[gid]
            assert removed(low, gid) == removed(plan, gid)
            assert max(s[list(removed(low, gid))]) <= min(s[list(removed(high, gid))])  # the two ends of the ranking
            moved += removed(rnd, gid) != removed(low, gid)
    assert moved > 0  # random differs from the ranking somewhere


def test_even_spreads_the_same_share_over_every_group(plan):
    even = reselect(plan, "even", torch.Generator())
    total = sum(k.numel() for k in plan.masks.values())
    share = plan.removed_channels() / total
    for gid, keep in even.masks.items():
        n, w = int((~keep).sum()), keep.numel()
        assert n == min(round(share * w), w - 1)
        if n:  # the lowest scores of the group go
            s = plan.scores[gid]
            assert max(s[~keep]) <= min(s[keep])
    assert abs(even.removed_channels() - plan.removed_channels()) <= len(plan.masks)  # rounding only


def test_percent_out_of_range_is_a_usage_error(capsys):
    with pytest.raises(SystemExit):
        main(["--percent", "1.5"])
    assert "--percent must be in [0, 1), got [1.5]" in capsys.readouterr().err


@pytest.mark.slow
def test_importance_comparison_on_real_weights(tmp_path, yolov5n_pt, coco128_dir):  # noqa: ANN001
    """--importance gamma relative taylor on yolov5n.pt and coco128: plain |gamma| is refused at 0.3 (it would empty a
    layer), the others give a pruned GFLOPs below the unpruned and a masked mAP below the unmasked one; the table,
    JSON and plot are written."""
    import json

    rows = main(["--weights", str(yolov5n_pt), "--data", "data/coco128.yaml", "--imgsz", "128", "--percent", "0.3",
                 "--importance", "gamma", "relative", "taylor", "--batch-size", "32", "--out", str(tmp_path)])
    base = rows[0]
    by = {r["importance"]: r for r in rows[1:]}
    assert by["gamma"]["mAP50_95"] is None and "safe percent" in by["gamma"]["refused"]
    for imp in ("relative", "taylor"):
        assert 0 < by[imp]["gflops"] < base["gflops"] and by[imp]["mAP50_95"] < base["mAP50_95"]
    assert by["relative"]["gflops"] != by["taylor"]["gflops"]  # two rankings, two different cuts
    assert json.loads((tmp_path / "prune_criteria.json").read_text())["rows"][1:] == rows[1:]
    assert (tmp_path / "prune_criteria.png").stat().st_size > 10_000
    assert "| 0.3 | refused" in (tmp_path / "prune_criteria.md").read_text()
