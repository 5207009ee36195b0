"""Sans-IO SIP message layer (RFC 3261): parsing, header models and serialisation."""
