# wharf's three binaries on Debian 12.
FROM rust:1.95-bookworm AS build
WORKDIR /src
COPY . .
RUN cargo build --release -p wharf-ingest -p wharf-applier -p wharfctl

FROM debian:bookworm-slim
RUN useradd --system --home /var/lib/wharf wharf && mkdir -p /var/lib/wharf/journal && chown -R wharf /var/lib/wharf
COPY --from=build /src/target/release/wharf-ingest /src/target/release/wharf-applier /src/target/release/wharfctl /usr/local/bin/
USER wharf
WORKDIR /var/lib/wharf
EXPOSE 26258
ENTRYPOINT ["wharf-ingest"]
CMD ["start", "--help"]
