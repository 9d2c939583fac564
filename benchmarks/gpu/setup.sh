# Source me on a device machine, from the repository root: data, carried wheels, the project.
# Expects /root/data/ to hold cifake.zip, cifar10-zoo/ and ddpm-cifar10/ (benchmarks/gpu/lease.sh unpacks the parts
# that benchmarks/gpu/pack.sh made), .gpu/commit (the commit records name) and .whl/ (the packages the image lacks).
export PYTHONUNBUFFERED=1 BENCH_DATA_ROOT=/root/data BENCH_TEST_DATA=/root/data PYTHONPATH=/tmp/site
[ -f /root/data/cifake.zip ] || { echo "no /root/data/cifake.zip: carry the parts of benchmarks/gpu/pack.sh"; exit 1; }
if [ ! -d /tmp/site ]; then
  python3 -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade --target /tmp/site .whl/*.whl
  python3 -m pip install -q --no-index --no-deps --no-build-isolation -e . 2>&1 | tail -2
fi
# the device's copy reports the session's first commit as its own: records name the one pack.sh saw instead
[ -f .gpu/commit ] && export BENCH_GIT_COMMIT=$(cat .gpu/commit)
if ! python3 -c "import bench.detectors.lenet" 2>/dev/null; then  # no editable install: run from the tree
  for p in detectors generators suites; do [ -e bench/$p ] || ln -s ../$p bench/$p; done
  export PYTHONPATH=/tmp/site:$PWD
fi
command -v bench >/dev/null || { bench() { python3 -m bench "$@"; }; export -f bench; }
echo "cifake.zip sha256 $(sha256sum /root/data/cifake.zip | cut -c1-16); commit ${BENCH_GIT_COMMIT:-unknown}"
