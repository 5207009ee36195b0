"""Exceptions of the SIP message layer, in their own module so every other module can raise them."""

from __future__ import annotations


class SipParseError(ValueError):
    """Malformed SIP input; the message carries a short reason fit for a 400 reason phrase."""


class UnsupportedSchemeError(SipParseError):
    """A URI with a scheme other than sip, sips or tel; a UAS answers 416, not 400."""
