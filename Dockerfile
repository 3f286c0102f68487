# rollgate's image: one static binary on a distroless base, running as non-root.
#
#   docker build -t rollgate:0.1.0 .
#   kind load docker-image rollgate:0.1.0        # or: k3d image import rollgate:0.1.0
#
# Stage 1 builds a fully static x86_64-unknown-linux-musl binary on Alpine (ring and the bundled SQLite are C,
# compiled against musl by build-base); stage 2 copies it alone onto distroless "static" (no shell, no package
# manager, no libc; CA certificates for rediss:// and https:// notification receivers, /etc/passwd with the
# nonroot user 65532). The chart runs it with a read-only root filesystem, all capabilities dropped.

# --- build ------------------------------------------------------------------------------------------------
FROM docker.io/library/rust:1.95-alpine AS build
RUN apk add --no-cache build-base
WORKDIR /src
# Dependencies first, so a source change does not rebuild them: a stub main with the real manifests.
COPY Cargo.toml Cargo.lock ./
RUN mkdir -p src benches && echo 'fn main() {}' > src/main.rs && touch src/lib.rs \
    && echo 'fn main() {}' > benches/webhook.rs \
    && cargo build --profile dist --locked --bin rollgate \
    && rm -rf src benches
COPY src ./src
COPY benches ./benches
# src/dev.rs embeds the sample review from tests/data.
COPY tests/data ./tests/data
RUN touch src/main.rs src/lib.rs \
    && cargo build --profile dist --locked --bin rollgate \
    && strip target/dist/rollgate \
    # Static: no interpreter, nothing dynamically linked.
    && ! readelf -l target/dist/rollgate | grep -q INTERP \
    && ./target/dist/rollgate --version

# --- run --------------------------------------------------------------------------------------------------
FROM gcr.io/distroless/static-debian12:nonroot
COPY --from=build /src/target/dist/rollgate /usr/local/bin/rollgate
USER 65532:65532
# webhook (HTTPS), ticket API (HTTPS), admin (HTTP: /metrics, /healthz, /readyz)
EXPOSE 8443 8444 9090
ENTRYPOINT ["/usr/local/bin/rollgate"]
CMD ["serve", "--config", "/etc/rollgate/config.yaml"]
