# The mme-local controller for docker-compose.gpu.yml. Triton runs in its own container.
FROM python:3.11-slim

ENV PIP_NO_CACHE_DIR=1 \
    PIP_DISABLE_PIP_VERSION_CHECK=1 \
    PYTHONUNBUFFERED=1

WORKDIR /opt/mme-local
# The controller never runs a model itself (Triton does), so the CPU build of torch is enough
# for `package` and `lint`, and keeps the image a few GB smaller than the CUDA build.
RUN pip install --index-url https://download.pytorch.org/whl/cpu torch
COPY pyproject.toml README.md ./
COPY mme_local ./mme_local
COPY cloud ./cloud
RUN pip install .

EXPOSE 8080
ENTRYPOINT ["mme-local"]
CMD ["up", "--host=0.0.0.0", "--runtime=external", "--triton-url=http://triton:8080"]
