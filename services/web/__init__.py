"""Marquee's web pages: server-rendered (Jinja2, a little htmx), served by the API process.

``pages.py`` is the router the API's ``create_app`` includes under ``/web``; ``session.py`` the
cookie sign-in; ``view.py`` the pure helpers that turn stored documents into what the templates
show (JSON-LD, price ranges, provider records side by side). Every asset is in ``static/``.
"""
