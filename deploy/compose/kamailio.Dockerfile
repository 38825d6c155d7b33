# Kamailio 5.6 from Debian 12 (the same package the loopback tests run) for compose.yaml.
FROM debian:12.8-slim
RUN apt-get update \
    && apt-get install -y --no-install-recommends kamailio \
    && rm -rf /var/lib/apt/lists/*
USER kamailio
ENTRYPOINT ["kamailio"]
