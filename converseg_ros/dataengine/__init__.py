"""The conversational data engine (paper §B): robot logs in, verified (image, prompt, mask) triplets out.

No ROS imports: logs are read with ``rosbags`` / ``mcap``, DROID with ``converseg_ros.data.rlds`` /
``droid_raw``.

- ``cli``: ``converseg-data`` (parses; run / status / export / review)
- ``config``: settings resolved once (defaults <- run.json <- arguments; normalised; URLs scrubbed)
- ``runner``: one run from a resolved config — what the CLI and every Ray task call; ``--dry-run``
- ``ray_runner``: ``--ray N`` shard tasks on a Ray instance bound to 127.0.0.1, one progress bar
- ``sources`` / ``inputs`` / ``ids``: image folders, logs, DROID raw, RLDS; shards by episode; ids, dedup
- ``stages``: the five stages, each with its prompt template and JSON schema
- ``vlm``: OpenAI-compatible HTTP, Gemini and local backends behind a validating, retrying, budgeted client
- ``segmenter`` / ``models``: boxes -> SAM2 masks with a preset's SAM2
- ``pipeline`` / ``store`` / ``runfiles``: per-image isolation, atomic outputs, one checked reader, resume
- ``estimate``: requests, tokens and cost before spending; ``scrub``: credentials out of stored text
- ``export`` (splits by episode / image / scene), ``review`` (token-protected page), ``samples``
"""
