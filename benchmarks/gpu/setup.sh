# Source me on a bare device machine, from the repository root: data, carried wheels, the project.
# Expects .gpu/cifake.zip.xz, .gpu/ddpm-cifar10/ (the shared data), .gpu/repo.bundle (git bundle create
# .gpu/repo.bundle HEAD) and .whl/ (the packages the image lacks).
export PYTHONUNBUFFERED=1 BENCH_DATA_ROOT=/root/data BENCH_TEST_DATA=/root/data PYTHONPATH=/tmp/site
if [ ! -f /root/data/cifake.zip ]; then
  mkdir -p /root/data && xz -dc .gpu/cifake.zip.xz > /root/data/cifake.zip.part && mv /root/data/cifake.zip.part /root/data/cifake.zip
  cp -r .gpu/ddpm-cifar10 /root/data/
  python3 -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade --target /tmp/site .whl/*.whl
  python3 -m pip install -q --no-index --no-deps --no-build-isolation -e . 2>&1 | tail -2
fi
if [ -f .gpu/repo.bundle ]; then  # the device's checkout names the session's first commit: records name this one
  [ -d .git ] || git init -q
  git fetch -q .gpu/repo.bundle HEAD && git reset -q FETCH_HEAD
fi
if ! python3 -c "import bench.detectors.lenet" 2>/dev/null; then  # no editable install: run from the tree
  for p in detectors generators suites; do [ -e bench/$p ] || ln -s ../$p bench/$p; done
  export PYTHONPATH=/tmp/site:$PWD
fi
command -v bench >/dev/null || { bench() { python3 -m bench "$@"; }; export -f bench; }
echo "cifake.zip sha256 $(sha256sum /root/data/cifake.zip | cut -c1-16); $(git log -1 --format=%h 2>/dev/null)"
