# On the device, the last call of a lease: the whole benchmark within BUDGET seconds, everything under $OUT.
#   bash benchmarks/gpu/lease.sh BUDGET      (e.g. 540 in a call with timeout_s 590)
# 1. the data (parts kept by receive.sh, plus this call's), the carried packages and the commit (setup.sh);
# 2. the CUDA tests; 3. training speed and time-to-accuracy with each detector's own and its GPU recipe, whether
#    the GPU recipe keeps validation accuracy on all of CIFAKE, and the smoke suite with 4 workers sharing the GPU
#    against serial; 4. cross-generator (3 seeds) then zoo, each stopped by SIGINT when the budget runs out: a
#    stopped run keeps every finished job's records and no half-written file, and resumes with the same command;
# 5. leaderboards of what finished, GPU utilisation every 5 s, and one tarball of it all.
set -u
end=$((SECONDS + ${1:?budget in seconds}))
mkdir -p /root/parts /root/data /root/work
cp -n .gpu/data.tar.part-* /root/parts/ 2>/dev/null
[ -f /root/data/cifake.zip ] || cat /root/parts/data.tar.part-* | tar xf - -C /root/data || exit 1
. benchmarks/gpu/setup.sh
W=/root/work
nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv,noheader | tee $OUT/device.txt
nvidia-smi --query-gpu=timestamp,utilization.gpu,memory.used --format=csv,noheader -l 5 > $W/utilisation.csv &
left() { echo $((end - SECONDS)); }
timeout 120 python3 -m pytest tests/test_cuda.py -q -p no:cacheprovider > $W/cuda-tests.txt 2>&1
tail -3 $W/cuda-tests.txt
for profile in default gpu; do
  timeout $(( $(left) / 8 )) python3 benchmarks/train_speed.py --data-root /root/data --device cuda --epochs 2 \
    --full airbench-cnn --profile $profile --out $W/train-speed-$profile.json > $W/train-speed-$profile.txt 2>&1
  tail -12 $W/train-speed-$profile.txt
done
timeout $(( $(left) / 6 )) python3 benchmarks/batch_scaling.py --data-root /root/data --device cuda \
  --train-limit 45000 --gpu-batch-sizes 512,1024 --out $W/batch-scaling.json > $W/batch-scaling.txt 2>&1
tail -6 $W/batch-scaling.txt
timeout 90 python3 benchmarks/executors.py --suite smoke --parallel 4 --executors serial,local --device cuda \
  --data-root /root/data > $W/executors.txt 2>&1
tail -4 $W/executors.txt
for suite in cross-generator zoo; do
  [ "$(left)" -gt 60 ] || { echo "$suite: not started, the budget is spent"; continue; }
  timeout -s INT -k 30 $(( $(left) - 30 )) bench run --suite $suite --device cuda --parallel 4 \
    --results $W/$suite --no-progress --yes > $W/$suite.log 2>&1
  echo "$suite: exit $? after $SECONDS s (130: stopped by the budget, resumable)"; tail -3 $W/$suite.log
  [ -d $W/$suite/records ] && bench leaderboard render $W/$suite > /dev/null
done
kill %1 2>/dev/null
tar czf $OUT/lease.tgz -C $W .
ls -l $OUT
