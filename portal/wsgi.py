import os
from importlib import import_module

from django.conf import settings
from django.core.wsgi import get_wsgi_application

os.environ.setdefault("DJANGO_SETTINGS_MODULE", "portal.settings")
application = get_wsgi_application()

# Import the URLconf, and with it every view, while the worker boots: otherwise each gunicorn
# worker's first request pays for it (about 0.27 s here), a stall a download or a page would show.
import_module(settings.ROOT_URLCONF)
