"""The softswitch REST API: a Flask app served by gunicorn."""
