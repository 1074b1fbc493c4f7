# wharf's three binaries on Debian 12, built once for every service of docker-compose.yml.
#
#   docker build -t wharf:local .                          # builds from source in a Rust image
#   DOCKER_BUILDKIT=1 docker build --build-arg BINARIES=prebuilt -t wharf:local .
#                                                          # uses binaries built on the host,
#                                                          # copied to docker/bin/ first
#                                                          # (scripts/compose-test.sh does this)
ARG BINARIES=build

FROM rust:1.95-bookworm AS build
WORKDIR /src
COPY . .
RUN cargo build --release --locked -p wharf-ingest -p wharf-applier -p wharfctl \
 && mkdir -p /out && cp target/release/wharf-ingest target/release/wharf-applier target/release/wharfctl /out/

FROM scratch AS prebuilt
COPY docker/bin/ /out/

FROM ${BINARIES} AS binaries

FROM debian:bookworm-slim
# The ingest runs as wharf (10001, it owns the journal); docker-compose.yml runs the appliers as
# 10002 and the simulator as 10003, each with secrets of its own.
RUN useradd --system --uid 10001 --home /var/lib/wharf wharf \
 && mkdir -p /var/lib/wharf/journal /secrets \
 && chown -R wharf /var/lib/wharf \
 && chmod 700 /var/lib/wharf/journal
COPY --from=binaries /out/wharf-ingest /out/wharf-applier /out/wharfctl /usr/local/bin/
COPY docker/wharf-setup /usr/local/bin/wharf-setup
USER wharf
WORKDIR /var/lib/wharf
EXPOSE 26258 26259/udp
ENTRYPOINT ["wharf-ingest"]
CMD ["start", "--help"]
