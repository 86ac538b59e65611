"""A minimal Django project for the integration tests (WSGI: ``wsgi.py``, ASGI: ``asgi.py``)."""
