"""Network slimming: channel groups from the traced graph, masks and the safe ratio, exact surgery, checkpoints of
pruned models, the sparsity hook and layer pruning."""

from __future__ import annotations

import copy
import math

import pytest
import torch
from torch import nn

from models.builder import ModelConfigError
from models.common import Bottleneck
from models.yolo import Model
from pruning import (BNSparsity, ChannelMasks, bn_importance, build_groups, candidate_groups, compute_masks,
                     gamma_stats, lowest_channels, masked_model, plot_gamma_hist, prune_layers, prune_model)
from utils.checkpoint import atomic_save, make_checkpoint
from models.checkpoint import load_model

ANCHORS = [[10, 13, 16, 30, 33, 23], [30, 61, 62, 45, 59, 119], [116, 90, 156, 198, 373, 326]]


def randomize_bn(model: nn.Module, seed: int = 0) -> nn.Module:
    """Random BN gammas, betas and running statistics (eval mode), so that every channel matters differently."""
    g = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for m in model.modules():
            if isinstance(m, nn.BatchNorm2d):
                n = m.num_features
                m.weight.copy_(torch.rand(n, generator=g) * 1.5)
                m.bias.copy_(torch.rand(n, generator=g) - 0.5)
                m.running_mean.copy_(torch.rand(n, generator=g) - 0.5)
                m.running_var.copy_(torch.rand(n, generator=g) + 0.5)
    return model.eval()


def random_scores(groups: list, seed: int = 1) -> dict[int, torch.Tensor]:
    g = torch.Generator().manual_seed(seed)
    return {gr.id: torch.rand(gr.width, generator=g) for gr in groups if gr.bns}


def raw_outputs(model: nn.Module, x: torch.Tensor) -> list[torch.Tensor]:
    with torch.no_grad():
        return model.eval()(x)[1]


def max_diff(a: list[torch.Tensor], b: list[torch.Tensor]) -> float:
    return max(float((u - v).abs().max()) for u, v in zip(a, b))


def group_of(groups: list, path: str, role: str = "producer"):  # noqa: ANN201
    return next(g for g in groups if any(m.path == path and m.role == role for m in g.members))


@pytest.fixture(scope="module")
def v5n() -> tuple[Model, list]:
    model = randomize_bn(Model("yolov5n.yaml"), seed=0)
    return model, build_groups(model)


@pytest.fixture(scope="module")
def v5s() -> tuple[Model, list]:
    model = randomize_bn(Model("yolov5s.yaml"), seed=1)
    return model, build_groups(model)


# -- the graph ---------------------------------------------------------------------------------------------------------
def test_graph_finds_c3_residual_groups(v5n: tuple[Model, list]) -> None:
    model, groups = v5n
    residual = [g for g in groups if g.residual]
    for i in (2, 4, 6, 8):  # backbone C3s (shortcut=True): cv1 and every bottleneck's cv2 share one group
        n = len(model.model[i].m)
        g = group_of(groups, f"model.{i}.cv1.conv")
        assert g.residual and g.prunable
        assert {m.path for m in g.bns} == {f"model.{i}.cv1.bn"} | {f"model.{i}.m.{j}.cv2.bn" for j in range(n)}
        assert {m.path for m in g.by_role("consumer")} == ({f"model.{i}.m.{j}.cv1.conv" for j in range(n)}
                                                          | {f"model.{i}.cv3.conv"})
    assert len(residual) == 4
    for i in (13, 17, 20, 23):  # head C3s have shortcut=False: no group of theirs is residual
        assert not any(m.path.startswith(f"model.{i}.") for g in residual for m in g.members)
    for j in range(3):  # Detect keeps its outputs (reshaped per anchor) but its inputs are prunable
        out = group_of(groups, f"model.24.m.{j}")
        assert not out.prunable and "view" in out.reason
        assert group_of(groups, f"model.24.m.{j}", "consumer").prunable
    assert not group_of(groups, "model.0.conv", "consumer").prunable  # the image channels


def test_concat_and_sppf_offsets(v5n: tuple[Model, list]) -> None:
    _, groups = v5n
    # Layer 12 concatenates upsampled layer 10 (128 channels) with layer 6 (128): layer 13's convs read them at
    # offsets 0 and 128.
    for src, offset in (("model.10.conv", 0), ("model.6.cv3.conv", 128)):
        g = group_of(groups, src)
        m = next(m for m in g.by_role("consumer") if m.path == "model.13.cv1.conv")
        assert m.positions == list(range(offset, offset + 128))
        assert m.index == list(range(128))
    # SPPF concatenates cv1's output with three max-pools of it: cv2 reads each group channel four times.
    g = group_of(groups, "model.9.cv1.conv")
    m = next(m for m in g.by_role("consumer") if m.path == "model.9.cv2.conv")
    assert m.positions == list(range(512)) and m.index == [p % 128 for p in range(512)]


