# A small non-root image of the operator (and the emulator, for demos in a cluster).
#   docker build -t cloudsso-mfa-operator:0.1.0 .
FROM docker.io/library/rust:1.89-slim-bookworm AS build
WORKDIR /src
COPY Cargo.toml Cargo.lock ./
COPY src src
RUN cargo build --release --locked --features emulator --bin cloudsso-mfa-operator --bin cloudsso-emulator \
 && strip target/release/cloudsso-mfa-operator target/release/cloudsso-emulator

# distroless/cc: glibc and CA certificates, no shell; "nonroot" runs as 65532:65532.
FROM gcr.io/distroless/cc-debian12:nonroot
COPY --from=build /src/target/release/cloudsso-mfa-operator /src/target/release/cloudsso-emulator /usr/local/bin/
USER 65532:65532
EXPOSE 8080
ENTRYPOINT ["/usr/local/bin/cloudsso-mfa-operator"]
CMD ["run"]
