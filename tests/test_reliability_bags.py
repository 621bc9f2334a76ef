"""Bags with damaged data: every reader gets a BagError, and oversized images are refused unread."""

import io
import shutil

import pytest
from PIL import Image
from test_fuzz import _png_header, bag_dir

from rtfm_ros.io import bags, messages


def test_a_zstd_corrupt_chunk_raises_a_bag_error_from_every_reader(tmp_path):
    path = tmp_path / "bag"
    shutil.copytree(bag_dir(), path)
    mcap = next(path.glob("*.mcap"))
    data = bytearray(mcap.read_bytes())
    for off in range(int(len(data) * 0.25), int(len(data) * 0.25) + 40, 7):  # inside the compressed chunk
        data[off] ^= 0xFF
    mcap.write_bytes(bytes(data))
    reader = bags.open_bag(path)  # the summary is intact: the damage shows while reading
    with pytest.raises(bags.BagError, match="damaged"):
        bags.load_tf(reader)
    with pytest.raises(bags.BagError, match="damaged"):
        bags.read_camera_infos(reader, "/cam/camera_info")
    with pytest.raises(bags.BagError, match="damaged"):
        for _ in reader.messages():
            pass
    reader.close()


def test_a_huge_compressed_image_is_refused_from_its_header(monkeypatch):
    class Msg:
        data, format = _png_header(20000, 20000), "png"

    def no_pixels(*_args, **_kwargs):
        raise AssertionError("the pixels were decoded")

    with monkeypatch.context() as m:  # refused from the header: its pixels are never read
        m.setattr(Image.Image, "load", no_pixels)
        with pytest.raises(messages.MessageError, match="20000x20000, larger than 4096|400000000 pixels"):
            messages.decode_image(Msg(), messages.COMPRESSED_IMAGE)
    buf = io.BytesIO()
    Image.new("RGB", (4097, 2)).save(buf, format="PNG")
    Msg.data = buf.getvalue()
    with pytest.raises(messages.MessageError, match="4097x2"):
        messages.decode_image(Msg(), messages.COMPRESSED_IMAGE)
