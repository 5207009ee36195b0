"""Webhooks: the receivers of the call and registration events (docs/carrier-controls.md,
"Call events (webhooks)"). The list's items carry each one's delivery state, from the
engine."""

from __future__ import annotations

import urllib.parse
from typing import Any

from marshmallow import Schema, ValidationError, fields, post_load, validate

from api import context
from api.resources import Resource
from b2bua import control
from b2bua.webhooks.outbox import EVENT_TYPES

URL_MAX = 2048


def _url(value: str) -> None:
    if any(ord(c) <= 32 or ord(c) == 127 for c in value):
        raise ValidationError("a URL has no spaces or control characters")
    try:
        parts = urllib.parse.urlsplit(value)
        parts.port  # noqa: B018 - raises ValueError for a port out of range
    except ValueError as exc:
        raise ValidationError(f"not a URL: {exc}") from None
    if parts.scheme not in ("http", "https"):
        raise ValidationError("an http:// or https:// URL")
    if not parts.hostname:
        raise ValidationError("the URL names no host")
    if parts.username is not None or parts.password is not None:
        raise ValidationError("no credentials in the URL: requests are signed with the "
                              "secret")
    if parts.fragment:
        raise ValidationError("no #fragment: it is never sent")


class DeliverySchema(Schema):
    queued = fields.Integer(required=True, metadata={
        "description": "events waiting for this webhook, being sent included"})
    in_flight = fields.Integer(required=True)
    retrying_lanes = fields.Integer(required=True, metadata={
        "description": "lanes (SS_WEBHOOK_CONNECTIONS) waiting to try again after a failure"})
    delivered = fields.Integer(required=True, metadata={"description": "answered 2xx"})
    failed_attempts = fields.Integer(required=True, metadata={
        "description": "attempts without a 2xx answer (each is tried again)"})
    dead_lettered = fields.Integer(required=True, metadata={
        "description": "events given up: past SS_WEBHOOK_RETRY_SECONDS, the queue full, "
                       "the webhook disabled or removed, or the engine stopping"})
    dead_letters_dropped = fields.Integer(required=True, metadata={
        "description": "of those, not written: the dead-letter file was at "
                       "SS_WEBHOOK_DEAD_LETTER_MB"})
    last_status = fields.Integer(allow_none=True, required=True, metadata={
        "description": "the HTTP status of the last attempt (null: no answer, or none yet)"})
    last_error = fields.String(allow_none=True, required=True)
    last_error_at = fields.Float(allow_none=True, required=True)
    last_attempt_at = fields.Float(allow_none=True, required=True)
    last_delivered_at = fields.Float(allow_none=True, required=True)
    oldest_queued_age = fields.Float(required=True, metadata={
        "description": "seconds the oldest waiting event has waited (0: none waits)"})


class WebhookSchema(Schema):
    id = fields.Integer(dump_only=True)
    name = fields.String(required=True, validate=validate.Length(min=1, max=64))
    url = fields.String(required=True, validate=[validate.Length(min=1, max=URL_MAX), _url],
                        metadata={"description": "http:// or https:// (certificates "
                                                 "checked); where the events are POSTed"})
    secret = fields.String(load_only=True, validate=validate.Length(min=16, max=256),
                           metadata={"description": "write-only: the key of each request's "
                                                    "X-Softswitch-Signature (HMAC-SHA256)"})
    events = fields.List(fields.String(validate=validate.OneOf(EVENT_TYPES)),
                         load_default=list, validate=validate.Length(max=len(EVENT_TYPES)),
                         metadata={"description": "the event types it takes; empty: all"})
    enabled = fields.Boolean(load_default=True)
    created_at = fields.Float(dump_only=True)
    updated_at = fields.Float(dump_only=True)
    delivery = fields.Nested(DeliverySchema, dump_only=True, allow_none=True, metadata={
        "description": "in lists only: the engine's delivery state (summed over its "
                       "signalling workers); null when the engine does not answer or has "
                       "not loaded the webhook yet"})

    @post_load
    def _unique_events(self, data: dict[str, Any], **_kw: Any) -> dict[str, Any]:
        if "events" in data:
            data["events"] = list(dict.fromkeys(data["events"]))
        return data


def check_webhook(data: dict[str, Any], current: dict[str, Any] | None) -> None:
    if current is None and not data.get("secret"):
        raise ValidationError({"secret": ["a webhook needs a secret"]})


def with_delivery(items: list[dict[str, Any]]) -> None:
    """Each item's delivery state, as the engine reports it (null when it does not)."""
    try:
        reports = control.request(context.control_path(), "webhooks")
    except control.ControlError:
        reports = []
    by_id = {int(r["id"]): r for r in reports or []}
    for item in items:
        state = by_id.get(int(item["id"]))
        item["delivery"] = None if state is None else {
            k: v for k, v in state.items() if k in DeliverySchema._declared_fields}


webhooks = Resource(
    name="webhooks",
    table="webhooks",
    schema=WebhookSchema,
    json_columns=frozenset({"events"}),
    write_only=frozenset({"secret"}),
    check=check_webhook,
    summary="webhooks (call and registration events, with their delivery state)",
    augment=with_delivery,
)
