# The app as a container: python app.py on port 7860, as the non-root user 1000 (Hugging Face Spaces style).
# MALLOC_ARENA_MAX=2: glibc's per-thread memory arenas otherwise grow the server's memory under concurrent users
# (`python -m portrait.bench load`: +43 % after 8 users x 3 rounds without it, +14 % with it).
FROM python:3.11-slim

RUN apt-get update \
    && apt-get install -y --no-install-recommends libusb-1.0-0 libgl1 libglib2.0-0 \
    && rm -rf /var/lib/apt/lists/*

RUN useradd -m -u 1000 user
USER user
ENV HOME=/home/user PATH=/home/user/.local/bin:$PATH \
    GRADIO_SERVER_NAME=0.0.0.0 GRADIO_SERVER_PORT=7860 HF_HUB_OFFLINE=1 GRADIO_ANALYTICS_ENABLED=False \
    MALLOC_ARENA_MAX=2
WORKDIR /home/user/app

COPY --chown=user requirements.txt .
RUN pip install --no-cache-dir --user -r requirements.txt
COPY --chown=user . .

EXPOSE 7860
CMD ["python", "app.py"]
