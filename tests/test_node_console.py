"""The camera node as the `rtfm_camera` console script: the YAML parameters file, seed images
given as parameters, absurd start values refused one by one (the node starts with the defaults),
and a value it cannot start with (exit code 2)."""

from __future__ import annotations

import sys
from pathlib import Path

import pytest
from node_helpers import REPO, SENSOR
from ros_helpers import collect, pick_domain_id, reliable_qos, spawn_ros_process
from sensor_msgs.msg import Image

from rtfm_ros import geometry as g


@pytest.fixture(scope="module")
def domain() -> int:
    return pick_domain_id(offset=47)


def test_console_script_yaml_absurd_start_parameters_and_refusal(assets, domain, ctx, tf_child):
    from PIL import Image as PILImage
    from rtfm_ros_interfaces.msg import WorldStatus

    exe = str(Path(sys.executable).with_name("rtfm_camera"))
    paths, poses = [], []
    for i, (rgb, T) in enumerate(assets["frames"][:3]):
        paths.append(str(assets["root"] / f"seed{i}.png"))
        PILImage.fromarray(rgb).save(paths[-1])
        t, q = g.transform_to_ros(T)
        poses += [*t.tolist(), *q.tolist()]
    args = ["--ros-args", "--params-file", str(REPO / "config" / "camera.yaml"), "-r", "__ns:=/front",
            "-p", f"checkpoint:={assets['ckpt']}", "-p", f"seed_images:=[{','.join(paths)}]",
            "-p", f"seed_poses:=[{','.join(map(repr, poses))}]", "-p", "seed_fov:=90.0", "-p", "device:=cpu",
            "-p", "width:=0", "-p", "rate:=-5.0", "-p", "fov:=0.0", "-p", "qos:=bogus"]
    refused = spawn_ros_process([exe, "--ros-args", "-p", "camera_frame_convention:=sideways"], domain)
    with spawn_ros_process([exe, *args], domain) as proc:
        got = collect(ctx, {"/front/image_raw": (Image, SENSOR), "/front/rtfm_camera/status": (WorldStatus,
                      reliable_qos())}, lambda r: all(r.values()), timeout_s=60, process=proc)
        img, status = got["/front/image_raw"][0], got["/front/rtfm_camera/status"][0]
        assert (img.width, img.height, img.header.frame_id) == (64, 64, "camera_link_optical")
        assert status.frames >= 3  # the seeds (and maybe views remembered since)
        out = proc.output()
        for name in ("width", "rate", "fov", "qos"):
            assert f"parameter '{name}'" in out, out
        assert proc.stop() == 0, proc.output()[-3000:]
    try:
        assert refused.proc.wait(60) == 2
        assert "camera_frame_convention" in refused.output() and "cannot start" in refused.output()
    finally:
        refused.stop()
