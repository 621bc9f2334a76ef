"""What a simulated camera does without ROS: streams, lens, sensor response, checked depth, world sessions."""
