# syntax=docker/dockerfile:1
# Images for the two binaries; one build stage, two final targets:
#   docker build --target edge -t biometric-bridge/edge .
#   docker build --target processor -t biometric-bridge/processor .
# (docker-compose.yml builds both.)

FROM rust:1-bookworm AS builder
# rdkafka-sys builds librdkafka from its bundled source with librdkafka's own
# ./configure + make (the `cmake-build` feature is off), and zlib/zstd statically
# with cc; the rust image (buildpack-deps) already has bash, gcc, make and perl.
WORKDIR /src
COPY . .
# Cache mounts keep the crate registry and target dir between builds; the binaries
# are copied out because the target cache is not part of the image.
RUN --mount=type=cache,target=/usr/local/cargo/registry \
    --mount=type=cache,target=/src/target \
    cargo build --release --locked -p edge -p processor \
 && mkdir -p /out \
 && cp target/release/edge target/release/processor /out/

FROM debian:bookworm-slim AS runtime
RUN apt-get update \
 && apt-get install -y --no-install-recommends ca-certificates \
 && rm -rf /var/lib/apt/lists/* \
 && useradd --system --uid 10001 --no-create-home bridge
USER bridge

FROM runtime AS edge
COPY --from=builder /out/edge /usr/local/bin/edge
ENV EDGE_LISTEN_ADDR=0.0.0.0:8088
EXPOSE 8088
ENTRYPOINT ["/usr/local/bin/edge"]

FROM runtime AS processor
COPY --from=builder /out/processor /usr/local/bin/processor
ENV PROCESSOR_LISTEN_ADDR=0.0.0.0:8089
EXPOSE 8089
ENTRYPOINT ["/usr/local/bin/processor"]
