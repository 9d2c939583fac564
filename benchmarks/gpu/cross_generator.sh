# The full-scale cross-generator suite on the device (seed 0 first; the other seeds resume with the same folder).
. benchmarks/gpu/setup.sh
bench run --suite cross-generator --seeds 0 --device cuda --parallel 4 --results /root/work/cross-generator \
  --no-progress --yes
echo "cross-generator finished: exit $?"
