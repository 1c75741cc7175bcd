from csp.constants import SELF, UNSAFE_INLINE
from csp.decorators import csp_update
from drf_spectacular.views import SpectacularSwaggerSplitView

# The split view serves Swagger UI's start-up script as a file, so scripts stay
# 'self' only; its bundle still sets inline styles, which this page alone allows.
# The portal's own template adds a bar that leads back to the portal.
api_docs = csp_update({"style-src": [SELF, UNSAFE_INLINE]})(
    SpectacularSwaggerSplitView.as_view(url_name="api-schema", template_name="portal/api_docs.html")
)
