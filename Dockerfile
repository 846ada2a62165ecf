# Huddle server image: a static binary on debian-slim. It has no PostgreSQL server, so it needs
# HUDDLE_DATABASE_URL (and HUDDLE_NATS_URL for a cluster); see docker-compose.yml.
FROM golang:1.26-bookworm AS build
WORKDIR /src
COPY go.mod go.sum ./
# go.mod replaces watermill-nats with the patched copy there (third_party/watermill-nats/README.md).
COPY third_party ./third_party
RUN go mod download
COPY . .
RUN CGO_ENABLED=0 go build -trimpath -ldflags="-s -w" -o /out/huddle ./cmd/huddle

FROM debian:bookworm-slim
RUN apt-get update \
 && apt-get install -y --no-install-recommends ca-certificates \
 && rm -rf /var/lib/apt/lists/* \
 && useradd --system --uid 10001 --home-dir /var/lib/huddle --create-home huddle
COPY --from=build /out/huddle /usr/local/bin/huddle
USER huddle
ENV HUDDLE_HTTP_ADDR=0.0.0.0:8080 \
    HUDDLE_DATA_DIR=/var/lib/huddle
EXPOSE 8080
STOPSIGNAL SIGTERM
ENTRYPOINT ["huddle"]
CMD ["serve"]
