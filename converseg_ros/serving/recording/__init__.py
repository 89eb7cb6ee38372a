"""The hard-case recorder: frames where the model struggled, kept on the robot for the data engine. Plain
Python (``rosbags`` writes the bags); the node's ``record.*`` parameters and the ``flag`` service and topic
are in ``ros/recording.py``.

| file | what |
|---|---|
| ``settings.py`` | ``RecordSettings`` (the ``record.*`` knobs), reasons, ``Record`` (one kept frame) |
| ``judge.py`` | ``HardCaseJudge``: low score, nothing found, tracked mask vs its re-grounding; latest answers |
| ``recorder.py`` | ``HardCaseRecorder``: its own thread, a short queue, rate limit, flags, sessions, errors |
| ``budget.py`` | the disk budget: the oldest closed chunk or record folder dropped first |
| ``bag.py`` | a session as a rosbag2 (MCAP storage) written in closed chunks; topics ``/record/...`` |
| ``folder.py`` | a session as plain folders (``image.png`` + ``record.json``) |
"""
