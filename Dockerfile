# syntax=docker/dockerfile:1
# Build a static binary, then ship it alone on distroless, as a non-root user.
FROM golang:1.26 AS build
WORKDIR /src
COPY go.mod go.sum ./
RUN go mod download
COPY . .
ARG VERSION=dev
RUN CGO_ENABLED=0 go build -trimpath -ldflags "-s -w -X main.version=${VERSION}" -o /out/tokenbroker ./cmd/tokenbroker \
 && mkdir -p /out/data

FROM gcr.io/distroless/static-debian12:nonroot
COPY --from=build /out/tokenbroker /usr/local/bin/tokenbroker
# The SQLite store lives here by default (store: sqlite:///var/lib/tokenbroker/tokenbroker.db);
# mount a volume on it. The image has no shell to chown with, so the folder is copied in owned.
COPY --from=build --chown=65532:65532 /out/data /var/lib/tokenbroker
USER 65532:65532
WORKDIR /var/lib/tokenbroker
EXPOSE 8080
ENTRYPOINT ["/usr/local/bin/tokenbroker", "serve"]
CMD ["--config", "/etc/tokenbroker/tokenbroker.yaml"]
