"""The conversational data engine (paper §B): robot logs in, verified (image, prompt, mask) triplets out.

No ROS imports: logs are read with ``rosbags`` / ``mcap`` (``converseg_ros.data.robot_logs``).

- ``inputs``: image folders, rosbag2 / MCAP frames sampled by time or scene change, DROID episodes; shards
- ``stages``: the five stages, each with its prompt template and JSON schema
- ``vlm``: OpenAI-compatible HTTP, Gemini and local transformers backends behind a validating, retrying client
- ``segmenter`` / ``models``: boxes -> SAM2 masks with a preset's SAM2
- ``pipeline`` / ``store``: per-image isolation, atomic outputs, manifest, resume
- ``export``, ``review``, ``ray_runner``, ``cli`` (``converseg-data``)
"""
