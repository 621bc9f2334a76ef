"""Importers: a bag and a transforms.json written here with known poses come back exactly."""

from __future__ import annotations

import io
import json
from pathlib import Path

import numpy as np
import pytest
from PIL import Image
from rosbags.rosbag2 import StoragePlugin, Writer
from rosbags.typesys import Stores, get_typestore
from scipy.spatial.transform import Rotation

from rtfm_ros.cli import main as cli_main
from rtfm_ros.data.clips import open_dataset
from rtfm_ros.data.importers import (
    ImportDataError,
    ImportOptions,
    fit_image,
    import_any,
    import_bag,
    import_transforms_json,
)
from rtfm_ros.geometry import PinholeCamera, interpolate, make_transform, opengl_to_optical

TS = get_typestore(Stores.ROS2_KILTED)
W, H = 12, 8
K = [10.0, 0.0, 6.0, 0.0, 11.0, 4.0, 0.0, 0.0, 1.0]
# base_link -> camera_optical is static; map -> base_link moves.
T_BASE_CAM = make_transform(Rotation.from_euler("xyz", [-90, 0, -90], degrees=True).as_matrix(), [0.1, 0.0, 0.5])


def _T_map_base(k: int) -> np.ndarray:
    return make_transform(Rotation.from_euler("z", 7.0 * k, degrees=True).as_matrix(), [0.3 * k, -0.1 * k, 0.0])


