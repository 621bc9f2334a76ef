#!/usr/bin/env bash
# One-command set-up: .venv with torch (CPU), the ROS 2 wheels, the interface packages
# built from source, rtfm_ros installed editable, and the lint tools. Idempotent: a second run only checks.
set -euo pipefail
ROOT="$(cd "$(dirname "$0")/.." && pwd)"
VENV="$ROOT/.venv"
PY="$VENV/bin/python"
STAMP="$VENV/.rtfm-setup"
BUILD="$ROOT/build/interfaces"
TORCH_SPEC="${RTFM_TORCH_SPEC:-torch==2.13.0}"

inputs_hash() {
  (cd "$ROOT" && cat scripts/setup.sh requirements-ros.txt requirements-lint.txt setup.py package.xml \
     interfaces/*/CMakeLists.txt interfaces/*/package.xml interfaces/*/msg/* msg/* srv/* \
     2>/dev/null; echo "$TORCH_SPEC") | sha256sum | cut -d' ' -f1
}
HASH="$(inputs_hash)"

if [ -f "$STAMP" ] && [ "$(cat "$STAMP")" = "$HASH" ] && \
   "$PY" -c "import rclpy, tf2_msgs.msg, rtfm_ros_interfaces.msg, rtfm_ros" 2>/dev/null; then
  echo "set-up is current (.venv)"
  exit 0
fi
start=$(date +%s)

# apt_need "what goes wrong without them" pkg...: install missing Debian packages (as root).
apt_need() {
  local why="$1"; shift
  local need=() pkg
  for pkg in "$@"; do
    dpkg -s "$pkg" >/dev/null 2>&1 || need+=("$pkg")
  done
  [ ${#need[@]} -eq 0 ] && return 0
  if [ "$(id -u)" = 0 ] && command -v apt-get >/dev/null; then
    echo "installing system packages: ${need[*]}"
    apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "${need[@]}" >/dev/null
  else
    echo "warning: missing system packages (${need[*]}); $why. Install them with apt." >&2
  fi
}

# System libraries for MuJoCo's offscreen rendering (EGL on Mesa's software renderer).
apt_need "MuJoCo rendering may fail" libegl1 libegl-mesa0 libgl1-mesa-dri libosmesa6
# Headless Chromium and its driver for the browser tests of `rtfm serve` (tests/test_serve.py).
apt_need "the browser tests will skip" chromium chromium-driver

PYTHON_BIN="${PYTHON:-$(command -v python3.11 || command -v python3)}"
[ -x "$PY" ] || "$PYTHON_BIN" -m venv "$VENV"
# pip warns about every local index folder that lacks a package: keep its real messages only.
pip_install() {
  "$PY" -m pip install -q --disable-pip-version-check "$@" 2> >(grep -v "is ignored: it is neither" >&2)
}
echo "installing torch ($TORCH_SPEC)"
# shellcheck disable=SC2086  # the spec may carry pip options (e.g. an index URL for CUDA builds)
pip_install $TORCH_SPEC
echo "installing ROS 2 wheels"
pip_install -r "$ROOT/requirements-ros.txt"
echo "installing rtfm_ros (editable) and its Python dependencies"
pip_install -e "$ROOT[test,rl]"
echo "installing the lint tools (make lint)"
pip_install -r "$ROOT/requirements-lint.txt"

# The wheels' CMake exports name the build host's Python paths; point them at this venv.
"$PY" - "$VENV" <<'PYEOF'
import pathlib, sys, sysconfig
venv = pathlib.Path(sys.argv[1])
paths = sysconfig.get_paths()
subs = {
    "/opt/python/cp311-cp311/include/python3.11": paths["include"],
    "/opt/python/cp311-cp311/lib/python3.11/site-packages": paths["purelib"],
}
for f in (venv / "share").glob("**/cmake/*.cmake"):
    text = f.read_text(errors="surrogateescape")
    new = text
    for old, rep in subs.items():
        new = new.replace(old, rep)
    if new != text:
        f.write_text(new, errors="surrogateescape")
PYEOF

build_interfaces() {  # $1: package folder under interfaces/
  local src="$ROOT/interfaces/$1" out="$BUILD/$1"
  echo "building interface package $1"
  rm -rf "$out" && mkdir -p "$out"
  (cd "$out" && AMENT_PREFIX_PATH="$VENV" CMAKE_PREFIX_PATH="$VENV" PATH="$VENV/bin:$PATH" \
     cmake "$src" -DCMAKE_INSTALL_PREFIX="$VENV" -DPython3_EXECUTABLE="$PY" \
       -DBUILD_TESTING=OFF -DCMAKE_BUILD_TYPE=Release >"$out/cmake.log" 2>&1 && \
     make -j2 install >"$out/make.log" 2>&1) || { echo "building $1 failed; see $out/*.log" >&2; tail -30 "$out"/*.log >&2; exit 1; }
}
# tf2_msgs comes with any ROS 2 install; build it only where the environment lacks it.
"$PY" -c "import tf2_msgs.msg" 2>/dev/null || build_interfaces tf2_msgs
build_interfaces rtfm_ros_interfaces

"$PY" -c "import rclpy, tf2_msgs.msg, rtfm_ros_interfaces.msg, rtfm_ros"
echo "$HASH" > "$STAMP"
echo "set-up done in $(( $(date +%s) - start )) s"
