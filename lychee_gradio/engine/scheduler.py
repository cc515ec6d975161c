"""The one batching policy of the engine: a queue and one worker per loaded model, forming every forward pass
from the requests that are waiting (docs/design.md, "Batching across requests").

The scheduler talks to the model only through the scorer's public runner interface (`Runner` below): run
the shared prefixes of some requests, run one pass, tell an out-of-memory error, give memory back. It owns
everything about passes: their budget (`_choose`, the one place rows and tokens per pass are counted), the
out-of-memory split and the size it remembers, prefixes, fairness, and (with `engine/pipeline.py`) calls of
many images prepared while the model runs. Local scoring and each Ray replica use it alike.

A request encodes its pairs on its own thread, one request at a time (`score`), then hands them in and waits. The
worker thread owns the model: it picks the next pass from every waiting request, computes the
shared prefix of the requests that are new in it (one batched pass for all of them), runs the pass
(each row behind its own request's prefix), and gives each request its scores. Scores stay
pointwise: a row sees only its own request's prefix and its own tail.

Its policy (fair, a budget per pass, waiting for a fuller pass, Stop and timeout, out of memory, one request at a
time) is written out in docs/design.md, "Batching across requests". Work on the model besides scoring (a pair's
introspection) is a task (`call`): the worker runs it between passes, alone.
"""

from __future__ import annotations

import atexit
import logging
import queue
import threading
import time
import weakref
from typing import Callable

from ..contract import (
    PairScore,
    ProgressCallback,
    RequestContext,
    ScoringCancelledError,
    ScoringOutOfMemoryError,
    ScoringTimeoutError,
)
from ..scoring import Counter
from .encoding import EncodedPair, shared_prefix_length
from .job import Job, Runner, Task
from .runner import p_yes

logger = logging.getLogger(__name__)