# -- exact surgery -----------------------------------------------------------------------------------------------------
ALL_COMBOS = [("normal", 1), ("normal", 8), ("shortcut", 1), ("shortcut", 8)]


@pytest.mark.parametrize("which,combos", [("v5n", ALL_COMBOS), ("v5s", [("normal", 1), ("shortcut", 8)])])
def test_pruned_equals_masked(which: str, combos: list, request: pytest.FixtureRequest) -> None:
    model, groups = request.getfixturevalue(which)
    before = {k: v.clone() for k, v in model.state_dict().items()}
    x = torch.rand(1, 3, 64, 96, generator=torch.Generator().manual_seed(0))
    for mode, round_to in combos:
        plan = compute_masks(model, groups, 0.3, mode=mode, round_to=round_to, scores=random_scores(groups))
        cands = candidate_groups(groups, mode)
        total = sum(g.width for g in cands)
        removed = plan.removed_channels()
        assert any(g.residual for g in cands) == (mode == "shortcut")
        if round_to == 1:
            assert abs(removed / total - 0.3) < 0.01
        else:
            for g in cands:
                k = int(plan.mask(g).sum())
                assert k == g.width or k % 8 == 0
        pruned, report = prune_model(model, plan, verify=False)
        ref = masked_model(model, plan, keep_beta=False)
        assert max_diff(raw_outputs(pruned, x), raw_outputs(ref, x)) <= 1e-4
        assert report.params_after < report.params_before
        assert report.params_after == sum(p.numel() for p in pruned.parameters())
        assert pruned.yaml["channels"] and "channels" not in model.yaml
        assert torch.equal(pruned.detect.anchors, model.detect.anchors)
    assert all(torch.equal(before[k], v) for k, v in model.state_dict().items())  # the input is never mutated


def toy_1x1_arch() -> dict:
    """Every layer that reads a prunable channel is a 1x1 conv: folding the removed constants is exact."""
    return {"nc": 2, "depth_multiple": 1.0, "width_multiple": 1.0, "anchors": ANCHORS,
            "backbone": [[-1, 1, "Conv", [16, 3, 2]], [-1, 1, "nn.MaxPool2d", [2, 2]], [-1, 1, "Conv", [32, 1, 1]],
                         [-1, 1, "nn.MaxPool2d", [2, 2]], [-1, 1, "Conv", [32, 1, 1]], [-1, 1, "nn.MaxPool2d", [2, 2]],
                         [-1, 1, "Conv", [48, 1, 1]], [-1, 1, "nn.MaxPool2d", [2, 2]], [-1, 1, "Conv", [64, 1, 1]]],
            "head": [[-1, 1, "nn.Upsample", [None, 2, "nearest"]], [[-1, 6], 1, "Concat", [1]],
                     [-1, 1, "Conv", [48, 1, 1]], [[4, 11, 8], 1, "Detect", ["nc", "anchors"]]]}


def test_fold_beta_exact_with_1x1_readers() -> None:
    model = randomize_bn(Model(toy_1x1_arch()), seed=3)
    groups = build_groups(model)
    plan = compute_masks(model, groups, 0.4, mode="shortcut", scores=random_scores(groups, seed=4))
    x = torch.rand(2, 3, 64, 64)
    folded, report = prune_model(model, plan, fold_beta=True)
    assert max_diff(raw_outputs(folded, x), raw_outputs(masked_model(model, plan, keep_beta=True), x)) <= 1e-4
    # The report checks on its own (larger) example input, where float32 rounding of the outputs alone reaches ~1e-4.
    assert report.fold_diff <= 5e-4 and report.max_abs_diff <= 5e-4 and not report.notes
    plain, _ = prune_model(model, plan, fold_beta=False, verify=False)  # the fold is what makes them equal
    assert max_diff(raw_outputs(plain, x), raw_outputs(masked_model(model, plan, keep_beta=True), x)) > 1e-2


def test_percent_zero_changes_nothing(v5n: tuple[Model, list]) -> None:
    model, groups = v5n
    plan = compute_masks(model, groups, 0.0, mode="shortcut")
    assert plan.removed_channels() == 0
    pruned, report = prune_model(model, plan, verify=False)
    x = torch.rand(1, 3, 64, 64)
    assert report.params_after == report.params_before == sum(p.numel() for p in model.parameters())
    assert "channels" not in pruned.yaml
    assert all(torch.equal(a, b) for a, b in zip(raw_outputs(pruned, x), raw_outputs(model, x)))


