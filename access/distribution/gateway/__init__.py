"""The download gateway, ``/dl/...``: the URLs handed to researchers and fetched by curl, wget
and download.sh. ``views`` answers them; ``links`` loads a link with everything its request
is decided on in one query; ``counting`` takes a download and logs the request (on
PostgreSQL in one statement); ``streaming`` sends the bytes. The rules themselves are
``access.distribution.rules`` and ``access.distribution.leak``.
"""
