# A later device call: wait up to $1 seconds for the background suite, then bring back what it has written
# (records, the generators' training sidecars, sample grids and spectra of the generated sources).
W=/root/work
end=$((SECONDS + $1))
while [ $SECONDS -lt $end ] && ! grep -q "cross-generator finished" $W/cross-generator.log; do sleep 5; done
cp $W/cross-generator.log $OUT/
mkdir -p $W/generators && cp ~/.cache/bench/generators/*.json $W/generators/ 2>/dev/null
for s in dcgan-train dcgan-test ddpm-test; do
  [ -d ~/.cache/bench/sources/$s ] && [ ! -f $W/generators/$s.png ] && \
    bench show $s --data-dir ~/.cache/bench --out $W/generators/$s.png --count 100 --scale 3 >/dev/null 2>&1
done
[ -d ~/.cache/bench/sources/ddpm-test ] && bench show cifake-real-test cifake-sd14-test dcgan-test ddpm-test --spectrum \
  --data-dir ~/.cache/bench --out $W/generators/spectra.png >/dev/null 2>&1
tar czf $OUT/cross-generator.tgz -C $W cross-generator generators
nvidia-smi --query-gpu=utilization.gpu,memory.used --format=csv,noheader
tail -25 $W/cross-generator.log
