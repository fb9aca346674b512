# The native BRH forge in an empty image: one static binary (x86_64-unknown-linux-musl) and
# an empty data directory. Built by scripts/build-images.sh, which puts `forge` and `data/`
# in the build context; no base image is pulled (FROM scratch), so no registry is needed.
#
#   docker run -d --name brh-forge -p 8787:8787 -v brh-forge-data:/data \
#     -e DOMINION_SEAL="$(cat /etc/brh/seal)" brh-forge:latest
#   TLS: add -v /etc/brh/tls:/tls:ro -e FORGE_TLS_CERT=/tls/cert.pem -e FORGE_TLS_KEY=/tls/key.pem
#
# There is no shell in the image, so no HEALTHCHECK command: probe GET /health from outside.
FROM scratch
ARG VERSION=dev
ARG REVISION=unknown
LABEL org.opencontainers.image.title="brh-forge" \
      org.opencontainers.image.description="BRH forge: grants leadership leases to brh-agents (native, single binary)" \
      org.opencontainers.image.version="${VERSION}" \
      org.opencontainers.image.revision="${REVISION}" \
      org.opencontainers.image.licenses="MIT"
COPY --chown=0:0 forge /forge
# The state directory, owned by the unprivileged user the forge runs as.
COPY --chown=65532:65532 data /data
# Listen on every interface inside the container; publish the port to choose who reaches it.
# DOMINION_SEAL has no default: the forge refuses to start without it.
ENV FORGE_LISTEN=0.0.0.0:8787 \
    FORGE_DATA=/data \
    RUST_LOG=info
VOLUME ["/data"]
EXPOSE 8787
USER 65532:65532
STOPSIGNAL SIGTERM
ENTRYPOINT ["/forge"]
CMD ["serve"]
