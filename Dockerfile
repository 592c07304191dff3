FROM python:3.11-slim
WORKDIR /srv/gridproof
COPY pyproject.toml README.md alembic.ini ./
COPY app ./app
COPY migrations ./migrations
RUN pip install --no-cache-dir -e .
ENV GRIDPROOF_UPLOAD_DIR=/var/lib/gridproof/uploads
VOLUME /var/lib/gridproof/uploads
# The checkpoint signing key (GRIDPROOF_AUDIT_KEY_FILE defaults beside the uploads): keep it.
VOLUME /var/lib/gridproof/keys
EXPOSE 8000
# `serve` applies pending migrations first: right for one container alone. Replicas
# (docker-compose.yml) run `serve --no-migrate` after a one-shot `gridproof migrate` instead. Decoding processes: set them to the CPUs the
# container is given (Python 3.11 sees the host's cores, not a cgroup quota).
CMD ["gridproof", "serve", "--host", "0.0.0.0", "--port", "8000", "--image-processes", "2"]
