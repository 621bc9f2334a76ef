"""ROS messages <-> numpy without rclpy, bags, a bag's images as posed frames."""
