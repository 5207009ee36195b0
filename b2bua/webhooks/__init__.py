"""Call and registration events as signed HTTP POSTs to configured receivers
(docs/carrier-controls.md, "Call events (webhooks)"): the sans-IO queue (``outbox``),
the events' bodies (``payloads``), and the thread that delivers them (``service``)."""
