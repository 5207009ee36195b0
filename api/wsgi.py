"""gunicorn entry point: ``gunicorn api.wsgi:app``; paths from the environment."""

from api.app import create_app

app = create_app()
