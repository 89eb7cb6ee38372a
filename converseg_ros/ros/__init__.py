"""The ROS 2 layer of converseg_ros: the only code that imports rclpy or ROS messages. It converts messages
and calls the serving core (``converseg_ros.serving``), which knows nothing of ROS.

| file / folder | what |
|---|---|
| ``node.py`` | ``ConverSegNode``: lifecycle, resources (model, serving core, rooms below), parameters |
| ``run.py`` | the node's process: autostart, executor thread, clean exit on a signal, exit codes |
| ``params.py`` | every parameter declared once (type, default, description, range, run time, per camera) |
| ``parameters.py`` | the ROS side of that table: declaration, reading, on-set validation, post-set apply |
| ``commands.py`` | query topics and services -> the serving core; refusals -> outputs |
| ``swapping.py`` | the hot swap: model parameters -> ``ModelKeeper``; ``model_status``; parameters put back |
| ``recording.py`` | the recorder: ``record.*`` -> its settings; the ``flag`` service and topic; its diagnostics |
| ``outputs.py`` | every publisher: result, mask, overlay, markers, detections, active_query, model_status, ... |
| ``results.py`` | a computed batch -> SegmentationResult / overlay with its camera's settings and depth |
| ``diagnostics.py`` | DiagnosticArray from a serving status snapshot |
| ``inputs.py`` | a camera's subscriptions (image or compressed, depth, camera_info) and cheap frame checks |
| ``matched_input.py`` | an input subscription whose reliability follows its publishers (``auto``) |
| ``msgs/`` | message conversion: images (own codec, cv_bridge fallback), results, QoS profiles, depth |
| ``tools/`` | stand-alone tools: ``converseg-query`` client, camera replay, demo, launch support, node command |
"""
