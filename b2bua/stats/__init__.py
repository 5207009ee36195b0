"""Call quality per gateway: ASR, ACD, PDD and NER, live (Prometheus) and per minute,
hour and day (stored; ``GET /api/v1/stats/gateways``)."""
