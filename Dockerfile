# One image for every portal process: web (gunicorn), asgi (uvicorn), worker and
# beat (Celery), and one-off management commands; built a second time with CUDA
# torch for the sandbox's GPU workers. See docker-compose.yml and README "Deployment".
FROM python:3.11-slim

# Where torch's wheel comes from. The default, PyTorch's CPU index, supplies the
# CPU-only build (torch==2.13.0 resolves to 2.13.0+cpu), which keeps the CUDA
# libraries out of the image. Empty: torch from PyPI, whose Linux wheels bring
# CUDA (compose's sandbox-worker builds that); or a CUDA index such as
# https://download.pytorch.org/whl/cu126 to pick the CUDA version.
ARG TORCH_INDEX_URL=https://download.pytorch.org/whl/cpu

ENV PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1 \
    PIP_NO_CACHE_DIR=1 \
    PIP_DISABLE_PIP_VERSION_CHECK=1 \
    PORTAL_VAR_DIR=/app/var \
    STATIC_ROOT=/app/staticfiles

WORKDIR /app

RUN groupadd --system --gid 10001 portal \
    && useradd --system --uid 10001 --gid portal --home-dir /app --no-create-home --shell /usr/sbin/nologin portal

# Dependencies first, so code changes do not reinstall them.
COPY requirements.txt ./
RUN pip install ${TORCH_INDEX_URL:+--extra-index-url "$TORCH_INDEX_URL"} -r requirements.txt

COPY . .

# Static files are collected with the production storage, so the hashed-name
# manifest the running container needs is in the image. The values below exist
# only for this command (settings refuse to load in production without them);
# none is a real secret, nothing connects to them, and none stays in the image.
RUN PORTAL_ENV=production \
    SECRET_KEY=collectstatic-build-only \
    DATABASE_URL=sqlite:////tmp/collectstatic.sqlite3 \
    CELERY_BROKER_URL=memory:// \
    REDIS_URL=redis://collectstatic.invalid:6379/0 \
    EMAIL_URL=consolemail:// \
    ALLOWED_HOSTS=collectstatic.invalid \
    TRUSTED_PROXY_COUNT=0 \
    python manage.py collectstatic --noinput --verbosity 0 \
    && mkdir -p /app/var/sandbox-cache \
    && chown portal:portal /app/var /app/var/sandbox-cache

# The code stays root-owned and read-only to the app; only var/ is writable
# (var/sandbox-cache exists here so that a volume mounted on it is the app's too).
USER portal
EXPOSE 8000 8001

# WEB_CONCURRENCY (gunicorn's own variable) sets the number of worker processes.
CMD ["gunicorn", "portal.wsgi:application", "--bind", "0.0.0.0:8000", "--access-logfile", "-", "--timeout", "60", "--graceful-timeout", "30", "--worker-class", "gthread", "--threads", "8"]
