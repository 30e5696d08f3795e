# One image for every role: `callback-fanout ingress|router|worker|run`.
FROM python:3.11-slim AS base
ENV PYTHONDONTWRITEBYTECODE=1 PYTHONUNBUFFERED=1 PIP_NO_CACHE_DIR=1
WORKDIR /app
COPY pyproject.toml README.md ./
COPY shared ./shared
COPY ingress ./ingress
COPY workers ./workers
COPY callback_fanout ./callback_fanout
RUN pip install '.[speed,otel]' && useradd --system --uid 10001 fanout \
  && install -d -m 700 -o fanout -g fanout /var/spool/callback-fanout
# The ingress's spool (--spool-dir): a volume mounted here starts owned by the app's user.
USER fanout
EXPOSE 8080
HEALTHCHECK --interval=10s --timeout=3s --start-period=10s --retries=3 \
  CMD python -c "import sys,urllib.request; sys.exit(urllib.request.urlopen('http://127.0.0.1:8080/healthz', timeout=2).status != 200)"
ENTRYPOINT ["callback-fanout"]
CMD ["run"]