def test_safe_max_percent_and_refusal(v5n: tuple[Model, list]) -> None:
    model, groups = v5n
    model = copy.deepcopy(model)
    with torch.no_grad():  # one layer whose gammas are all small sets the safe threshold
        model.model[17].cv2.bn.weight.copy_(torch.linspace(0.001, 0.05, 32))
    plan = compute_masks(model, groups, 0.0)
    cands = candidate_groups(groups, "normal")
    allv = torch.cat([plan.scores[g.id] for g in cands])
    t = min(float(plan.scores[g.id].max()) for g in cands)
    assert plan.safe_threshold == pytest.approx(0.05)
    assert plan.safe_percent == pytest.approx(float((allv < t).sum()) / allv.numel())
    at_safe = compute_masks(model, groups, plan.safe_percent)
    assert all(int(at_safe.mask(g).sum()) >= 1 for g in groups)
    assert int(at_safe.mask(group_of(groups, "model.17.cv2.conv")).sum()) == 1
    above = plan.safe_percent + 0.02
    with pytest.raises(ValueError, match=rf"highest safe percent {plan.safe_percent:.4f}.*model\.17\.cv2\.conv"):
        compute_masks(model, groups, above)
    with pytest.raises(ValueError, match=r"percent must be in \[0, 1\)"):
        compute_masks(model, groups, 1.0)


