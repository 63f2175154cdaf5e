# The orchestrator as a container: `orchestrator daemon` by default, any other command on demand
# (docker compose exec daemon orchestrator submit /shoots/smith --profile 1001 --export).

FROM python:3.12-slim AS build
WORKDIR /src
COPY pyproject.toml README.md ./
COPY orchestrator ./orchestrator
COPY migrations ./migrations
# A wheel (not an editable install): the migrations travel as data files to
# <prefix>/share/orchestrator/migrations, where `orchestrator db upgrade` finds them.
RUN pip wheel --no-cache-dir --wheel-dir /wheels .

FROM python:3.12-slim
# exiftool writes the keywords into the files (--tag); without it a tagging job is refused.
RUN apt-get update \
    && apt-get install -y --no-install-recommends libimage-exiftool-perl \
    && rm -rf /var/lib/apt/lists/*
# The default user; Compose runs the daemon as the host user who owns the shoots instead
# (ORCH_UID/ORCH_GID), so its outputs land beside the photos with that user's ownership.
RUN useradd --create-home --uid 10001 orchestrator
COPY --from=build /wheels /wheels
RUN pip install --no-cache-dir /wheels/*.whl && rm -rf /wheels
USER orchestrator
WORKDIR /home/orchestrator
ENV PYTHONUNBUFFERED=1 \
    ORCH_LISTEN=0.0.0.0:8750
EXPOSE 8750
# /healthz only says the process answers; orchestration that routes traffic should use /readyz.
HEALTHCHECK --interval=15s --timeout=5s --start-period=20s --retries=3 \
    CMD ["python", "-c", "import urllib.request; urllib.request.urlopen('http://127.0.0.1:8750/healthz', timeout=4)"]
ENTRYPOINT ["orchestrator"]
CMD ["daemon"]
