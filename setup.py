"""pip-installable half of converseg_ros: engine, CLIs, training and evaluation work without ROS.

Inside a ROS 2 workspace, ``colcon build`` uses CMakeLists.txt instead (ament_cmake), which also
generates the interfaces in msg/ and srv/.
"""

from pathlib import Path

from setuptools import find_packages, setup

ROOT = Path(__file__).parent


def shared(folder: str) -> tuple[str, list[str]]:
    files = sorted(str(p) for p in (ROOT / folder).glob("*") if p.is_file())
    return (f"share/converseg_ros/{folder}", [str(Path(f).relative_to(ROOT)) for f in files])


setup(
    name="converseg_ros",
    version="0.1.0",
    description="Conversational image segmentation (ConverSeg-Net) for ROS 2 robots",
    license="Apache-2.0",
    python_requires=">=3.10",
    packages=find_packages(include=["converseg_ros", "converseg_ros.*"]),
    data_files=[shared(d) for d in ("models", "launch", "config", "rviz") if (ROOT / d).is_dir()],
    entry_points={
        "console_scripts": [
            "converseg-segment = converseg_ros.cli.segment:main",
            "converseg-train = converseg_ros.training.cli:main",
            "converseg-eval = converseg_ros.evaluation.cli:main",
            "converseg-query = converseg_ros.ros.client:main",
            "converseg-replay = converseg_ros.ros.replay:main",
            "converseg-node = converseg_ros.node:main",
        ]
    },
)
