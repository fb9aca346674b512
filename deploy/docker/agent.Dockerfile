# The BRH node agent in an empty image: one static binary (x86_64-unknown-linux-musl). Built
# by scripts/build-images.sh; FROM scratch, so no registry is needed.
#
#   docker run -d --name brh-agent -p 127.0.0.1:7878:7878 \
#     -e DOMINION_SEAL=... -e FORGE_DOMINION_ROOT=dominion://forge.example.com?env=...&sig=... \
#     -e BRH_NODE_ID=brh-node-01 -e BRH_API_ADVERTISE=http://10.0.0.5:7878 brh-agent:latest
#   With a manifest (containers): add -v /etc/brh/bridge.runtime.yaml:/etc/brh/bridge.runtime.yaml:ro
#     -e BRH_CONFIG=/etc/brh/bridge.runtime.yaml -v /var/run/docker.sock:/var/run/docker.sock
#     --group-add "$(stat -c %g /var/run/docker.sock)"   (root-equivalent on that host)
#
# No CA bundle is copied in: the agent's HTTPS client (reqwest with rustls-tls) trusts the
# Mozilla roots compiled into the binary (webpki-roots) and never reads /etc/ssl. A private
# or self-signed forge certificate is added with BRH_FORGE_CA=/path/in/a/mounted/volume.pem.
FROM scratch
ARG VERSION=dev
ARG REVISION=unknown
LABEL org.opencontainers.image.title="brh-agent" \
      org.opencontainers.image.description="BRH node agent: lease keeping against the forge, local API, CLI" \
      org.opencontainers.image.version="${VERSION}" \
      org.opencontainers.image.revision="${REVISION}" \
      org.opencontainers.image.licenses="MIT"
COPY --chown=0:0 brh-agent /brh-agent
# The API must listen beyond the container's loopback to be reachable through a published
# port; reads are open, mutations need the env's signature. Publish it on a trusted address.
ENV BRH_API_LISTEN=0.0.0.0:7878 \
    BRH_LOG=info
EXPOSE 7878
USER 65532:65532
STOPSIGNAL SIGTERM
ENTRYPOINT ["/brh-agent"]
CMD ["run"]
