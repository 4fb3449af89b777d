"""Every worker learns what people did through any worker's API.

All workers share one database, but each keeps the open alerts of the machines and lines it owns in
its own ``AlertBook``. An acknowledgement, a resolution or a "new normal" done through the API of
worker A is written to the database and to its journal of people's actions (``alert_actions``);
worker B, which owns the machine, applies the journal from where it last stopped before it turns its
next batch into alert events: an acknowledged alert stays acknowledged in B's updates, an alert
resolved by hand is over in B too (the condition's recurrence is a new alert), and a "new normal"
makes B's model of the machine relearn.

The check is one indexed query per batch that returns no rows when nobody did anything. The API
calls the same function right after a person's action, so the worker serving the request applies
it at once, through the same path.
"""

from __future__ import annotations

import logging
import threading
from typing import Protocol

from linewatch.alerts.lifecycle import AlertBook
from linewatch.alerts.store import ACTIVATE, NEW_NORMAL, Action, AlertStore
from linewatch.detect.versions import ModelVersion

log = logging.getLogger(__name__)


class Worker(Protocol):
    """What this needs of the pipeline (``linewatch.pipeline.Pipeline``)."""

    lock: threading.Lock
    book: AlertBook

    def new_normal(self, machine: str, by: str | None = None, note: str | None = None) -> bool: ...

    def activate(self, version: ModelVersion, highest: int) -> bool: ...

    def refresh_open_gauge(self) -> None: ...


def sync_people_actions(worker: Worker, store: AlertStore, page: int = 1000) -> int:
    """Apply the people's actions the worker's alert book has not seen yet; how many were applied.

    Safe to call from several threads (the API's and the consumer loop's): the journal is read
    without the pipeline's lock, and each action is applied under it only if no other thread has
    applied it meanwhile. Raises whatever the database driver raises; nothing has changed then and
    the next call starts from the same place.
    """
    book = worker.book
    applied = 0
    renew: list[Action] = []  # new normals and activations of a model version, in journal order
    versions: dict[int, tuple[ModelVersion | None, int]] = {}
    while True:
        if book.actions_seen is None:  # the first call starts where the journal stood when the store opened
            book.actions_seen = store.actions_at_open
        start = book.actions_seen
        actions = store.actions_since(start, limit=page)
        if not actions:
            break
        # what an activation needs from the database is read before anything is applied: a read that
        # fails leaves the journal where it was, and the next call applies the activation
        versions.update(_versions_to_activate(store, actions))
        with worker.lock:
            for action in actions:
                if action.seq <= book.actions_seen:
                    continue  # another thread applied it
                machine = book.apply(action)
                applied += 1
                if machine or action.action == ACTIVATE:
                    renew.append(action)
            worker.refresh_open_gauge()
        if len(actions) < page:
            break
    _renew(worker, renew, versions)
    if applied:
        store.version += 1  # another worker's action changed alerts: cached API answers are out of date
    return applied


def renew_since_checkpoint(worker: Worker, store: AlertStore, journal: dict[str, int], page: int = 1000) -> int:
    """Apply again the "new normal"s given after a machine's checkpoint was saved; how many.

    ``journal`` is ``Pipeline.import_state(...).journal``: per machine, how far the journal of
    people's actions was applied when its model was checkpointed. A worker killed after an operator's
    "new normal" but before its next checkpoint would otherwise bring back the old normal, and the
    operator's decision would be lost (the journal is read on from where the store stood at startup).
    Only actions up to that point are applied here; later ones reach the model through
    ``sync_people_actions`` as usual.
    """
    if not journal:
        return 0
    until = worker.book.actions_seen if worker.book.actions_seen is not None else store.actions_at_open
    start, renew = min(journal.values()), []
    while start < until:
        actions = store.actions_since(start, limit=page)
        for action in actions:
            if action.seq > until:
                break
            if (action.action in (NEW_NORMAL, ACTIVATE) and action.machine in journal
                    and action.seq > journal[action.machine]):
                renew.append(action)
        if len(actions) < page:
            break
        start = actions[-1].seq
    _renew(worker, renew, _versions_to_activate(store, renew))
    return len(renew)


def _versions_to_activate(store: AlertStore, actions: list[Action]) -> dict[int, tuple[ModelVersion | None, int]]:
    """Per activation (by journal seq): the version with its state, and the machine's highest number."""
    return {a.seq: (store.model_version(a.machine, a.model_version, a.recipe, with_state=True),
                    store.highest_version(a.machine, a.recipe))
            for a in actions if a.action == ACTIVATE and a.machine is not None and a.model_version is not None}


def _renew(worker: Worker, actions: list[Action], versions: dict[int, tuple[ModelVersion | None, int]]) -> None:
    """Apply new normals and activations, in journal order; each takes the pipeline's lock itself and
    is a no-op where this worker does not hold the machine's models."""
    for action in actions:
        if action.machine is None:
            continue
        if action.action == NEW_NORMAL:
            worker.new_normal(action.machine, action.by, action.note)
        elif action.action == ACTIVATE and action.seq in versions:
            version, highest = versions[action.seq]
            if version is None or not version.state:
                log.warning("%s: version %s to activate is gone from the store (retention?); the model in use "
                            "stays", action.machine, action.model_version)
                continue
            worker.activate(version, highest)
