"""ROS 2 side of the project: the only package that imports rclpy and ROS message types."""
