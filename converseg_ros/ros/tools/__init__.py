"""Stand-alone ROS tools around converseg_node.

| file | what |
|---|---|
| ``client.py`` | ``ConverSegClient`` and the ``converseg-query`` command |
| ``swap.py`` | ``converseg-query --swap DIR``: the node's model swapped while it serves, the outcome printed |
| ``replay.py`` | ``converseg-replay``: photos, folders or bags as a camera |
| ``demo.py`` | the README's demo: node + replay + queries -> overlay PNGs |
| ``launch_support.py`` | helpers of launch/segment.launch.py (RViz layout, Fast DDS profile, cameras) |
| ``node_command.py`` | the command line and environment that start the node without ``ros2 launch`` |
"""
