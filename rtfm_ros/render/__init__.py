"""How a view is made, no ROS: per-frame depth and pyramid, stereo, warping and blending, per-world fit."""
