"""Message conversion for the ROS layer (no node state).

| file | what |
|---|---|
| ``interfaces.py`` | this package's generated messages and services, with a hint when they are not built |
| ``image_codec.py`` | sensor_msgs/Image <-> numpy without cv_bridge (``ImageCodecError``) |
| ``image_input.py`` | incoming Image / CompressedImage / depth -> arrays; cheap checks for callbacks |
| ``cv_bridge_compat.py`` | cv_bridge for encodings the own codec lacks, when it imports cleanly |
| ``conversions.py`` | engine outputs -> results, regions, markers, detections; stamps and headers |
| ``depth.py`` | camera intrinsics and 3D region positions from depth |
| ``qos.py`` | QoS profiles of inputs, commands and outputs |
"""
