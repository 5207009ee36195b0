"""Edge security: digest authentication, challenge sessions, suspensions."""
