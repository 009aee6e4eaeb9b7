# The `tokenscale` binary in a small image (the embedded demo model is compiled in).
#   docker build -t tokenscale .
#   docker run --rm tokenscale demo
# Mount models at /models (Hugging Face cache under /models/huggingface) and benchmarks at /data.

FROM rust:1-bookworm AS build
WORKDIR /src
COPY . .
RUN cargo build --release --locked -p tokenscale-cli \
    && install -m 0755 target/release/tokenscale /usr/local/bin/tokenscale

FROM debian:bookworm-slim
RUN apt-get update \
    && apt-get install -y --no-install-recommends ca-certificates \
    && rm -rf /var/lib/apt/lists/*
COPY --from=build /usr/local/bin/tokenscale /usr/local/bin/tokenscale
ENV HF_HOME=/models/huggingface \
    LMUData=/data
WORKDIR /work
ENTRYPOINT ["tokenscale"]
CMD ["--help"]
