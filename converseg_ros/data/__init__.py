"""Dataset formats shared by training and evaluation (no ROS imports).

``samples`` defines the record every reader returns; ``readers`` parses the on-disk formats
(reference ``dataset.jsonl``, evaluation ``items.json``, image folders with masks, ReasonSeg polygon JSON);
``hub`` loads the ConverSeg benchmark from the Hugging Face hub; ``robot_logs`` extracts frames from
rosbag2 / MCAP recordings; ``tfrecord`` reads TFRecord files and ``tf.train.Example`` without TensorFlow,
``rlds`` RLDS/TFDS episode datasets (DROID's release), ``droid_raw`` DROID raw episodes (metadata,
``trajectory.h5`` timestamps, left-view MP4s).
"""
