"""rtfm_ros: builds with pip (virtualenv) and with colcon (ament_python) alike."""

from glob import glob

from setuptools import find_packages, setup

PACKAGE = "rtfm_ros"

setup(
    name=PACKAGE,
    version="0.1.0",
    description="ROS 2 camera simulator powered by a real-time generative world model",
    license="Apache-2.0",
    python_requires=">=3.10",
    packages=find_packages(include=[PACKAGE, f"{PACKAGE}.*"]),
    package_data={PACKAGE: ["assets/*", "assets/**/*", "serve/static/*"]},
    data_files=[
        ("share/ament_index/resource_index/packages", [f"resource/{PACKAGE}"]),
        (f"share/{PACKAGE}", ["package.xml"]),
        (f"share/{PACKAGE}/launch", glob("launch/*.py")),
        (f"share/{PACKAGE}/config", glob("config/*.yaml")),
    ],
    install_requires=[
        "numpy>=1.24",
        "scipy>=1.10",
        "torch>=2.2",
        "safetensors>=0.4",
        "mujoco>=3.1",
        "rosbags>=0.10",
        "gymnasium>=1.0",
        "tqdm>=4.66",
        "matplotlib>=3.7",
        "imageio>=2.31",
        "imageio-ffmpeg>=0.5",
        "scikit-image>=0.22",
        "pillow>=10",
        "pyyaml>=6",
        "aiohttp>=3.9",
        "ray==2.60.0",  # env workers as actors, replays as tasks (rtfm_ros.envs.ray_vector, replay --ray)
    ],
    extras_require={"rl": ["stable-baselines3==2.9.2"],  # PPO for `rtfm rl` (rtfm_ros.rl)
                    "test": ["pytest>=8", "hypothesis>=6.100", "pytest-timeout>=2.3", "selenium>=4.20",
                             "opencv-python-headless>=4.8,<5"]},  # StereoSGBM, cv::fisheye: reference checks
    entry_points={
        "console_scripts": [
            "rtfm = rtfm_ros.cli:main",
            "rtfm_camera = rtfm_ros.ros.camera_node:main",
        ],
    },
    zip_safe=False,
)