class Scheduler:
    """The queue in front of one model and the worker that owns it. The worker is stopped and joined before the
    interpreter finalizes (`close`, run at exit for every scheduler): a daemon thread still inside torch at
    finalization aborts the process (exit code 134; docs/design.md, "Batching across requests")."""

    GROW_AFTER = 16  # passes that fit at a remembered size before it grows by a quarter

    def __init__(self, runner: Runner, max_wait: float = 0.005, share_passes: bool = True):
        if max_wait < 0:
            raise ValueError("max_batch_wait_ms must be 0 or more")
        self.runner = runner
        self.max_wait = max_wait
        self.share_passes = share_passes
        self.pipeline = True  # many image documents in a call: prepared a chunk at a time while the model runs
        # After running out of memory, the rows per pass that fit, remembered for later passes.
        self.fitting_batch_size: int | None = None
        self._fits_since_oom = 0
        self._jobs: list[Job] = []  # in arrival order
        self._tasks: list[Task] = []  # other work on the model (`call`), run before the next pass
        self._changed = threading.Condition()
        self._worker: threading.Thread | None = None
        self._closing = False
        self._encoding = threading.Lock()  # one request's images are cut into patches at a time
        self._arriving = Counter()  # calls encoding their pairs (or waiting to): soon in the queue
        self._waiting_to_encode = Counter()
        _LIVE.add(self)

    @property
    def waiting(self) -> int:
        """Calls waiting for the model (for /metrics): with pairs waiting for a pass, or waiting to encode."""
        return sum(1 for job in self._jobs if job.pending) + self._waiting_to_encode.value

    @property
    def arriving(self) -> int:
        """Calls encoding their pairs (or waiting to): the worker waits for them to fill a pass."""
        return self._arriving.value

    def wake(self) -> None:
        """Something the worker may be waiting for changed (a call that was encoding gave up)."""
        with self._changed:
            self._changed.notify_all()

    def score(
        self, encode: Callable[[], list[EncodedPair]], context: RequestContext, on_progress: ProgressCallback | None = None
    ) -> list[PairScore]:
        """Encode one call's pairs (`encode()`, one call at a time, while the model runs other calls' passes),
        queue them and wait for their scores, in input order."""
        self._arriving.add(1)
        try:
            self._acquire(context, self._encoding)
            try:
                encoded = encode()
            finally:
                self._encoding.release()
        except BaseException:
            self._arriving.add(-1)
            self.wake()
            raise
        return self.run(encoded, context, on_progress, arrived=lambda: self._arriving.add(-1))

    def _acquire(self, context: RequestContext, lock: threading.Lock) -> None:
        """Take `lock`, waiting at most until the call's deadline (and no longer once it is cancelled)."""
        self._waiting_to_encode.add(1)
        try:
            while True:
                context.check()
                remaining = context.remaining()
                if lock.acquire(timeout=0.1 if remaining is None else max(0.0, min(0.1, remaining))):
                    return
        finally:
            self._waiting_to_encode.add(-1)

    def run(
        self, pairs: list[EncodedPair], context: RequestContext, on_progress: ProgressCallback | None = None, arrived=None
    ) -> list[PairScore]:
        """Queue one request's pairs and wait for their scores (in input order). `arrived` is called once
        they are in the queue (with the queue's lock held, so the worker sees both changes together)."""
        order = sorted(range(len(pairs)), key=lambda i: -pairs[i].length)
        job = Job(pairs, context, order, [None] * len(pairs))
        if self.runner.reuse_prefix and len(pairs) > 1:
            job.prefix_length = shared_prefix_length(pairs)[0]
        with self._changed:
            self._jobs.append(job)
            if arrived is not None:
                arrived()
            self._start()
        try:
            # Progress after each pass with rows of this request, told on the request's own thread; its Stop
            # and deadline are checked while it waits.
            while not job.finished.is_set() or not job.progress.empty():
                remaining = context.remaining()
                try:
                    # The worker also checks Stop and deadlines before each pass: waking here is a backstop.
                    done = job.progress.get(timeout=0.25 if remaining is None else max(0.001, min(0.25, remaining)))
                except queue.Empty:
                    if not job.finished.is_set():
                        context.check()
                    continue
                if on_progress is not None and job.error is None:
                    on_progress(done, len(pairs))
        except (ScoringCancelledError, ScoringTimeoutError) as error:
            self._drop(job)
            error.partial = list(job.results)  # what its passes scored before it stopped
            raise
        except BaseException:
            self._drop(job)
            raise
        if job.error is not None:
            if isinstance(job.error, (ScoringCancelledError, ScoringTimeoutError)):
                job.error.partial = list(job.results)
            raise job.error
        return job.results  # type: ignore[return-value]

    def call(self, run: Callable, context: RequestContext):
        """Run `run()` (work on the model besides scoring: a pair's introspection) on the worker, between passes
        and alone, and hand back what it returns. While it waits in the queue the call's Stop and deadline end it;
        once it runs, it checks them itself."""
        task = Task(run, context)
        with self._changed:
            self._tasks.append(task)
            self._start()
        while not task.finished.wait(0.1):
            with self._changed:
                if not task.started:
                    try:
                        context.check()
                    except (ScoringCancelledError, ScoringTimeoutError):
                        self._tasks.remove(task)
                        raise
        if task.error is not None:
            raise task.error
        return task.result

    def _start(self) -> None:
        """(Lock held.) The worker, started if it is not running, told that there is work."""
        if self._worker is None or not self._worker.is_alive():
            self._closing = False
            self._worker = threading.Thread(target=self._work, name="lychee-scheduler", daemon=True)
            self._worker.start()
        self._changed.notify_all()

    def _drop(self, job: Job) -> None:
        """The request stopped waiting (Stop, its deadline, an error of its own): its rows leave the queue at
        once; a pass already running rows of it is waited for, so that none of it runs after its answer."""
        with self._changed:
            job.gone = True
            job.pending = []
            if job in self._jobs:
                self._jobs.remove(job)
            while job.in_pass:
                self._changed.wait()

    def close(self, timeout: float | None = 30.0) -> None:
        """Stop the worker once the work queued now is done, and wait for it (at most `timeout` seconds).
        A later call starts a new worker."""
        with self._changed:
            self._closing = True
            self._changed.notify_all()
            worker = self._worker
        if worker is not None and worker is not threading.current_thread():
            worker.join(timeout)

    # -- the worker -------------------------------------------------------------------------------------

    def _work(self) -> None:
        while self._one_pass():
            pass

    def _one_pass(self) -> bool:
        """Waits for rows and runs them as one pass; False once closed with nothing left to run. A method
        of its own so that nothing of a finished pass (its jobs hold every request's decoded pixels) stays
        referenced while the worker waits."""
        with self._changed:
            task = self._tasks.pop(0) if self._tasks else None
            rows = [] if task else self._next_pass()
            while not rows and not task:
                if self._closing:
                    return False
                self._changed.wait()
                task = self._tasks.pop(0) if self._tasks else None
                rows = [] if task else self._next_pass()
            if task:
                task.started = True
            for job, _ in rows:
                job.in_pass = True
        if task:
            self._run_task(task)
            return True
        try:
            self._run(rows)
        except Exception as error:
            logger.exception("the scheduler failed a pass")
            self._fail(list(dict.fromkeys(job for job, _ in rows)), error)
        finally:
            with self._changed:
                for job, _ in rows:
                    job.in_pass = False
                self._changed.notify_all()
        return True

    def _run_task(self, task: Task) -> None:
        try:
            with self.runner.lock:
                task.result = task.run()
        except BaseException as error:  # noqa: BLE001 - the caller hears of it
            task.error = error
        finally:
            task.finished.set()

    def _next_pass(self) -> list[tuple[Job, int]]:
        """The next pass's rows (called with the lock held): waits for more requests while the pass is not
        full and the oldest waiting request has waited less than `max_wait`. Takes them out of `pending`.
        Requests stopped or past their deadline are answered with that error and leave the queue."""
        while True:
            for job in [job for job in self._jobs if job.pending]:
                try:
                    job.context.check()
                except (ScoringCancelledError, ScoringTimeoutError) as error:
                    self._fail([job], error)
            active = [job for job in self._jobs if job.pending]
            if not active:
                return []
            rows, full = self._choose(active)
            wait = min(job.arrived for job in active) + self.max_wait - time.monotonic()
            if full or wait <= 0 or not self.arriving or not self.share_passes:
                break
            self._changed.wait(wait)
        for job, index in rows:
            job.pending.remove(index)
        return rows

    def _choose(self, active: list[Job]) -> tuple[list[tuple[Job, int]], bool]:
        """The rows of the next pass (see the policy above), and whether the pass is full: the one place the
        engine counts rows and padded tokens per pass."""
        runner = self.runner
        size = min(runner.batch_size, self.fitting_batch_size or runner.batch_size)
        rows: list[tuple[Job, int]] = []
        taken: set[tuple[int, int]] = set()
        widest = {"prefix": 0, "tail": 0}
        full = False

        def take(job: Job, limit: int) -> None:
            nonlocal full
            count = sum(1 for owner, _ in rows if owner is job)
            for index in job.pending:
                if count >= limit or len(rows) >= size:
                    return
                if (id(job), index) in taken:
                    continue
                prefix = max(widest["prefix"], job.prefix_length)
                tail = max(widest["tail"], job.pairs[index].length - job.prefix_length)
                if rows and (prefix + tail) * (len(rows) + 1) > runner.max_batch_tokens:
                    full = True  # a shorter pair (of this request or another) may still fit
                    continue
                rows.append((job, index))
                taken.add((id(job), index))
                widest["prefix"], widest["tail"] = prefix, tail
                count += 1

        oldest = min(active, key=lambda job: job.arrived)
        if not self.share_passes:
            take(oldest, size)
            return rows, True
        take(oldest, max(1, size // 4))
        for job in sorted(active, key=lambda job: (len(job.pending), job.arrived)):
            take(job, size)
        return rows, full or len(rows) >= size

    def _run(self, rows: list[tuple[Job, int]]) -> None:
        runner = self.runner
        jobs = list(dict.fromkeys(job for job, _ in rows))
        now = time.monotonic()
        for job in jobs:
            job.started = job.started or now
        out_of_memory = False
        try:
            with runner.lock:
                self._prefixes([job for job in jobs if not job.prefix_ready])
                logits = runner.forward([job.pairs[i] for job, i in rows], [job.prefix for job, _ in rows])
        except RuntimeError as error:
            if not runner.is_out_of_memory(error):
                self._failed(rows, jobs, error)
                return
            out_of_memory = True
        except Exception as error:  # noqa: BLE001 - the requests of the pass hear of it (see _failed)
            self._failed(rows, jobs, error)
            return
        if out_of_memory:  # released here, once the exception (and the tensors its traceback holds) is gone
            self._split(rows, jobs)
            return
        self._note_fit()
        tokens = sum(job.pairs[i].length for job, i in rows)
        # The pass is counted once, with the first request in it that is still there to report it.
        reporter = next((job for job in jobs if not job.gone), None)
        if reporter is not None:
            reporter.context.stats.passes.append((len(rows), tokens, len(jobs)))
        with self._changed:
            for (job, index), (no, yes) in zip(rows, logits.tolist()):
                pair = job.pairs[index]
                job.results[index] = PairScore(score=p_yes(yes, no), yes_logit=yes, no_logit=no, tokens=pair.length)
                job.done += 1
                job.context.stats.scored += 1
                job.context.stats.tokens_scored += pair.length
            for job in jobs:
                job.context.stats.batches.append(sum(1 for owner, _ in rows if owner is job))
                job.progress.put(job.done)
                if job.done == len(job.pairs) or (job.gone and not job.pending):
                    self._finish(job)

    def _failed(self, rows: list[tuple[Job, int]], jobs: list[Job], error: Exception) -> None:
        """A pass failed (not for memory): with one request in it, that request fails; with several, each
        one's rows run again on their own, so that what one request brought fails only that request."""
        if len(jobs) == 1:
            self._fail(jobs, error)
            return
        logger.warning("a forward pass shared by %d requests failed (%r); running each request's rows alone", len(jobs), error)
        for job in jobs:
            self._run([(owner, index) for owner, index in rows if owner is job])

    def _prefixes(self, jobs: list[Job]) -> None:
        """Each new request's shared prefix, all in one pass (one by one if that runs out of memory; a
        request whose own prefix does not fit runs whole prompts)."""
        wanted = [job for job in jobs if job.prefix_length >= 1]
        for job in jobs:
            if job.prefix_length < 1:
                job.prefix_ready = True
        if not wanted:
            return
        for group in ([wanted] if len(wanted) > 1 else []) + [[job] for job in wanted]:
            try:
                prefixes = self.runner.encode_prefixes([job.pairs for job in group])
            except RuntimeError as error:
                if not self.runner.is_out_of_memory(error):
                    raise
                prefixes = None
            if prefixes is None:
                self.runner.release_memory()
                for job in group:
                    job.context.stats.oom_retries += 1
                if len(group) == 1:
                    logger.warning("out of GPU memory computing a request's shared prefix; running whole prompts")
                    group[0].prefix_ready = True
                continue
            for job, prefix in zip(group, prefixes):
                job.prefix, job.prefix_ready = prefix, True
            return

    def _remember_fit(self, batch_size: int) -> None:
        self.fitting_batch_size = batch_size
        self._fits_since_oom = 0

    def _note_fit(self) -> None:
        """A pass fit: after GROW_AFTER of them, let the remembered size grow back by a quarter."""
        if self.fitting_batch_size is None:
            return
        self._fits_since_oom += 1
        if self._fits_since_oom >= self.GROW_AFTER:
            grown = self.fitting_batch_size + max(1, self.fitting_batch_size // 4)
            self.fitting_batch_size = None if grown >= self.runner.batch_size else grown
            self._fits_since_oom = 0

    def _split(self, rows: list[tuple[Job, int]], jobs: list[Job]) -> None:
        """The one out-of-memory split of the engine: the pass's rows go back to their requests, the size that
        fits is remembered as half of this pass's."""
        self.runner.release_memory()
        jobs[0].context.stats.oom_retries += 1
        if len(rows) == 1:
            job, index = rows[0]
            self._fail([job], ScoringOutOfMemoryError(job.pairs[index].length))
            return
        size = (len(rows) + 1) // 2
        self._remember_fit(size)
        logger.warning("out of GPU memory with %d pairs per pass; retrying with %d", len(rows), size)
        with self._changed:
            for job, index in rows:
                if not job.gone:
                    job.pending.append(index)
            for job in jobs:
                job.pending.sort(key=lambda i: -job.pairs[i].length)
            self._changed.notify_all()

    def _fail(self, jobs: list[Job], error: BaseException) -> None:
        with self._changed:
            for job in jobs:
                job.error = error
                job.pending = []
                self._finish(job)

    def _finish(self, job: Job) -> None:
        """(Lock held.) The request has all its scores, or an error: it leaves the queue."""
        job.context.stats.queue_seconds += (job.started or time.monotonic()) - job.arrived
        if job in self._jobs:
            self._jobs.remove(job)
        job.finished.set()


_LIVE: "weakref.WeakSet[Scheduler]" = weakref.WeakSet()


@atexit.register
def _close_all() -> None:
    """At exit (after the main thread's work, before finalization): every scheduler's worker stops."""
    for scheduler in list(_LIVE):
        scheduler.close(timeout=30.0)
