"""API blueprints, one per resource."""
