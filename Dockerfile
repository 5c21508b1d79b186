# A small non-root image of the operator alone: the emulator (tests and demos, whose admin path
# serves its seeded secrets) is never built into it; demos run it on the host.
#   docker build -t cloudsso-mfa-operator:0.1.0 .
FROM docker.io/library/rust:1.89-slim-bookworm AS build
WORKDIR /src
COPY Cargo.toml Cargo.lock ./
COPY src src
RUN cargo build --release --locked --bin cloudsso-mfa-operator \
 && strip target/release/cloudsso-mfa-operator

# distroless/cc: glibc and CA certificates, no shell; "nonroot" runs as 65532:65532.
FROM gcr.io/distroless/cc-debian12:nonroot
COPY --from=build /src/target/release/cloudsso-mfa-operator /usr/local/bin/
USER 65532:65532
EXPOSE 8080
ENTRYPOINT ["/usr/local/bin/cloudsso-mfa-operator"]
CMD ["run"]
