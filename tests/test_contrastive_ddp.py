"""The contrastive objective on two gloo processes: the batch gather is exact.

One spawn of two worker processes runs every case; the parent compares their losses and
gradients with one process computing the same objective over the concatenated batch.
Tolerance: float32 on the CPU, ``atol=1e-6, rtol=1e-5`` (the sums differ only in order).
"""

from __future__ import annotations

import socket
from pathlib import Path

import pytest
import torch
from torch import nn

from text4vis.engine.contrastive import (
    ContrastiveObjective,
    OfflineTextEmbeddings,
    OnlineTextTower,
)
from text4vis.engine.objectives import TrainStep
from tiny_towers import TinyTextModel

# Every test here reads the results of 2 gloo processes started by the module's fixture.
pytestmark = pytest.mark.process

WORLD = 2
LOCAL = 4  # N clips per rank
NUM_CLASSES = 5
DIM = 8
# (gather, text_online, same_class_positive)
CASES = [
    (True, True, True),
    (True, False, True),
    (True, True, False),
    (False, True, True),
]
UNEQUAL = (3, 5)  # rows per rank for the uneven gather check


class TinyVideoModel(nn.Module):
    """Stand-in with the VideoRecognizer surface the objective uses."""

    def __init__(self) -> None:
        super().__init__()
        self.frame = nn.Linear(3 * 4 * 4, DIM)
        self.temporal = nn.Linear(DIM, DIM)
        self.logit_scale = nn.Parameter(torch.tensor(10.0).log())  # log, trained (CLIP-style)

    def encode_video(self, x: torch.Tensor) -> torch.Tensor:
        b, t = x.shape[:2]
        frames = self.frame(x.reshape(b * t, -1)).reshape(b, t, DIM)  # [B, T, D]
        return self.temporal(torch.tanh(frames).mean(dim=1))  # [B, D]


def make_step(gather: bool, online: bool, same_class_positive: bool) -> TrainStep:
    torch.manual_seed(0)  # identical weights in every process (test-only global seeding)
    model = TinyVideoModel()
    if online:
        tokens = torch.randint(
            0, 20, (NUM_CLASSES, 2, 3), generator=torch.Generator().manual_seed(1)
        )
        text: nn.Module = OnlineTextTower(TinyTextModel(DIM, tanh=True), tokens)
    else:
        weight = torch.randn(NUM_CLASSES, DIM, generator=torch.Generator().manual_seed(2))
        text = OfflineTextEmbeddings(weight)
    objective = ContrastiveObjective(
        text,
        [f"class {i}" for i in range(NUM_CLASSES)],
        gather=gather,
        same_class_positive=same_class_positive,
    )
    return TrainStep(model, objective)


def make_batch() -> tuple[torch.Tensor, torch.Tensor]:
    gen = torch.Generator().manual_seed(3)
    video = torch.randn(WORLD * LOCAL, 2, 3, 4, 4, generator=gen)  # [B, T, 3, H, W]
    labels = torch.tensor([0, 1, 0, 2, 1, 3, 3, 0])  # repeated labels, across ranks too
    return video, labels


def grads_of(step: nn.Module) -> dict[str, torch.Tensor]:
    return {n: p.grad.detach().clone() for n, p in step.named_parameters() if p.requires_grad}


def _worker(rank: int, port: int, out_dir: str) -> None:
    import torch.distributed as dist
    from torch.nn.parallel import DistributedDataParallel as DDP

    from text4vis.engine.contrastive import gather_with_grad

    torch.set_num_threads(1)
    dist.init_process_group(
        "gloo", init_method=f"tcp://127.0.0.1:{port}", rank=rank, world_size=WORLD
    )
    try:
        video, labels = make_batch()
        rows = slice(rank * LOCAL, (rank + 1) * LOCAL)
        results: dict[object, object] = {}
        for case in CASES:
            step = make_step(*case)
            ddp = DDP(step)
            loss, _ = ddp(video[rows], labels[rows])
            loss.backward()
            mean_loss = loss.detach().clone()
            dist.all_reduce(mean_loss)
            results[case] = (float(mean_loss) / WORLD, grads_of(step))
        # Uneven local batches: forward is the concatenation, backward the summed slice.
        n = UNEQUAL[rank]
        start = sum(UNEQUAL[:rank])
        x = (torch.arange(n * 2, dtype=torch.float32).reshape(n, 2) + 100 * start).requires_grad_()
        gathered = gather_with_grad(x)
        weights = torch.arange(gathered.numel(), dtype=torch.float32).reshape(gathered.shape)
        (gathered * weights * (rank + 1)).sum().backward()
        results["uneven"] = (gathered.detach(), x.grad.detach())
        torch.save(results, Path(out_dir) / f"rank{rank}.pt")
        dist.barrier()
    finally:
        # gloo + DDP + autograd collectives can abort at interpreter exit unless the group is
        # torn down explicitly after every rank is done.
        dist.destroy_process_group()


