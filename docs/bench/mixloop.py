"""A build-like loop for docs/BENCHMARKS.md (eighteenth session): stats of 20 header files,
then an object file created, written and removed beside them. Usage: python3 mixloop.py DIR
(under `polytropon exec --pool P --preload-only` for the user-level path). Prints the best of
three runs of 2,000 loops, in microseconds per loop."""
import os, sys, time
d = sys.argv[1]
stable = [os.path.join(d, f"h{i}.h") for i in range(20)]
for p in stable:
    with open(p, "w") as f: f.write("x" * 100)
def run(n):
    t = time.perf_counter()
    for i in range(n):
        for p in stable:
            os.stat(p)
        with open(os.path.join(d, f"o{i % 7}.o"), "w") as f:
            f.write("y")
        os.unlink(os.path.join(d, f"o{i % 7}.o"))
    return (time.perf_counter() - t) / n * 1e6
run(200)
print("us per loop (20 stats + create + unlink):", round(min(run(2000) for _ in range(3)), 1))
