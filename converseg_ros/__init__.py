"""converseg_ros: conversational image segmentation (ConverSeg-Net) for ROS 2 robots.

The model, engine, training and evaluation code imports no ROS module; only
``converseg_ros.ros`` does. When the ROS interfaces are built, rosidl installs
``converseg_ros.msg`` / ``converseg_ros.srv`` into a package of the same name in
another directory; extending ``__path__`` lets both halves import as one package.
"""

from pkgutil import extend_path

__path__ = extend_path(__path__, __name__)

__version__ = "0.1.0"
