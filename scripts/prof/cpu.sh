#!/bin/sh
# cpu.sh CMD...: runs CMD, prints its last output line and user+sys CPU seconds (robust to other load).
python3 - "$@" <<'PY'
import resource, subprocess, sys, time
t = time.time()
out = subprocess.run(sys.argv[1:], capture_output=True, text=True).stdout.strip().splitlines()
r = resource.getrusage(resource.RUSAGE_CHILDREN)
print(f"{out[-1] if out else ''}\n  cpu {r.ru_utime + r.ru_stime:.2f} s (user {r.ru_utime:.2f}, sys {r.ru_stime:.2f}), wall {time.time() - t:.2f} s")
PY
