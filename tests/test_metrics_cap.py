"""The numpy and torch PSNR agree, and both cap identical images at MAX_PSNR."""

import numpy as np
import torch

from rtfm_ros.evaluate.metrics import MAX_PSNR, psnr, psnr_torch


def test_numpy_and_torch_psnr_share_one_cap_and_agree() -> None:
    rng = np.random.default_rng(0)
    a = rng.integers(0, 256, (2, 8, 8, 3), dtype=np.uint8)
    b = np.clip(a.astype(int) + rng.integers(-9, 10, a.shape), 0, 255).astype(np.uint8)
    got = psnr_torch(torch.from_numpy(a / 255.0), torch.from_numpy(b / 255.0))
    np.testing.assert_allclose(got.numpy(), [psnr(a[i], b[i]) for i in range(2)], rtol=1e-9)
    assert psnr(a[0], a[0]) == MAX_PSNR
    assert float(psnr_torch(torch.from_numpy(a / 255.0), torch.from_numpy(a / 255.0))[0]) == MAX_PSNR
