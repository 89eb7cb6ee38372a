"""The query book: the one owner of each camera's standing queries — its continuous query and its tracked
queries — created when the node is configured and kept across model reloads. Plain Python.

Every change goes through the book once: accepting, stopping, clearing, a refusal by the model (a tracked
query the model cannot ground is dropped here, so diagnostics, ``max_tracks`` and re-activation all see it
gone) and re-activation (every track is grounded again on the new model). The worker guards the book with its
lock; nothing else holds a copy.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from converseg_ros.serving.queries import Query


@dataclass
class TrackPlan:
    """What one frame does to a camera's tracks: stop, re-ground, step the running ones, start new ones."""

    stops: set[str]
    regrounds: set[str]
    step: bool  # step the running tracks on this frame
    starts: dict[str, Query]


@dataclass
class CameraTracks:
    """A camera's tracked queries (MODE_TRACK), by query id, in the states the inference thread moves them
    through: pending (start on the next fresh frame) -> starting (the running batch grounds it) -> active."""

    active: dict[str, Query] = field(default_factory=dict)
    pending: dict[str, Query] = field(default_factory=dict)
    starting: dict[str, Query] = field(default_factory=dict)
    stops: set[str] = field(default_factory=set)  # to remove from the camera's tracker
    regrounds: set[str] = field(default_factory=set)

    def ids(self) -> list[str]:
        """Every tracked query of the camera (running or about to start)."""
        return sorted({*self.active, *self.pending, *self.starting})

    def start(self, query: Query) -> None:
        """Start (or restart, same id) a tracked query on the next fresh frame."""
        self.pending[query.id] = query

    def stop(self, query_id: str) -> bool:
        """Stop a tracked query (started or not); False if there is none with this id."""
        found = any(query_id in d for d in (self.active, self.pending, self.starting))
        self.pending.pop(query_id, None)
        if self.active.pop(query_id, None) is not None or self.starting.pop(query_id, None) is not None:
            self.stops.add(query_id)
        return found

    def clear(self) -> list[str]:
        """Stop every tracked query; their ids."""
        ids = self.ids()
        for query_id in ids:
            self.stop(query_id)
        return ids

    def reground(self, query_id: str | None) -> int:
        """Ground ``query_id`` (every running track for None) again on the next frame; how many will be."""
        ids = list(self.active) if query_id is None else [query_id] if query_id in self.active else []
        self.regrounds.update(ids)
        return len(ids)

    def take(self, step: bool) -> TrackPlan:
        """The requests for the next frame (and ``step``: run the active tracks on it)."""
        plan = TrackPlan(set(self.stops), set(self.regrounds), step and bool(self.active), dict(self.pending))
        self.stops.clear()
        self.regrounds.clear()
        for query_id, query in self.pending.items():
            self.active.pop(query_id, None)  # a restart replaces the running track
            self.starting[query_id] = query
        self.pending.clear()
        return plan

    def finish_start(self, query_id: str, state: str) -> None:
        """The running batch started ``query_id`` (``running``), could not and should try again on the next
        frame (``retry``), or the model refused it for good (``dropped``: gone from the book)."""
        query = self.starting.pop(query_id, None)
        if query is None or query_id in self.pending:
            return  # stopped, or restarted with the same id, while it started
        if state == "running":
            self.active[query_id] = query
        elif state == "retry":
            self.pending[query_id] = query

    def restart(self) -> None:
        """A new model: every track starts again (grounded) on its next frame; nothing of the old tracker."""
        self.pending = {**self.active, **self.starting, **self.pending}
        self.active, self.starting = {}, {}
        self.stops.clear()
        self.regrounds.clear()


@dataclass
class CameraQueries:
    """One camera's standing queries."""

    continuous: Query | None = None
    tracks: CameraTracks = field(default_factory=CameraTracks)


class QueryBook:
    """Each camera's standing queries, by camera name ("" = the unnamed camera of a one-camera node)."""

    def __init__(self, cameras: list[str]) -> None:
        if not cameras or len(set(cameras)) != len(cameras):
            raise ValueError("the query book needs at least one camera, each with its own name")
        self._cameras = {name: CameraQueries() for name in cameras}

    @property
    def cameras(self) -> list[str]:
        """Camera names in their configured order."""
        return list(self._cameras)

    def of(self, camera: str) -> CameraQueries:
        """The standing queries of ``camera`` (KeyError if unknown)."""
        return self._cameras[camera]

    def continuous(self, camera: str) -> Query | None:
        """The continuous query of ``camera``."""
        return self._cameras[camera].continuous

    def tracked(self, camera: str) -> list[str]:
        """Ids of the tracked queries of ``camera``."""
        return self._cameras[camera].tracks.ids()

    def restart(self) -> None:
        """A model (re)load: tracks start again on every camera."""
        for queries in self._cameras.values():
            queries.tracks.restart()
