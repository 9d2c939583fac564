# The first device call: the speed benchmark on an idle GPU, then the cross-generator suite in the background
# (it outlives this call), then the CUDA tests and the smoke suite twice (repeatability) beside it.
set -u
. benchmarks/gpu/setup.sh
W=/root/work; mkdir -p $W
nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv,noheader
python3 -c "import torch, bench; print('torch', torch.__version__, torch.cuda.get_device_name())"
timeout 300 python3 benchmarks/train_speed.py --data-root /root/data --device cuda --epochs 2 --full airbench-cnn \
  --out $OUT/train-speed.json 2>&1 | tee $OUT/train-speed.txt
setsid nohup bash benchmarks/gpu/cross_generator.sh > $W/cross-generator.log 2>&1 < /dev/null &
(timeout 200 python3 -m pytest tests/test_cuda.py -q -p no:cacheprovider > $OUT/tests.txt 2>&1) &
tests=$!
for run in a b; do
  mkdir -p $W/cache-$run/sources
  for s in cifake-real-train cifake-real-test cifake-sd14-train cifake-sd14-test ddpm-cifar10; do
    cp -r ~/.cache/bench/sources/$s $W/cache-$run/sources/
  done
  timeout 100 bench run --suite smoke --device cuda --data-dir $W/cache-$run --results $W/smoke-$run --no-progress \
    2>&1 | tail -3
done
python3 benchmarks/repeatability.py $W/smoke-a $W/smoke-b --out $W/smoke-repeatability.json | tee $OUT/repeatability.txt
tar czf $OUT/smoke.tgz -C $W smoke-a smoke-b smoke-repeatability.json
wait $tests
tail -30 $OUT/tests.txt
tail -5 $W/cross-generator.log
