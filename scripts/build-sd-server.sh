#!/usr/bin/env bash
# Build stable-diffusion.cpp's own HTTP server (`sd-server`, a third-party OpenAI-compatible and
# A1111-style server) from the source vendored in the stable-diffusion-cpp-python sdist, CPU only.
#
# The interop tests (tests/interop/) run the OpenAI-compatible backend against this binary.
#
#   scripts/build-sd-server.sh [VERSION]
#
# VERSION defaults to the stable-diffusion-cpp-python installed in the active Python (the version
# the `sdcpp` extra resolved to), so the server and the binding are built from the same source.
# The binary is cached by version in
#   ${ABSTRACTVISION_CI_CACHE:-~/.cache/abstractvision-ci}/sd-server-VERSION/sd-server
# and a rerun with a cached binary returns at once. The last line on stdout is the binary's path;
# export it as ABSTRACTVISION_SD_SERVER for the tests. Needs cmake, a C++ compiler and pip; takes
# ~3-7 minutes on 2 cores when cold. Any failure exits non-zero (CI fails with it).
set -euo pipefail

python=${PYTHON:-python3}
ver=${1:-}
if [ -z "$ver" ]; then
  ver=$("$python" -c 'import importlib.metadata as m; print(m.version("stable-diffusion-cpp-python"))') || {
    echo "build-sd-server: stable-diffusion-cpp-python is not installed in $python;" \
         "install the extra (pip install -e '.[sdcpp]') or pass a VERSION" >&2
    exit 2
  }
fi
case "$ver" in
  *[!0-9A-Za-z.+-]*|"") echo "build-sd-server: bad version '$ver'" >&2; exit 2 ;;
esac

cache_root=${ABSTRACTVISION_CI_CACHE:-$HOME/.cache/abstractvision-ci}
out="$cache_root/sd-server-$ver"
bin="$out/sd-server"
if [ -x "$bin" ] && "$bin" --version >/dev/null 2>&1; then
  echo "build-sd-server: cached $bin" >&2
  echo "$bin"
  exit 0
fi

for tool in cmake c++; do
  command -v "$tool" >/dev/null 2>&1 || {
    echo "build-sd-server: '$tool' is missing (Debian: apt-get install -y cmake g++)" >&2
    exit 2
  }
done

work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
echo "build-sd-server: building sd-server $ver (a few minutes)" >&2
"$python" -m pip download -q --no-deps --no-binary :all: "stable-diffusion-cpp-python==$ver" -d "$work"
sdist=$(find "$work" -maxdepth 1 -name 'stable_diffusion_cpp_python-*.tar.gz' | head -n 1)
[ -n "$sdist" ] || { echo "build-sd-server: no sdist for $ver was downloaded" >&2; exit 1; }
tar xzf "$sdist" -C "$work"
src="$work/stable_diffusion_cpp_python-$ver/vendor/stable-diffusion.cpp"
[ -d "$src/examples/server" ] || { echo "build-sd-server: $src has no examples/server" >&2; exit 1; }

generator=()
command -v ninja >/dev/null 2>&1 && generator=(-G Ninja)
jobs=${SD_SERVER_BUILD_JOBS:-$(nproc 2>/dev/null || echo 2)}
cmake -S "$src" -B "$work/build" "${generator[@]}" -DCMAKE_BUILD_TYPE=Release \
  -DSD_SERVER_BUILD_FRONTEND=OFF >"$work/configure.log" 2>&1 \
  || { tail -n 40 "$work/configure.log" >&2; exit 1; }
cmake --build "$work/build" --config Release -j "$jobs" --target sd-server >"$work/build.log" 2>&1 \
  || { tail -n 60 "$work/build.log" >&2; exit 1; }

built=$(find "$work/build" -type f -name sd-server -perm -u+x | head -n 1)
[ -n "$built" ] || { echo "build-sd-server: the build produced no sd-server binary" >&2; exit 1; }
mkdir -p "$out"
cp "$built" "$out/sd-server.tmp.$$"
mv -f "$out/sd-server.tmp.$$" "$bin"   # atomic: a half-copied binary is never "cached"
"$bin" --version >/dev/null 2>&1 || { echo "build-sd-server: $bin does not run" >&2; exit 1; }
echo "build-sd-server: built $bin" >&2
echo "$bin"
