"""``converseg-improve``: the loop from the robot's recorded hard cases to a better release, gated.

| file | what |
|---|---|
| ``cli.py`` | the command: arguments, the plan, the verdict printed and as exit status |
| ``recordings.py`` | the recording sessions (rosbag2 with ``/record/`` topics) below a folder, grouped by topics |
| ``loop.py`` | the stages (data engine, export split by session, fine-tune, gated promotion), state, resume |
"""
