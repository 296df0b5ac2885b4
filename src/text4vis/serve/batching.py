"""One thread owns the model; concurrent requests reach it through a bounded asyncio queue.

Requests put *jobs* on the queue:

- an **embed job** holds one decoded video (its views, :meth:`ServedModel.load_views
  <text4vis.serve.model.ServedModel.load_views>`, decoded by the request itself, outside the
  model's thread); the collector takes up to ``max_batch`` of them, waiting at most
  ``max_wait_s`` after the first one for more to come (and only while other requests are still
  decoding theirs), and runs them through the model in **one forward pass**
  (:meth:`~text4vis.serve.model.ServedModel.embed_views`: ``N`` videos -> ``[N, V, D]``);
- a **call job** runs a function on the model's thread (a text classifier for label names, a
  search of the index): everything that touches the model or its caches runs on that one thread,
  so nothing of it needs a lock.

While the model's thread works on one batch, new jobs wait in the queue and form the next batch.
The queue holds at most ``max_queue`` jobs: one more is refused at once with :class:`Overloaded`
(the server answers 503 with ``Retry-After``), so memory is bounded whatever the load. A job whose
request gave up (its timeout) is dropped before it runs.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import contextlib
import logging
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from text4vis.errors import UsageError
from text4vis.serve.model import ServedModel

__all__ = ["BatchStats", "ModelWorker", "Overloaded"]

logger = logging.getLogger("text4vis.serve")


class Overloaded(Exception):
    """The queue in front of the model is full: the request is refused, to be retried later.

    Not a :class:`~text4vis.errors.Text4VisError`: nothing is wrong with the request; the server
    answers 503 with ``Retry-After: retry_after_s``.
    """

    def __init__(self, message: str, retry_after_s: int = 1) -> None:
        super().__init__(message)
        self.retry_after_s = retry_after_s


@dataclass
class _Job:
    future: asyncio.Future


@dataclass
class _EmbedJob(_Job):
    views: Any  # one video's views, as the model's load_views returns them


@dataclass
class _CallJob(_Job):
    function: Callable[[], Any] = field(default=lambda: None)


@dataclass
class BatchStats:
    """Counts since the start: how many forward passes ran and how many videos they held."""

    batches: int = 0
    videos: int = 0
    largest_batch: int = 0
    calls: int = 0
    refused: int = 0

    def to_dict(self) -> dict[str, Any]:
        return {
            "batches": self.batches,
            "videos": self.videos,
            "largest_batch": self.largest_batch,
            "mean_batch": round(self.videos / self.batches, 3) if self.batches else 0.0,
            "calls": self.calls,
            "refused": self.refused,
        }


class ModelWorker:
    """The model's thread and the bounded queue in front of it.

    Start it on the server's event loop (:meth:`start`, the application's lifespan does) and stop
    it with :meth:`stop`.

    Args:
        predictor: the model (a :class:`~text4vis.serve.model.ServedModel`: a
            :class:`text4vis.Predictor` or an export's
            :class:`~text4vis.onnx_runtime.OnnxPredictor`); only this worker's thread uses it
            once the worker runs.
        max_batch: videos per forward pass at most (1 = no batching).
        max_wait_s: how long the first video of a batch waits for others (0 = take only those
            already waiting).
        max_queue: jobs waiting at most; one more is refused with :class:`Overloaded`.
    """

    def __init__(
        self,
        predictor: ServedModel,
        *,
        max_batch: int = 8,
        max_wait_s: float = 0.01,
        max_queue: int = 64,
    ) -> None:

        if max_batch < 1:
            raise UsageError(f"the maximum batch must be at least 1, got {max_batch}")
        if max_wait_s < 0:
            raise UsageError(f"the maximum wait must be 0 s or more, got {max_wait_s}")
        if max_queue < 1:
            raise UsageError(f"the queue must hold at least 1 request, got {max_queue}")
        self.predictor = predictor
        self.max_batch = max_batch
        self.max_wait_s = max_wait_s
        self.max_queue = max_queue
        self.stats = BatchStats()
        self._coming = 0  # requests on their way to an embed job (see coming())
        self._queue: asyncio.Queue[_Job] | None = None
        self._collector: asyncio.Task | None = None
        self._executor: concurrent.futures.ThreadPoolExecutor | None = None

    # -- life ----------------------------------------------------------------------------------

    @property
    def running(self) -> bool:
        return self._collector is not None and not self._collector.done()

    def start(self) -> None:
        """Start the collector on the running event loop and the model's thread."""
        if self.running:
            return
        self._queue = asyncio.Queue(maxsize=self.max_queue)
        self._executor = concurrent.futures.ThreadPoolExecutor(
            max_workers=1, thread_name_prefix="text4vis-model"
        )
        self._collector = asyncio.get_running_loop().create_task(self._collect())

    async def stop(self) -> None:
        """Stop taking jobs; jobs still waiting fail with :class:`Overloaded`."""
        if self._collector is not None:
            self._collector.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._collector
            self._collector = None
        if self._queue is not None:
            while not self._queue.empty():
                job = self._queue.get_nowait()
                if not job.future.done():
                    job.future.set_exception(Overloaded("the server is shutting down"))
        if self._executor is not None:
            self._executor.shutdown(wait=True)
            self._executor = None

    @property
    def waiting(self) -> int:
        """Jobs in the queue now."""
        return 0 if self._queue is None else self._queue.qsize()

    # -- jobs ----------------------------------------------------------------------------------

    @contextlib.contextmanager
    def coming(self) -> Iterator[None]:
        """Mark a request that will submit a video (while it decodes it): a batch waits up to
        ``max_wait_s`` for more videos only while such requests exist, so that a lone request
        does not wait for company that is not coming. Leave it just before :meth:`embed`."""
        self._coming += 1
        try:
            yield
        finally:
            self._coming -= 1

    async def embed(self, views: Any) -> np.ndarray:
        """The embeddings float32 ``[V, D]`` (before L2 normalisation) of one video's views (of
        the model's ``load_views``), computed in a batch with other requests' videos."""
        return await self._submit(_EmbedJob(self._new_future(), views))

    async def call(self, function: Callable[[], Any]) -> Any:
        """Run ``function()`` on the model's thread (alone, between batches); its result."""
        return await self._submit(_CallJob(self._new_future(), function))

    def _new_future(self) -> asyncio.Future:
        return asyncio.get_running_loop().create_future()

    async def _submit(self, job: _Job) -> Any:
        if not self.running:
            self.start()
        assert self._queue is not None
        try:
            self._queue.put_nowait(job)
        except asyncio.QueueFull:
            self.stats.refused += 1
            raise Overloaded(
                f"the server is busy: {self.max_queue} requests are already waiting for the "
                "model; retry in a moment"
            ) from None
        try:
            return await job.future
        finally:
            # A request that gives up (its timeout, a closed connection) cancels the future, so
            # the collector drops the job instead of running it for nobody.
            job.future.cancel()

    # -- the collector (event loop) and the model's thread -------------------------------------

    async def _collect(self) -> None:
        loop = asyncio.get_running_loop()
        assert self._queue is not None
        while True:
            jobs = [await self._queue.get()]
            if isinstance(jobs[0], _EmbedJob):
                await self._gather_batch(jobs, loop)
            live = [job for job in jobs if not job.future.done()]
            if not live:
                continue
            outcomes = await loop.run_in_executor(self._executor, self._run, live)
            for job, (ok, value) in zip(live, outcomes):
                if job.future.done():  # the request gave up meanwhile
                    continue
                if ok:
                    job.future.set_result(value)
                else:
                    job.future.set_exception(value)

    async def _gather_batch(self, jobs: list[_Job], loop: asyncio.AbstractEventLoop) -> None:
        """Add waiting jobs to ``jobs`` until it holds ``max_batch`` videos or the first one has
        waited ``max_wait_s``. Call jobs met on the way run after the batch, in order."""
        assert self._queue is not None
        deadline = loop.time() + self.max_wait_s
        videos = 1
        while videos < self.max_batch:
            try:
                job = self._queue.get_nowait()
            except asyncio.QueueEmpty:
                remaining = deadline - loop.time()
                if remaining <= 0 or self._coming == 0:
                    break
                try:
                    job = await asyncio.wait_for(self._queue.get(), remaining)
                except asyncio.TimeoutError:
                    break
            jobs.append(job)
            videos += isinstance(job, _EmbedJob)

    def _run(self, jobs: list[_Job]) -> list[tuple[bool, Any]]:
        """On the model's thread: the batch's forward pass, then the calls. ``(ok, value)`` per
        job, in order; an exception is a value (it fails its own request, not the worker)."""
        outcomes: dict[int, tuple[bool, Any]] = {}
        embeds = [(i, job) for i, job in enumerate(jobs) if isinstance(job, _EmbedJob)]
        if embeds:
            try:
                values = self._forward([job.views for _, job in embeds])  # [N, V, D]
                for row, (i, _) in enumerate(embeds):
                    outcomes[i] = (True, values[row])
            except Exception as exc:  # each request of the batch answers it (a 500 for a bug)
                for i, _ in embeds:
                    outcomes[i] = (False, exc)
            self.stats.batches += 1
            self.stats.videos += len(embeds)
            self.stats.largest_batch = max(self.stats.largest_batch, len(embeds))
        for i, job in enumerate(jobs):
            if isinstance(job, _CallJob):
                self.stats.calls += 1
                try:
                    outcomes[i] = (True, job.function())
                except Exception as exc:
                    outcomes[i] = (False, exc)
        return [outcomes[i] for i in range(len(jobs))]

    def _forward(self, views: list[Any]) -> np.ndarray:
        """One forward pass over the videos' views: ``N`` videos -> ``[N, V, D]``."""
        return self.predictor.embed_views(views)
