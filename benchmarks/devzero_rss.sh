#!/bin/bash
# usage: CKPT=model.ckpt bash benchmarks/devzero_rss.sh REPO SECONDS
# RSS of `translator translate --input /dev/zero` each second (stops at 1.5 GB), then SIGTERM (a background
# job of a script ignores SIGINT). PYTHON picks the interpreter (default: python).
cd $1 && export PYTHONPATH=$1 OMP_NUM_THREADS=1
"${PYTHON:-python}" -m translator translate --checkpoint ${CKPT:?set CKPT to a checkpoint} --input /dev/zero --decode.method greedy > /dev/null 2>"${TMPDIR:-/tmp}/devzero.err" &
pid=$!
for t in $(seq 1 $2); do sleep 1; rss=$(( $(awk '/VmRSS/{print $2}' /proc/$pid/status 2>/dev/null || echo 0) / 1024 )); echo "t=${t}s rss=${rss} MiB"; [ $rss -gt 1500 ] && break; done
kill -TERM $pid; for i in 1 2 3 4 5 6 7 8 9 10; do sleep 1; kill -0 $pid 2>/dev/null || break; done
kill -0 $pid 2>/dev/null && { echo "still running after SIGTERM: kill -9"; kill -9 $pid; }
wait $pid; echo "rc=$?"; tail -c 400 "${TMPDIR:-/tmp}/devzero.err"
