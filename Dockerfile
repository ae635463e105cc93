# The `wafer` binary in a small image, for deploy/kubernetes (and `docker run wafer up ...`).
#   docker build -t wafer . && docker run -p 8080:8080 wafer up --listen 0.0.0.0:8080
FROM rust:1.95-bookworm AS build
WORKDIR /src
COPY . .
RUN cargo build --release --locked -p wafer-cli

FROM debian:bookworm-slim
RUN apt-get update && apt-get install -y --no-install-recommends ca-certificates \
    && rm -rf /var/lib/apt/lists/*
COPY --from=build /src/target/release/wafer /usr/local/bin/wafer
# Not root: a worker needs nothing but its data directory.
USER 65532:65532
ENTRYPOINT ["wafer"]
