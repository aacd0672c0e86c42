"""stat + open + read + close of one file, N times, best of 3 (after 200 warm-up rounds).

Usage: python3 benches/stat_read_loop.py PATH N   -> prints microseconds per iteration.
Shared by benches/mount_read.sh and benches/mount_workloads.sh (~0.5 us of it is python).
"""
import os
import sys
import time

path, n = sys.argv[1], int(sys.argv[2])
for _ in range(200):
    os.stat(path); f = open(path, "rb"); f.read(); f.close()
best = None
for _ in range(3):
    t = time.perf_counter()
    for _ in range(n):
        os.stat(path); f = open(path, "rb"); f.read(); f.close()
    dt = (time.perf_counter() - t) / n * 1e6
    best = dt if best is None else min(best, dt)
print(f"{best:.2f}")
