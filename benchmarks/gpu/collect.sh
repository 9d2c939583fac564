# A later device call: wait up to $1 seconds for the background suite, then bring back what it has written.
W=/root/work
end=$((SECONDS + $1))
while [ $SECONDS -lt $end ] && ! grep -q "cross-generator finished" $W/cross-generator.log; do sleep 5; done
cp $W/cross-generator.log $OUT/
mkdir -p $W/generators && cp ~/.cache/bench/generators/*.json $W/generators/ 2>/dev/null
tar czf $OUT/cross-generator.tgz -C $W cross-generator generators
nvidia-smi --query-gpu=utilization.gpu,memory.used --format=csv,noheader
tail -25 $W/cross-generator.log
