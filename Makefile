# Long-running checks and benchmarks (see bench/README.md and docs/reliability.md).
# Each one starts its own softswitch and sipp processes on loopback addresses.

PYTHON ?= .venv/bin/python
CODE ?= tree

.PHONY: reliability bench

# 10-minute soak at 80% of the highest CPS the engine sustains for a minute with no failed
# call, twice in a row (60 s steps from 600 calls/s up, bisected, confirmed), measured first in the same run
# (~24 min): no failed call, every CDR written, engine memory flat (slope printed, MB/min).
reliability:
	$(PYTHON) bench/soak.py --code $(CODE) --step-seconds 60 --ladder 600,800,1000,1200,1400,1600,1800,2000

# Signalling benchmarks: CPS against the sipp rig and Sippy, password mode against IP
# mode, then simultaneous calls and memory per call (~40 min).
bench:
	$(PYTHON) bench/cps.py --code $(CODE) --systems rig,softswitch,softswitch-password,sippy --no-diagnostics --fresh-each-step
	$(PYTHON) bench/concurrency.py --code $(CODE)
