"""The web page and JSON API of ``genre-id serve`` (the ``web`` extra: Starlette, uvicorn).

:func:`genre_id.web.app.create_app` builds the Starlette application around
one loaded :class:`genre_id.Analyzer`; the page itself is
``genre_id/web/static`` (plain HTML, JavaScript and CSS, nothing loaded from
elsewhere).  See docs/web.md.
"""
