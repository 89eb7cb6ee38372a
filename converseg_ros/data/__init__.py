"""Dataset formats shared by training and evaluation (no ROS imports).

``samples`` defines the record every reader returns; ``readers`` parses the on-disk formats
(reference ``dataset.jsonl``, evaluation ``items.json``, image folders with masks, ReasonSeg polygon JSON);
``hub`` loads the ConverSeg benchmark from the Hugging Face hub; ``robot_logs`` extracts frames from
rosbag2 / MCAP recordings.
"""
