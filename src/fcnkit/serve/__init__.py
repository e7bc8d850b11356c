"""``fcnkit serve``: the HTTP service (``create_app``) and its micro-batcher.

Needs the ``serve`` extra: ``pip install 'fcnkit[serve]'``.
"""