def _free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


@pytest.fixture(scope="module")
def ddp_results(tmp_path_factory: pytest.TempPathFactory) -> list[dict[object, object]]:
    import torch.multiprocessing as mp

    out_dir = tmp_path_factory.mktemp("ddp")
    ctx = mp.get_context("spawn")
    port = _free_port()
    procs = [ctx.Process(target=_worker, args=(r, port, str(out_dir))) for r in range(WORLD)]
    for p in procs:
        p.start()
    for p in procs:
        p.join(timeout=120)
    for p in procs:
        if p.is_alive():
            p.kill()
            p.join()
    codes = [p.exitcode for p in procs]
    assert codes == [0] * WORLD, f"worker exit codes {codes}"
    return [torch.load(out_dir / f"rank{r}.pt", weights_only=False) for r in range(WORLD)]


def reference(case: tuple[bool, bool, bool], rows: slice) -> tuple[float, dict[str, torch.Tensor]]:
    """One process, no process group, over ``rows`` of the batch."""
    step = make_step(*case)
    video, labels = make_batch()
    loss, _ = step(video[rows], labels[rows])
    loss.backward()
    return float(loss.detach()), grads_of(step)


def assert_grads_close(got: dict[str, torch.Tensor], want: dict[str, torch.Tensor]) -> None:
    assert got.keys() == want.keys()
    for name in want:
        torch.testing.assert_close(got[name], want[name], atol=1e-6, rtol=1e-5, msg=name)


def test_worker_exit_codes_are_zero(ddp_results: list[dict[object, object]]) -> None:
    assert len(ddp_results) == WORLD  # the fixture asserted exit codes [0, 0]


@pytest.mark.parametrize("case", [c for c in CASES if c[0]])
def test_gather_matches_one_process_over_concatenated_batch(
    ddp_results: list[dict[object, object]], case: tuple[bool, bool, bool]
) -> None:
    want_loss, want_grads = reference(case, slice(None))
    for rank_results in ddp_results:
        loss, grads = rank_results[case]
        assert loss == pytest.approx(want_loss, rel=1e-5, abs=1e-6)
        assert_grads_close(grads, want_grads)
    if case[1]:  # the online tower's parameters are in the comparison
        assert any(name.startswith("objective.text.") for name in want_grads)


def test_gather_off_is_local_and_differs(ddp_results: list[dict[object, object]]) -> None:
    case = (False, True, True)
    loss, grads = ddp_results[0][case]
    # Without the gather: the mean of two local N x N problems ...
    local = [reference(case, slice(r * LOCAL, (r + 1) * LOCAL)) for r in range(WORLD)]
    assert loss == pytest.approx(sum(x[0] for x in local) / WORLD, rel=1e-5)
    assert_grads_close(grads, {n: sum(x[1][n] for x in local) / WORLD for n in grads})
    # ... which is not the loss over the global matrix.
    global_loss, global_grads = reference(case, slice(None))
    assert abs(loss - global_loss) > 1e-3
    assert max((grads[n] - global_grads[n]).abs().max().item() for n in grads) > 1e-4


def test_uneven_gather_forward_and_backward(ddp_results: list[dict[object, object]]) -> None:
    total = sum(UNEQUAL)
    want = torch.cat(
        [
            torch.arange(n * 2, dtype=torch.float32).reshape(n, 2) + 100 * sum(UNEQUAL[:r])
            for r, n in enumerate(UNEQUAL)
        ]
    )
    weights = torch.arange(total * 2, dtype=torch.float32).reshape(total, 2)
    for rank, rank_results in enumerate(ddp_results):
        gathered, grad = rank_results["uneven"]
        torch.testing.assert_close(gathered, want)
        start = sum(UNEQUAL[:rank])
        # rank r's loss is (r + 1) * <gathered, weights>: the slice gets the sum 1 + 2 = 3.
        torch.testing.assert_close(grad, 3 * weights[start : start + UNEQUAL[rank]])
