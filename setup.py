"""pip-installable half of converseg_ros: engine, CLIs, training and evaluation work without ROS.

Inside a ROS 2 workspace, ``colcon build`` uses CMakeLists.txt instead (ament_cmake), which also
generates the interfaces in msg/ and srv/.
"""

from pathlib import Path

from setuptools import find_packages, setup

ROOT = Path(__file__).parent


def shared(folder: str) -> list[tuple[str, list[str]]]:
    """data_files entries installing ``folder`` (and its subfolders) under share/converseg_ros."""
    entries = []
    files = [p for p in (ROOT / folder).rglob("*") if p.is_file() and "__pycache__" not in p.parts]
    for directory in sorted({p.parent for p in files}):
        members = sorted(str(p.relative_to(ROOT)) for p in files if p.parent == directory)
        entries.append((f"share/converseg_ros/{directory.relative_to(ROOT)}", members))
    return entries


setup(
    name="converseg_ros",
    version="0.1.0",
    description="Conversational image segmentation (ConverSeg-Net) for ROS 2 robots",
    license="Apache-2.0",
    python_requires=">=3.10",
    packages=find_packages(include=["converseg_ros", "converseg_ros.*"]),
    package_data={"converseg_ros.modeling": ["*.jinja"], "converseg_ros.dataengine": ["*.html", "*.css", "*.js"]},
    data_files=[entry for d in ("models", "launch", "config", "rviz") for entry in shared(d)],
    entry_points={
        "console_scripts": [
            "converseg-segment = converseg_ros.cli.segment:main",
            "converseg-train = converseg_ros.training.cli:main",
            "converseg-eval = converseg_ros.evaluation.cli:main",
            "converseg-data = converseg_ros.dataengine.cli:main",
            "converseg-improve = converseg_ros.improve.cli:main",
            "converseg-query = converseg_ros.ros.tools.client:main",
            "converseg-replay = converseg_ros.ros.tools.replay:main",
            "converseg-node = converseg_ros.node:main",
        ]
    },
)