def _header(ns: int, frame: str):
    Time, Header = TS.types["builtin_interfaces/msg/Time"], TS.types["std_msgs/msg/Header"]
    return Header(stamp=Time(sec=ns // 1_000_000_000, nanosec=ns % 1_000_000_000), frame_id=frame)


def _tf(ns: int, parent: str, child: str, T: np.ndarray):
    M = TS.types
    q = Rotation.from_matrix(T[:3, :3]).as_quat()
    tr = M["geometry_msgs/msg/Transform"](translation=M["geometry_msgs/msg/Vector3"](x=T[0, 3], y=T[1, 3], z=T[2, 3]),
                                          rotation=M["geometry_msgs/msg/Quaternion"](x=q[0], y=q[1], z=q[2], w=q[3]))
    ts = M["geometry_msgs/msg/TransformStamped"](header=_header(ns, parent), child_frame_id=child, transform=tr)
    return M["tf2_msgs/msg/TFMessage"](transforms=[ts])


def _image(k: int) -> np.ndarray:
    img = np.zeros((H, W, 3), np.uint8)
    img[..., 0] = 20 * k
    img[..., 1] = np.arange(W)[None] * 10
    img[..., 2] = np.arange(H)[:, None] * 20
    return img


T0 = 1_700_000_000_000_000_000
DT = 100_000_000


def _write_bag(path: Path, storage: StoragePlugin, encoding: str = "rgb8", compressed: bool = False) -> None:
    M = TS.types
    with Writer(path, version=9, storage_plugin=storage) as w:
        tf = w.add_connection("/tf", "tf2_msgs/msg/TFMessage", typestore=TS)
        tfs = w.add_connection("/tf_static", "tf2_msgs/msg/TFMessage", typestore=TS)
        img_type = "sensor_msgs/msg/CompressedImage" if compressed else "sensor_msgs/msg/Image"
        img = w.add_connection("/cam/image", img_type, typestore=TS)
        info = w.add_connection("/cam/camera_info", "sensor_msgs/msg/CameraInfo", typestore=TS)
        w.write(tfs, T0, TS.serialize_cdr(_tf(T0, "base_link", "camera_optical", T_BASE_CAM), "tf2_msgs/msg/TFMessage"))
        for k in range(6):
            ns = T0 + k * DT
            w.write(tf, ns, TS.serialize_cdr(_tf(ns, "map", "base_link", _T_map_base(k)), "tf2_msgs/msg/TFMessage"))
        for k in range(5):  # images at the TF samples and half-way between them
            ns = T0 + k * DT + (DT // 2 if k % 2 else 0)
            rgb = _image(k)
            if compressed:
                buf = io.BytesIO()
                Image.fromarray(rgb).save(buf, format="PNG")
                msg = M["sensor_msgs/msg/CompressedImage"](header=_header(ns, "camera_optical"), format="png",
                                                           data=np.frombuffer(buf.getvalue(), np.uint8))
            else:
                pix = rgb[..., ::-1] if encoding == "bgr8" else rgb
                msg = M["sensor_msgs/msg/Image"](header=_header(ns, "camera_optical"), height=H, width=W,
                                                 encoding=encoding, is_bigendian=0, step=W * 3,
                                                 data=np.ascontiguousarray(pix).reshape(-1))
            w.write(img, ns, TS.serialize_cdr(msg, img_type))
            ci = M["sensor_msgs/msg/CameraInfo"](
                header=_header(ns, "camera_optical"), height=H, width=W, distortion_model="plumb_bob",
                d=np.zeros(5), k=np.array(K), r=np.eye(3).reshape(-1), p=np.zeros(12), binning_x=0, binning_y=0,
                roi=M["sensor_msgs/msg/RegionOfInterest"](x_offset=0, y_offset=0, height=0, width=0, do_rectify=False))
            w.write(info, ns, TS.serialize_cdr(ci, "sensor_msgs/msg/CameraInfo"))


def _expected_pose(k: int) -> np.ndarray:
    T = _T_map_base(k) if k % 2 == 0 else interpolate(_T_map_base(k), _T_map_base(k + 1), 0.5)
    return T @ T_BASE_CAM


@pytest.mark.parametrize("storage", [StoragePlugin.MCAP, StoragePlugin.SQLITE3])
def test_bag_import_recovers_poses_images_and_intrinsics(tmp_path: Path, storage: StoragePlugin) -> None:
    _write_bag(tmp_path / "bag", storage)
    clip = import_bag(tmp_path / "bag")
    assert len(clip) == 5 and clip.depth is None and clip.resolution == (H, W)
    for k in range(5):
        np.testing.assert_allclose(clip.T_world_camera[k], _expected_pose(k), atol=1e-6)
        assert np.array_equal(clip.rgb[k], _image(k))
        ros_centres = [[0, 0, 0.5], [0, 0, 0.5], [0, 0, 0]]
        np.testing.assert_allclose(clip.K[k], np.reshape(K, (3, 3)) + ros_centres)
    np.testing.assert_allclose(clip.stamps - clip.stamps[0], [0.0, 0.15, 0.2, 0.35, 0.4], atol=1e-6)
    assert clip.meta["world_frame"] == "map" and clip.meta["camera_frame"] == "camera_optical"


def test_bag_bgr8_and_png_compressed_decode_to_the_same_rgb(tmp_path: Path) -> None:
    _write_bag(tmp_path / "bgr", StoragePlugin.MCAP, encoding="bgr8")
    _write_bag(tmp_path / "png", StoragePlugin.MCAP, compressed=True)
    for name in ("bgr", "png"):
        clip = import_bag(tmp_path / name)
        assert all(np.array_equal(clip.rgb[k], _image(k)) for k in range(5)), name


def test_bag_missing_frame_names_it_and_lists_frames(tmp_path: Path) -> None:
    _write_bag(tmp_path / "bag", StoragePlugin.MCAP)
    with pytest.raises(ImportDataError, match="'nope'.*base_link, camera_optical, map"):
        import_bag(tmp_path / "bag", camera_frame="nope")
    with pytest.raises(ImportDataError, match="no image topic '/x'.*/cam/image"):
        import_bag(tmp_path / "bag", image_topic="/x")
    # A world frame other than the root: poses relative to base_link at that instant.
    clip = import_bag(tmp_path / "bag", world_frame="base_link")
    np.testing.assert_allclose(clip.T_world_camera[0], T_BASE_CAM, atol=1e-9)


def test_bag_downscale_crops_and_scales_intrinsics(tmp_path: Path) -> None:
    _write_bag(tmp_path / "bag", StoragePlugin.MCAP)
    clip = import_bag(tmp_path / "bag", res=4)
    assert clip.resolution == (4, 4)
    # ROS cx 6, cy 4 are 6.5, 4.5 inside; crop 12x8 -> 8x8 (x offset 2): cx 4.5, then x0.5: fx 5, fy 5.5,
    # cx 2.25, cy 2.25
    np.testing.assert_allclose(clip.K[0], [[5.0, 0, 2.25], [0, 5.5, 2.25], [0, 0, 1]])


def _write_transforms(folder: Path, per_frame_override: bool = True) -> list[np.ndarray]:
    (folder / "images").mkdir(parents=True)
    poses, frames = [], []
    rng = np.random.default_rng(0)
    for i in range(4):
        T_gl = make_transform(Rotation.from_rotvec(rng.normal(size=3)).as_matrix(), rng.normal(size=3))
        poses.append(T_gl)
        Image.fromarray(_image(i)).save(folder / "images" / f"{i:04d}.png")
        fr = {"file_path": f"images/{i:04d}.png", "transform_matrix": T_gl.tolist()}
        if per_frame_override and i == 3:
            fr["fl_x"] = 20.0
        frames.append(fr)
    spec = {"fl_x": 10.0, "fl_y": 11.0, "cx": 6.0, "cy": 4.0, "w": W, "h": H, "k1": 0.01, "frames": frames}
    (folder / "transforms.json").write_text(json.dumps(spec))
    return poses


def test_transforms_json_import(tmp_path: Path) -> None:
    poses = _write_transforms(tmp_path / "nerf")
    clip = import_transforms_json(tmp_path / "nerf")
    assert len(clip) == 4 and clip.resolution == (H, W)
    for i, T_gl in enumerate(poses):
        np.testing.assert_allclose(clip.T_world_camera[i], opengl_to_optical(T_gl), atol=1e-9)
        # optical z (forward) is OpenGL -z: the camera looks along -z_gl
        np.testing.assert_allclose(clip.T_world_camera[i][:3, 2], -T_gl[:3, 2], atol=1e-12)
        assert np.array_equal(clip.rgb[i], _image(i))
    np.testing.assert_allclose(clip.K[0], [[10, 0, 6], [0, 11, 4], [0, 0, 1]])
    assert clip.K[3][0, 0] == 20.0 and clip.meta["distortion_ignored"] == {"k1": 0.01}


def test_transforms_json_camera_angle_and_errors(tmp_path: Path) -> None:
    folder = tmp_path / "n"
    _write_transforms(folder, per_frame_override=False)
    spec = json.loads((folder / "transforms.json").read_text())
    for key in ("fl_x", "fl_y", "cx", "cy", "w", "h"):
        spec.pop(key)
    spec["camera_angle_x"] = 2 * np.arctan(0.5)  # fx = 0.5 * W / 0.5 = W
    (folder / "transforms.json").write_text(json.dumps(spec))
    clip = import_transforms_json(folder / "transforms.json")
    np.testing.assert_allclose(clip.K[0], [[W, 0, W / 2], [0, W, H / 2], [0, 0, 1]])
    spec["frames"][1]["file_path"] = "images/missing.png"
    (folder / "transforms.json").write_text(json.dumps(spec))
    with pytest.raises(ImportDataError, match="missing.png"):
        import_transforms_json(folder)
    (folder / "transforms.json").write_text("{not json")
    with pytest.raises(ImportDataError, match="not valid JSON"):
        import_transforms_json(folder)


def test_fit_image_keeps_rays() -> None:
    cam = PinholeCamera(12, 8, 10.0, 11.0, 6.0, 4.0)
    _, out = fit_image(np.zeros((8, 12, 3), np.uint8), cam, 4)
    # The ray through the centre of the crop is the same before and after.
    assert (out.cx - out.width / 2) / out.fx == pytest.approx((cam.cx - 6.0) / cam.fx)
    with pytest.raises(ImportDataError):
        fit_image(np.zeros((8, 12, 3), np.uint8), cam, 0)


def test_cli_import_writes_a_dataset(tmp_path: Path) -> None:
    poses = _write_transforms(tmp_path / "nerf")
    assert cli_main(["data", "import", str(tmp_path / "nerf"), "--out", str(tmp_path / "ds")]) == 0
    ds = open_dataset(tmp_path / "ds")
    assert len(ds) == 1 and ds.resolution == (H, W)
    np.testing.assert_allclose(ds.clip(0).T_world_camera[2], opengl_to_optical(poses[2]), atol=1e-9)
    _write_bag(tmp_path / "bag", StoragePlugin.MCAP)
    assert cli_main(["data", "import", str(tmp_path / "bag"), "--res", "4", "--out", str(tmp_path / "ds2")]) == 0
    assert open_dataset(tmp_path / "ds2").resolution == (4, 4)
    with pytest.raises(ImportDataError, match="only apply to bags"):
        import_any(tmp_path / "nerf", ImportOptions(camera_frame="x"))


def test_pose_files_rounded_to_a_few_decimals_import_repaired(tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    """Real pose files round their rotations (COLMAP text, TUM, 4-6 decimals): within 1e-3 of a
    rotation they are re-orthonormalised and said so once; beyond it the frame is named and refused."""
    poses = _write_transforms(tmp_path / "nerf")
    spec = json.loads((tmp_path / "nerf" / "transforms.json").read_text())
    for fr in spec["frames"]:
        fr["transform_matrix"] = np.round(np.asarray(fr["transform_matrix"]), 4).tolist()
    (tmp_path / "nerf" / "transforms.json").write_text(json.dumps(spec))
    with caplog.at_level("WARNING"):
        clip = import_transforms_json(tmp_path / "nerf")
    assert sum("re-orthonormalised" in r.message for r in caplog.records) == 1
    for i, T_gl in enumerate(poses):
        R = clip.T_world_camera[i][:3, :3]
        np.testing.assert_allclose(R.T @ R, np.eye(3), atol=1e-12)  # what a world accepts (1e-5)
        np.testing.assert_allclose(clip.T_world_camera[i], opengl_to_optical(T_gl), atol=2e-4)
    spec["frames"][1]["transform_matrix"][0][0] += 0.02
    (tmp_path / "nerf" / "transforms.json").write_text(json.dumps(spec))
    with pytest.raises(ImportDataError, match="frame 1.*not orthonormal"):
        import_transforms_json(tmp_path / "nerf")
