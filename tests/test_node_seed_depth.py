"""The camera node grown from an RGB-D camera: ~/seed_image with its registered depth on
~/seed_depth (real ROS 2 over Fast DDS, the node spun in this process)."""

from __future__ import annotations

import time

import numpy as np
import rclpy
from node_helpers import S, SpunNode
from ros_helpers import pick_domain_id, reliable_qos, ros_context
from sensor_msgs.msg import Image
from tf2_msgs.msg import TFMessage
from waiting import wait_until

from rtfm_ros import geometry as g
from rtfm_ros.ros import conversions as c


def test_seed_images_take_the_depth_stamped_with_them(assets):
    """Depth published after its image (as drivers may) still pairs with it; an image whose depth
    never comes is added alone once the depth stream is past it; a depth image of another aspect
    is refused with the image skipped, and the node keeps running."""
    domain = pick_domain_id(offset=89)
    spun = SpunNode(domain, {"checkpoint": str(assets["ckpt"]), "device": "cpu", "camera_frame": "cam",
                             "camera_frame_convention": "optical"})
    services = spun.node.world_services
    rgb = assets["frames"][0][0]
    h, w = rgb.shape[:2]
    try:
        with ros_context(domain) as pub_ctx:
            node = rclpy.create_node("rtfm_test_seed_depth", context=pub_ctx)
            tf_pub = node.create_publisher(TFMessage, "/tf", reliable_qos(depth=100))
            img_pub = node.create_publisher(Image, "/rtfm_camera/seed_image", reliable_qos())
            depth_pub = node.create_publisher(Image, "/rtfm_camera/seed_depth", reliable_qos())
            wait_until(lambda: min(p.get_subscription_count() for p in (tf_pub, img_pub, depth_pub)) > 0,
                       "the node's /tf, seed_image and seed_depth subscriptions are discovered")
            t = time.time_ns()
            pose = g.make_transform(g.look_at([0, 0, 1], [1, 0, 1])[:3, :3], (0.0, 0.0, 1.0))
            tf_pub.publish(TFMessage(transforms=[c.transform_msg(pose, "map", "cam", t - S),
                                                 c.transform_msg(pose, "map", "cam", t + 2 * S)]))
            time.sleep(0.2)
            depth = np.full((h // 2, w // 2), 2.5, np.float32)  # half size: resized to the image
            depth_pub.publish(c.depth_msg(depth, t, "cam"))  # depth flows
            wait_until(lambda: services._pairing._depths, "the first depth image arrives")
            img_pub.publish(c.image_msg(rgb, t + 2 * S // 100, "cam"))  # 20 ms later: pairs
            img_pub.publish(c.image_msg(rgb, t + S // 2, "cam"))  # waits for its depth
            wait_until(lambda: services.seeded >= 1 and services._pairing.waiting == 1,
                       "the first image is added, the second waits")
            depth_pub.publish(c.depth_msg(np.full((h, w), 1.5, np.float32), t + S // 2 + 5 * S // 1000, "cam"))
            img_pub.publish(c.image_msg(rgb, t + S, "cam"))  # its depth never comes ...
            depth_pub.publish(c.depth_msg(np.full((h, w + 7), 1.0, np.float32), t + S + S // 10, "cam"))
            wait_until(lambda: services.seeded >= 3, "three seed images are added")
            img_pub.publish(c.image_msg(rgb, t + S + S // 10, "cam"))  # ... this one's is another aspect
            wait_until(lambda: spun.node.stats.skipped["seed image"] == 1, "the misregistered pair is skipped")
            node.destroy_node()
        with spun.node.world_handle.lock:
            memory = spun.node.world.memory
            depths = [memory.get(i).depth for i in range(len(memory))]
        assert len(depths) == 3
        assert depths[0] is not None and np.allclose(depths[0], 2.5)
        assert depths[1] is not None and np.allclose(depths[1], 1.5)
        assert depths[2] is None  # stereo (or the prior) later, like any photo
    finally:
        spun.close()
