# syntax=docker/dockerfile:1
# ficus: one static-ish binary (SQLite bundled, no OpenSSL) on a distroless runtime.
#   docker build -t ficus:latest .
#   docker run --rm ficus:latest --help
# The runtime image has no shell and runs as uid 65532 ("nonroot"), as deploy/k8s expects.

FROM docker.io/library/rust:1.95-bookworm AS build
WORKDIR /src
COPY . .
RUN cargo build --release --locked --bin ficus \
    && strip target/release/ficus \
    && install -D target/release/ficus /out/ficus

FROM gcr.io/distroless/cc-debian12:nonroot
COPY --from=build /out/ficus /usr/local/bin/ficus
COPY config/ficus.toml /etc/ficus/ficus.toml
USER 65532:65532
EXPOSE 8080 9900
ENTRYPOINT ["/usr/local/bin/ficus"]
CMD ["proxy", "--config", "/etc/ficus/ficus.toml"]
