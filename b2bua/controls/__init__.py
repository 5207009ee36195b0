"""Carrier controls (docs/carrier-controls.md): the pure rules of call-rate limits,
maximum call duration, failure-code maps, weighted routing and routing periods."""