def _tied_scores(groups: list, mode: str, blocks: bool) -> dict[int, torch.Tensor]:
    """Every candidate score equal, or (``blocks``) a few values each shared by large runs of channels."""
    out = {}
    for g in candidate_groups(groups, mode):
        out[g.id] = (torch.arange(g.width) // 8 % 3 * 0.25 + 0.5) if blocks else torch.full((g.width,), 0.7)
    return out


@pytest.mark.parametrize("blocks", [False, True], ids=["all-equal", "tied-blocks"])
@pytest.mark.parametrize("percent", [0.1, 0.3])
@pytest.mark.parametrize("round_to", [1, 8])
def test_tied_gammas_remove_exactly_the_asked_share(v5n: tuple[Model, list], blocks: bool, percent: float,
                                                    round_to: int) -> None:
    """AdamW and sign-based L1 steps leave many gammas equal: a threshold comparison removed none of them; the
    ranking removes round(P x candidates), less at most round_to - 1 per group that rounding keeps."""
    model, groups = v5n
    scores = _tied_scores(groups, "normal", blocks)
    plan = compute_masks(model, groups, percent, scores=scores, round_to=round_to)
    cands = candidate_groups(groups, "normal")
    n = sum(g.width for g in cands)
    asked = round(percent * n)
    assert plan.asked == asked and plan.candidates == n
    removed = plan.removed_channels()
    assert asked - (round_to - 1) * len(cands) <= removed <= asked
    if round_to == 1:
        assert removed == asked
    else:
        assert all(int(plan.mask(g).sum()) % round_to == 0 or int(plan.mask(g).sum()) == g.width for g in cands)
    again = compute_masks(model, groups, percent, scores=scores, round_to=round_to)
    assert all(torch.equal(again.mask(g), plan.mask(g)) for g in cands)  # deterministic
    if blocks:  # the lower tiers go first
        kept_min = min(float(scores[g.id][plan.mask(g)].min()) for g in cands)
        gone_max = max((float(scores[g.id][~plan.mask(g)].max()) for g in cands if (~plan.mask(g)).any()))
        assert gone_max <= kept_min


def test_all_equal_gammas_safe_percent_leaves_one_channel_each(v5n: tuple[Model, list]) -> None:
    model, groups = v5n
    scores = _tied_scores(groups, "normal", blocks=False)
    plan = compute_masks(model, groups, 0.0, scores=scores)
    cands = candidate_groups(groups, "normal")
    n = sum(g.width for g in cands)
    assert plan.safe_percent > 0.9  # ties thin every group alike, so nearly all can go before one is emptied
    assert sum(int(plan.mask(g).sum()) for g in cands) == n
    at_safe = compute_masks(model, groups, math.floor(plan.safe_percent * 1e4) / 1e4, scores=scores)
    assert all(int(at_safe.mask(g).sum()) >= 1 for g in cands)
    with pytest.raises(ValueError, match="highest safe percent"):
        compute_masks(model, groups, plan.safe_percent + 0.01, scores=scores)


def test_pruned_checkpoint_reloads(v5n: tuple[Model, list], tmp_path) -> None:  # noqa: ANN001
    model, groups = v5n
    plan = compute_masks(model, groups, 0.3, mode="shortcut", round_to=8, scores=random_scores(groups))
    pruned, report = prune_model(model, plan)
    path = tmp_path / "pruned.pt"
    atomic_save(make_checkpoint(pruned, half=False, pruning=report.to_dict()), path)
    loaded, ckpt = load_model(path)
    x = torch.rand(1, 3, 64, 64)
    assert ckpt["arch"]["channels"] == pruned.yaml["channels"]
    assert all(torch.equal(a, b) for a, b in zip(raw_outputs(loaded, x), raw_outputs(pruned, x)))
    assert ckpt["pruning"]["params_after"] == report.params_after


# -- other architectures -----------------------------------------------------------------------------------------------
class ConvBN(nn.Sequential):
    def __init__(self, c1: int, c2: int, k: int = 1, s: int = 1, g: int = 1, act: bool = True) -> None:
        super().__init__(nn.Conv2d(c1, c2, k, s, k // 2, groups=g, bias=False), nn.BatchNorm2d(c2),
                         nn.SiLU() if act else nn.Identity())


class SEBlock(nn.Module):
    """conv -> depthwise conv -> squeeze-excite (scale) -> 1x1 conv, with a residual add."""

    def __init__(self, c: int) -> None:
        super().__init__()
        self.expand = ConvBN(c, 2 * c)
        self.dw = ConvBN(2 * c, 2 * c, 3, g=2 * c)
        self.fc1, self.fc2 = nn.Conv2d(2 * c, 4, 1), nn.Conv2d(4, 2 * c, 1)
        self.project = ConvBN(2 * c, c, act=False)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        y = self.dw(self.expand(x))
        y = y * torch.sigmoid(self.fc2(torch.relu(self.fc1(y.mean((2, 3), keepdim=True)))))
        return x + self.project(y)


class ShuffleBlock(nn.Module):
    """Chunk, a branch on one half, concat, channel shuffle."""

    def __init__(self, c: int) -> None:
        super().__init__()
        self.branch = nn.Sequential(ConvBN(c // 2, c // 2), ConvBN(c // 2, c // 2, 3, g=c // 2), ConvBN(c // 2, c // 2))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        a, b = x.chunk(2, 1)
        y = torch.cat((a, self.branch(b)), 1)
        n, c, h, w = y.shape
        return y.view(n, 2, c // 2, h, w).transpose(1, 2).reshape(n, c, h, w)


class ToyNet(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.stem = ConvBN(3, 16, 3, 2)
        self.se = SEBlock(16)
        self.mid = ConvBN(16, 24)
        self.shuffle = ShuffleBlock(24)
        self.tail = ConvBN(24, 32, 3, 2)
        self.fc = nn.Linear(32, 5)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        y = self.tail(self.shuffle(self.mid(self.se(self.stem(x)))))
        return self.fc(torch.flatten(nn.functional.adaptive_avg_pool2d(y, 1), 1))


def test_toy_architecture_groups_and_surgery() -> None:
    torch.manual_seed(0)
    model = randomize_bn(ToyNet(), seed=5)
    x = torch.rand(2, 3, 32, 32)
    groups = build_groups(model, x)
    res = group_of(groups, "stem.0")  # the residual add ties stem and project
    assert res.residual and {m.path for m in res.by_role("producer")} == {"stem.0", "se.project.0"}
    exp = group_of(groups, "se.expand.0")  # depthwise conv and the SE scale follow the expanded channels
    assert exp.prunable and not exp.residual
    assert {m.path for m in exp.by_role("producer")} == {"se.expand.0", "se.fc2"}
    assert [m.path for m in exp.by_role("depthwise")] == ["se.dw.0"]
    assert {m.path for m in exp.by_role("consumer")} == {"se.fc1", "se.project.0"}
    assert not group_of(groups, "se.fc1").prunable  # SE inner channels: no BatchNorm
    assert "chunk" in group_of(groups, "mid.0").reason  # split along channels
    assert not group_of(groups, "shuffle.branch.2.0").prunable  # shuffled
    assert group_of(groups, "shuffle.branch.0.0").prunable  # inside the branch: fine
    tail = group_of(groups, "tail.0")
    assert tail.prunable and [m.path for m in tail.by_role("consumer")] == ["fc"]  # pooled, flattened, linear
    for mode in ("normal", "shortcut"):
        plan = compute_masks(model, groups, 0.3, mode=mode, scores=random_scores(groups, seed=6))
        pruned, report = prune_model(model, plan, example_input=x)
        assert plan.removed_channels() > 0 and report.params_after < report.params_before
        with torch.no_grad():
            assert float((pruned(x) - masked_model(model, plan)(x)).abs().max()) <= 1e-5
        assert pruned.fc.in_features == int(plan.mask(tail).sum())


# -- sparsity training -------------------------------------------------------------------------------------------------
def test_bn_sparsity_adds_sign_and_decays(v5n: tuple[Model, list]) -> None:
    model, groups = v5n
    model = copy.deepcopy(model)
    hook = BNSparsity(model, rate=0.01, epochs=10, groups=groups)
    residual_bns = {m.path for g in groups if g.residual for m in g.bns}
    assert hook.paths and not residual_bns & set(hook.paths)  # mode 'normal' leaves residual groups alone
    bns = {p: m for p, m in model.named_modules() if isinstance(m, nn.BatchNorm2d)}
    with torch.no_grad():
        bns["model.0.bn"].weight[:3] = torch.tensor([-0.5, 0.0, 0.5])
    for m in bns.values():
        m.weight.grad = torch.zeros_like(m.weight)
    bns["model.1.bn"].weight.grad = None  # skipped, not an error
    s = hook(epoch=5)
    assert s == pytest.approx(0.01 * (1 - 0.9 * 5 / 10))
    for p, m in bns.items():
        if p == "model.1.bn":
            assert m.weight.grad is None
        elif p in hook.paths:
            assert torch.equal(m.weight.grad, s * torch.sign(m.weight))
        else:
            assert not m.weight.grad.any()
    assert bns["model.0.bn"].weight.grad[:3].tolist() == pytest.approx([-s, 0.0, s])
    assert hook.strength(0) == 0.01 and hook.strength(10) == pytest.approx(0.001)
    assert BNSparsity(model, 0.01, 10, constant=True, groups=groups).strength(7) == 0.01
    shortcut = BNSparsity(model, 0.01, 10, mode="shortcut", groups=groups)
    assert residual_bns <= set(shortcut.paths)


def test_bn_sparsity_unwraps_wrapped_models(v5n: tuple[Model, list]) -> None:
    model, groups = v5n
    wrapped = nn.DataParallel(model)  # same .module protocol as DistributedDataParallel
    hook = BNSparsity(wrapped, 0.01, 10, groups=groups)
    assert hook.params[0] is dict(model.named_modules())[hook.paths[0]].weight


def test_gamma_stats_and_plot(tmp_path) -> None:  # noqa: ANN001
    net = nn.Sequential(nn.Conv2d(3, 4, 1), nn.BatchNorm2d(4), nn.Conv2d(4, 2, 1), nn.BatchNorm2d(2))
    with torch.no_grad():
        net[1].weight.copy_(torch.tensor([0.005, -0.02, 0.5, 0.001]))
        net[3].weight.copy_(torch.tensor([1.0, -0.004]))
    st = gamma_stats(net, bins=10)
    assert st["n"] == 6 and st["share_below_0.01"] == pytest.approx(0.5)
    assert st["median"] == pytest.approx(0.005)  # lower middle of 0.001, 0.004, 0.005, 0.02, 0.5, 1.0
    assert sum(st["hist"]["counts"]) == 6 and st["hist"]["edges"][-1] == pytest.approx(1.0)
    only = gamma_stats(net, bns=["1"])
    assert only["n"] == 4 and only["mean"] == pytest.approx((0.005 + 0.02 + 0.5 + 0.001) / 4)
    per_epoch = {0: st, 1: only, 2: gamma_stats(net, bins=10)}
    out = plot_gamma_hist(per_epoch, tmp_path / "gamma.png")
    assert out.is_file() and out.stat().st_size > 1000


# -- layer pruning -----------------------------------------------------------------------------------------------------
def test_prune_layers_removes_weakest_bottleneck(v5n: tuple[Model, list]) -> None:
    model, _ = v5n
    model = copy.deepcopy(model)
    with torch.no_grad():
        for m in model.model[6].m[1].modules():
            if isinstance(m, nn.BatchNorm2d):
                m.weight.mul_(0.01)
    counts = [len(layer.m) for layer in model.model if hasattr(layer, "m") and isinstance(layer.m, nn.Sequential)]
    new, report = prune_layers(model, 1)
    assert report.removed == ["model.6.m.1"]
    assert len(new.model[6].m) == len(model.model[6].m) - 1
    after = [len(layer.m) for layer in new.model if hasattr(layer, "m") and isinstance(layer.m, nn.Sequential)]
    assert sum(after) == sum(counts) - 1
    assert torch.equal(new.model[6].m[1].cv1.conv.weight, model.model[6].m[2].cv1.conv.weight)  # moved down
    assert report.params_after < report.params_before
    with torch.no_grad():
        pred, raw = new.eval()(torch.rand(1, 3, 64, 64))
    assert pred.shape == (1, 3 * (64 + 16 + 4), 85) and torch.isfinite(pred).all()
    assert all(isinstance(b, Bottleneck) for b in new.model[6].m)
    with pytest.raises(ValueError, match=r"k must be in \[0, "):
        prune_layers(model, 100)


def test_hand_made_masks_and_report(v5n: tuple[Model, list]) -> None:
    model, groups = v5n
    g = group_of(groups, "model.17.cv3.conv")  # read by Conv 18 and by the Detect conv of level 0
    keep = torch.zeros(g.width, dtype=torch.bool)
    keep[::4] = True
    plan = ChannelMasks(groups, {g.id: keep})
    pruned, report = prune_model(model, plan)
    assert pruned.model[17].cv3.conv.out_channels == g.width // 4
    assert pruned.detect.m[0].in_channels == g.width // 4 and pruned.model[18].conv.in_channels == g.width // 4
    assert report.max_abs_diff <= 1e-3 and not math.isnan(report.max_abs_diff)
    row = next(r for r in report.rows if r.path == "model.17.cv3.bn")
    assert (row.original, row.kept, row.prunable) == (g.width, g.width // 4, True)
    assert "model.17.cv3.bn" in report.table()


def test_channel_overrides_are_validated() -> None:
    arch = toy_1x1_arch()
    arch["channels"] = {"model.2.conv": [16, 8, 1], "model.2.bn": [8], "model.4.conv": [8, 32, 1]}
    model = Model(arch)  # a pruned architecture builds with no extra flags
    assert model.model[2].conv.out_channels == 8 and model.model[4].conv.in_channels == 8
    assert model.model[2].bn.eps == 1e-3  # hyperparameters as in the original model
    with pytest.raises(ModelConfigError, match=r"channels\['model.99.conv'\]: the model has no module"):
        Model({**arch, "channels": {"model.99.conv": [16, 8, 1]}})
    with pytest.raises(ModelConfigError, match=r"channels\['model.2.bn'\]: expected 1 positive ints"):
        Model({**arch, "channels": {"model.2.bn": [8, 8]}})


@pytest.mark.parametrize("cfg", ["MobileNetv2.yaml", "MobileNetv3_large.yaml", "MobileNetv3_small.yaml",
                                 "ShuffleNet.yaml", "yolov5s-ghost.yaml"])
@pytest.mark.parametrize("mode", ["normal", "shortcut"])
def test_backbone_configs_prune_exactly(cfg: str, mode: str) -> None:
    """Every light backbone prunes 30% of its candidate channels, and the result equals the masked model."""
    model = randomize_bn(Model(cfg, nc=3), seed=5)
    groups = build_groups(model)
    plan = compute_masks(model, groups, 0.3, mode=mode, scores=random_scores(groups, seed=6))
    pruned, report = prune_model(model, plan)
    assert report.params_after < report.params_before
    x = torch.rand(1, 3, 96, 96)
    assert max_diff(raw_outputs(pruned, x), raw_outputs(masked_model(model, plan, keep_beta=False), x)) <= 1e-4


@pytest.mark.parametrize("round_to", [1, 8])
def test_targeted_channels_are_what_the_prune_will_take(v5n: tuple[Model, list], round_to: int) -> None:
    """lowest_channels targets at least the asked share, lowest first, keeps every group a multiple of round_to
    untargeted, and a prune at that share (once the targeted gammas are 0) takes only targeted channels, safely."""
    model, groups = v5n
    cands = candidate_groups(groups, "normal")
    scores = random_scores(cands, seed=3)
    n = sum(g.width for g in cands)
    for percent in (0.3, 0.6, 0.9):
        hit = lowest_channels(scores, cands, percent, round_to=round_to)
        kept = {g.id: g.width - int(hit[g.id].sum()) for g in cands}
        assert all(k >= min(round_to, g.width) and (k % round_to == 0 or k == g.width) for g in cands
                   for k in [kept[g.id]])
        trained = {g.id: torch.where(hit[g.id], torch.zeros(g.width), scores[g.id]) for g in cands}
        if sum(int(t.sum()) for t in hit.values()) >= round(percent * n):  # beyond what the caps allow: fewer
            plan = compute_masks(model, groups, percent, scores=trained, round_to=round_to)
            assert all(bool((hit[g.id] | plan.mask(g)).all()) for g in cands)  # removed ones were all targeted
        if percent == 0.3:
            assert round(0.3 * n) <= sum(int(t.sum()) for t in hit.values()) <= round(0.3 * n) + round_to * len(cands)
            on = torch.cat([scores[g.id][hit[g.id]] for g in cands])
            off = torch.cat([scores[g.id][~hit[g.id]] for g in cands])
            assert float(on.mean()) < float(off.mean()) - 0.25  # the low scores went first
            if round_to == 1:
                assert float(on.max()) <= float(off.min())


def test_targeted_sparsity_acts_only_on_the_targeted_channels(v5n: tuple[Model, list]) -> None:
    model, groups = v5n
    model = copy.deepcopy(model)
    hook = BNSparsity(model, rate=0.01, epochs=10, groups=groups, target=0.4, round_to=8)
    bns = dict(model.named_modules())
    for p in hook.paths:
        bns[p].weight.grad = torch.zeros_like(bns[p].weight)
    s = hook(epoch=0)
    targeted = hook.targeted()
    assert 0.4 * hook.stats()["n"] <= sum(int(t.sum()) for t in targeted) < 0.5 * hook.stats()["n"]
    for p, t in zip(hook.paths, targeted):
        g = bns[p].weight.grad
        assert torch.equal(g[t], s * torch.sign(bns[p].weight[t]).detach()) and not g[~t].any()
    largest = hook.target_max()
    untargeted = torch.cat([bns[p].weight.detach().abs()[~t] for p, t in zip(hook.paths, targeted)])
    assert 0 < largest <= float(untargeted.max())
    assert BNSparsity(model, 0.01, 10, groups=groups).target_max() == 0.0
    with pytest.raises(ValueError, match="target in"):
        BNSparsity(model, 0.01, 10, groups=groups, target=1.0)


def test_relative_importance_thins_a_small_scale_layer_like_the_others(v5n: tuple[Model, list]) -> None:
    """One layer's gammas 10x smaller (as pretrained yolov5n's P3 neck): ranked by |gamma| a 30% prune would empty it
    (refused, pointing to 'relative'); ranked relative to each layer's mean it loses a share like the others."""
    model, groups = v5n
    model = copy.deepcopy(model)
    cands = candidate_groups(groups, "normal")
    small = max((g for g in cands if len(g.bns) == 1), key=lambda g: g.width)
    bn = dict(model.named_modules())[small.bns[0].path]
    with torch.no_grad():
        bn.weight.mul_(0.1)
    rel = bn_importance(model, groups, importance="relative")
    assert all(abs(float(rel[g.id].mean()) - 1) < 1e-5 for g in cands)
    with pytest.raises(ValueError, match=f"group of {small.name}.*--importance relative"):
        compute_masks(model, groups, 0.3, importance="gamma")
    plan = compute_masks(model, groups, 0.3, importance="relative")
    shares = [1 - float(plan.mask(g).float().mean()) for g in cands]
    assert 0.1 < 1 - float(plan.mask(small).float().mean()) < 0.6
    assert min(shares) < 0.3 < max(shares)  # still one global threshold, not a uniform cut
    with pytest.raises(ValueError, match="importance must be one of"):
        bn_importance(model, groups, importance="taylor")


def test_relative_sparsity_steps_each_layer_by_its_own_scale(v5n: tuple[Model, list]) -> None:
    """With importance 'relative' the L1 step of a channel is s times its group's starting mean |gamma|, so targeted
    channels of every layer reach 0 together; target_max is in those units."""
    model, groups = v5n
    model = copy.deepcopy(model)
    hook = BNSparsity(model, rate=0.01, epochs=10, groups=groups, target=0.3, round_to=1, importance="relative")
    bns = dict(model.named_modules())
    for p in hook.paths:
        bns[p].weight.grad = torch.zeros_like(bns[p].weight)
    means = {g.id: float(bn_importance(model, [g])[g.id].mean()) for g in hook.groups}
    targeted = dict(zip(hook.paths, hook.targeted()))
    s = hook(epoch=0)
    for g in hook.groups:
        for m in g.bns:
            w, t = bns[m.path].weight, targeted[m.path][m.positions]
            step = bns[m.path].weight.grad[m.positions][t]
            assert torch.allclose(step, s * means[g.id] * torch.sign(w.detach()[m.positions][t]), rtol=1e-5)
    rel = bn_importance(model, groups, importance="relative")
    on = []
    for g in hook.groups:
        m = g.bns[0]
        on.append(rel[g.id][torch.tensor(m.index)][targeted[m.path][m.positions]])
    assert hook.target_max() == pytest.approx(float(torch.cat(on).max()), rel=1e-4)


def test_budget_search_is_the_smallest_prune_under_the_target(v5n: tuple[Model, list]) -> None:
    """search_percent on real surgery: the result meets the GFLOPs target, one channel less would not, every probe is
    logged, and a target below what the safe maximum reaches is refused with the nearest reachable figure."""
    from models.summary import count_flops
    from pruning.budget import search_percent

    model, groups = v5n
    scores = random_scores(groups, seed=2)
    n = sum(g.width for g in candidate_groups(groups, "normal") if g.id in scores)
    safe = compute_masks(model, groups, 0.0, scores=scores).safe_percent

    def gflops(p: float) -> float:
        return count_flops(prune_model(model, compute_masks(model, groups, p, scores=scores, round_to=8),
                                       verify=False)[0], 128)

    full = gflops(0.0)
    r = search_percent(gflops, 0.7 * full, n, safe)
    assert r.value <= 0.7 * full and r.value == gflops(r.percent)
    assert gflops(r.percent - 1 / n) > 0.7 * full  # one channel fewer misses the budget
    assert len(r.probes) <= math.ceil(math.log2(n)) + 3 and {"percent", "value"} <= set(r.probes[-1])
    assert search_percent(gflops, 2 * full, n, safe).percent == 0.0
    with pytest.raises(ValueError, match=r"cannot be met: the largest safe prune .* that is the nearest reachable"):
        search_percent(gflops, 0.01 * full, n, safe)


def test_accuracy_search_finds_the_largest_prune_within_the_drop() -> None:
    """search_accuracy on a falling accuracy curve: the result passes, one resolution step more fails, every probe is
    logged, and a ceiling that passes is taken as it is."""
    from pruning.budget import search_accuracy

    def acc(p: float) -> float:  # 0.30 unpruned, a cliff past 0.43
        return 0.30 - 0.02 * p if p <= 0.43 else 0.05

    r = search_accuracy(acc, 0.30 - 0.01, 1000, 0.9, resolution=0.01)
    assert acc(r.percent) >= 0.29 and acc(r.percent + 0.01) < 0.29 and r.percent <= 0.43
    assert [q["percent"] for q in r.probes][0] == 0.9 and all(set(q) == {"percent", "value"} for q in r.probes)
    assert len(r.probes) <= 9
    assert search_accuracy(acc, 0.0, 1000, 0.9).percent == 0.9
    with pytest.raises(ValueError, match="resolution"):
        search_accuracy(acc, 0.29, 1000, 0.9, resolution=0)


def test_taylor_targeting_follows_the_loss_gradient(v5n: tuple[Model, list]) -> None:
    """importance 'taylor': before any gradient the targets are ranked like 'relative'; after steps in which half of
    each layer's channels get no loss gradient, exactly those (the loss does not need them) are the targeted ones."""
    model, groups = v5n
    model = copy.deepcopy(model)
    hook = BNSparsity(model, rate=0.01, epochs=10, groups=groups, target=0.3, round_to=1, importance="taylor")
    rel = BNSparsity(model, rate=0.01, epochs=10, groups=groups, target=0.3, round_to=1, importance="relative")
    assert all(torch.equal(a, b) for a, b in zip(hook.targeted(), rel.targeted()))
    bns = dict(model.named_modules())
    g = torch.Generator().manual_seed(0)
    idle = {}
    for p in hook.paths:
        w = bns[p].weight
        idle[p] = torch.rand(w.numel(), generator=g) < 0.5
        w.grad = torch.where(idle[p], torch.zeros(w.numel()), torch.rand(w.numel(), generator=g) + 0.5)
    for _ in range(3):
        hook(epoch=0)
        for p in hook.paths:  # the L1 term was added to the grads: give the next step its loss gradient again
            w = bns[p].weight
            w.grad = torch.where(idle[p], torch.zeros(w.numel()), torch.ones(w.numel()))
    for p, t in zip(hook.paths, hook.targeted()):
        assert bool(idle[p][t].all()), p  # every targeted channel is one the loss did not need
    assert sum(int(t.sum()) for t in hook.targeted()) >= 0.3 * hook.stats()["n"] - 1
    with pytest.raises(ValueError, match="importance must be one of"):
        BNSparsity(model, 0.01, 10, groups=groups, target=0.3, importance="random")


@pytest.mark.parametrize("pick", [0, 5, -1])
def test_channel_macs_are_what_removing_the_channels_saves(v5n: tuple[Model, list], pick: int) -> None:
    """Removing 4 channels of one group lowers the model's GFLOPs by exactly 2 x their channel_macs (GFLOPs count 2
    per multiply-accumulate), for a first, a middle and the last candidate group."""
    from models.summary import count_flops
    from pruning.importance import channel_macs

    model, groups = v5n
    cands = [g for g in candidate_groups(groups, "normal") if g.width >= 8]
    target = cands[pick]
    macs = channel_macs(model, groups, 128)
    n = sum(g.width for g in candidate_groups(groups, "normal"))
    scores = {g.id: torch.ones(g.width) for g in groups if g.bns}
    scores[target.id] = torch.ones(target.width)
    scores[target.id][:4] = 0.0  # exactly these four go
    plan = compute_masks(model, groups, 4 / n, scores=scores)
    pruned = prune_model(model, plan, fold_beta=False, verify=False)[0]
    saved = (count_flops(model, 128) - count_flops(pruned, 128)) * 1e9 / 2
    assert saved == pytest.approx(float(macs[target.id][:4].sum()), rel=1e-4)
    assert all((v > 0).all() for v in macs.values())


def test_taylor_flops_sparsity_targets_the_expensive_channels_first(v5n: tuple[Model, list]) -> None:
    """With every channel's Taylor score equal, 'taylor_flops' targets the channels that cost the most MACs, so the
    same share of channels is a larger share of the GFLOPs than 'taylor' would take."""
    from pruning.importance import channel_macs

    model, groups = v5n
    per_flop = BNSparsity(model, 1e-3, 10, target=0.3, importance="taylor_flops", imgsz=128, groups=groups)
    plain = BNSparsity(model, 1e-3, 10, target=0.3, importance="taylor", imgsz=128, groups=groups)
    rng = torch.Generator().manual_seed(0)
    for reg in (per_flop, plain):  # equal scores up to a little noise, so ties do not decide
        reg.taylor = [1 + 1e-3 * torch.rand(w.numel(), generator=rng) for w in reg.params]
    macs = channel_macs(model, groups, 128)

    def targeted_macs(reg: BNSparsity) -> float:  # the MACs of the group channels the term acts on
        hit, total = dict(zip(reg.paths, reg.targeted())), 0.0
        for g in reg.groups:
            m = g.bns[0]
            total += float(macs[g.id][torch.tensor(m.index)[hit[m.path][m.positions]]].sum())
        return total

    assert sum(int(t.sum()) for t in per_flop.targeted()) == sum(int(t.sum()) for t in plain.targeted())
    assert targeted_macs(per_flop) > 1.5 * targeted_macs(plain)
