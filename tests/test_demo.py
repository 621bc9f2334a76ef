"""`rtfm demo`: every output it writes decodes (video, pictures, bag, summary)."""

import json

import imageio.v3 as iio
import numpy as np
from PIL import Image
from rosbags.highlevel import AnyReader

from rtfm_ros.cli import main as cli_main


def check_outputs(out, views, with_truth):
    frames = iio.imread(out / "flight.mp4")
    assert frames.shape[0] == views and frames.shape[-1] == 3
    assert frames.shape[2] == (2 if with_truth else 1) * frames.shape[1]  # model | ground truth side by side
    for name in ("contact_sheet.png", "memory_map.png"):
        with Image.open(out / name) as im:
            im.load()
            assert im.width > 100 and im.height > 100
    counts = {}
    with AnyReader([out / "flight_bag"]) as reader:
        for conn, _, raw in reader.messages():
            msg = reader.deserialize(raw, conn.msgtype)
            counts[conn.topic] = counts.get(conn.topic, 0) + 1
            if conn.topic == "/rtfm/camera/image_raw":
                assert msg.encoding == "rgb8" and msg.header.frame_id == "camera_optical_frame"
    assert counts == {"/tf": views, "/rtfm/camera/image_raw": views, "/rtfm/camera/camera_info": views}
    return json.loads((out / "summary.json").read_text())


def test_procedural_demo_outputs_decode(tmp_path):
    out = tmp_path / "demo"
    assert cli_main(["demo", "--out", str(out), "--frames", "40"]) == 0
    summary = check_outputs(out, 40, with_truth=True)
    assert summary["views"] == 40 and summary["revisit_psnr_db"] >= 35
    assert summary["psnr_vs_ground_truth_db"] > 25


def test_demo_run_again_replaces_its_own_outputs(tmp_path):
    out = tmp_path / "demo"
    out.mkdir()
    (out / "notes.txt").write_text("mine")
    for frames in (8, 16):
        assert cli_main(["demo", "--out", str(out), "--frames", str(frames)]) == 0
        assert check_outputs(out, frames, with_truth=True)["views"] == frames
    assert (out / "notes.txt").read_text() == "mine"  # not one of the demo's files: left alone
    assert sorted(p.name for p in tmp_path.iterdir()) == ["demo"]  # no staging folder left behind


def test_demo_from_a_photo(tmp_path):
    from rtfm_ros.geometry import PinholeCamera, look_at
    from rtfm_ros.sim.renderer import WorldRenderer
    from rtfm_ros.sim.worlds import make_world

    with WorldRenderer(make_world(1_000_950, "room"), PinholeCamera.from_fov(160, 120, 60)) as r:
        photo = r.render_rgb(look_at([1.0, 1.0, 1.2], [4.0, 3.0, 1.0]))
    Image.fromarray(photo).save(tmp_path / "photo.jpg")
    out = tmp_path / "demo"
    assert cli_main(["demo", "--out", str(out), "--frames", "12", "--seed-image", str(tmp_path / "photo.jpg"),
                     "--fov", "60"]) == 0
    summary = check_outputs(out, 12, with_truth=False)
    assert summary["psnr_vs_ground_truth_db"] is None and np.isfinite(summary["median_latency_ms"])


def test_demo_refuses_a_missing_photo(tmp_path, capsys):
    assert cli_main(["demo", "--out", str(tmp_path / "d"), "--seed-image", str(tmp_path / "nope.jpg")]) == 2
    assert "nope.jpg" in capsys.readouterr().err
    assert not (tmp_path / "d").exists()
