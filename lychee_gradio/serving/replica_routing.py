"""How Ray Serve picks a model replica for a call: the least loaded one, a replica not heard from lately
counting as idle (`serving.cluster.scorer_deployment` installs it).

Each replica takes several calls at once (its scheduler batches them), so Ray Serve's default router,
which prefers a replica whose load it has cached over one it has not asked yet, may send both halves of
a large request to the same replica while the other stands idle. Ranking the replicas by their known
load, unknown first (Ray Serve then asks it before sending), spreads a request's chunks and keeps small
requests on the least busy replica. Replicas of equal known load take turns: the chunks of one request
are routed one after another, often before any replica has reported a load, and would otherwise all
go to the first. Imported only where Ray is.
"""

from __future__ import annotations

import itertools

from ray.serve.request_router import FIFOMixin, PendingRequest, RequestRouter, RunningReplica


class LeastLoadedRouter(FIFOMixin, RequestRouter):
    _turns = itertools.count()

    async def choose_replicas(
        self, candidate_replicas: list[RunningReplica], pending_request: PendingRequest | None = None
    ) -> list[list[RunningReplica]]:
        known = self.replica_queue_len_cache
        turn = next(self._turns) % max(len(candidate_replicas), 1)
        rotated = candidate_replicas[turn:] + candidate_replicas[:turn]
        ranked = sorted(rotated, key=lambda replica: known.get(replica.replica_id) or 0)  # stable: turns break ties
        return [[replica] for replica in ranked]
