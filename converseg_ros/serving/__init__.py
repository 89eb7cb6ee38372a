"""The serving core: cameras, queries, scheduling and the inference thread — everything the ROS node does that
needs no ROS. Plain Python: imports from ``engine/`` (and ``modeling/`` through it), never from ``ros/``;
the node (``ros/``) converts messages and calls it.

| file | what |
|---|---|
| ``queries.py`` | query modes, ``Query``, one-shot ``Job``, ``Outcome``, per-frame ``Batch``; bounds on ids |
| ``settings.py`` | node-wide ``WorkerSettings``, per-camera ``CameraSettings``, injected ``Clocks`` |
| ``frame_slot.py`` | ``LatestSlot``: a camera's newest frame (overwritten, never queued) and its counters |
| ``book.py`` | ``QueryBook``: the one owner of each camera's continuous and tracked queries |
| ``camera.py`` | ``CameraFeed``: a camera's slot, settings, scheduling marks, cached encoding, tracker, stats |
| ``scheduler.py`` | ``Scheduler``: which frame and which queries next (pure; fake-clock testable) |
| ``frame_runner.py`` | ``FrameRunner``: runs a plan on the model (decode, encode once, batch, tracks) |
| ``track_runner.py`` | a camera's tracked queries on one frame (SAM2 memory; ``engine/tracking.py``) |
| ``worker.py`` | ``InferenceWorker``: the lock, the public API, the inference thread per loaded model |
| ``publish_queue.py`` | ``PublishQueue``: results published on their own thread, in order |
| ``stats.py`` | ``WorkerStats`` counters and ``Accounts`` (totals + per camera, failure reasons) |
| ``status.py`` | ``ServingStatus``: a consistent snapshot for diagnostics |
| ``model.py`` | ``ModelRequest`` (preset, release folder, files; its label) -> ``check_model``, ``load_engine`` |
| ``swap.py`` | ``ModelKeeper``: the served model, swapped while serving (both/pause), memory, the gap |
| ``plain_frame.py`` | ``PlainFrame`` and its ``decode``: camera frames without ROS (benchmarks, tests, other stacks) |
| ``recording/`` | the hard-case recorder: judge, own thread, rate limit, flags, budget, rosbag2/MCAP or folders |
"""
