"""ROS 2 layer of converseg_ros: message conversion, the lifecycle node, its client and tools.

Only this sub-package imports rclpy and ROS messages; the engine underneath is plain Python.
"""
