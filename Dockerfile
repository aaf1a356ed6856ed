# One image with the three binaries (gateway, router, chatload) and the
# configs they read; docker-compose.yml runs it. The web client is embedded
# in the gateway binary (static/embed.go).
#
#   docker build -t switchboard .
#
# GO_VERSION tracks go.mod's go line (the same minor; deploy/compose_test.go
# checks it).
ARG GO_VERSION=1.26.8

FROM golang:${GO_VERSION}-alpine AS build
WORKDIR /src
COPY go.mod go.sum ./
RUN --mount=type=cache,target=/go/pkg/mod go mod download
COPY . .
RUN --mount=type=cache,target=/go/pkg/mod --mount=type=cache,target=/root/.cache/go-build \
    CGO_ENABLED=0 go build -trimpath -ldflags="-s -w" -o /out/bin/ ./cmd/gateway ./cmd/router ./cmd/chatload

# alpine rather than distroless: the compose healthchecks need an HTTP
# client (busybox wget) inside the container to probe /readyz.
FROM alpine:3.22
RUN apk add --no-cache ca-certificates tzdata \
    && addgroup -S -g 10001 switchboard \
    && adduser -S -D -H -u 10001 -G switchboard switchboard
WORKDIR /app
COPY --from=build /out/bin/ /app/bin/
COPY configs/ /app/configs/
USER 10001:10001
# The gateway's default port; the router listens on 9090.
EXPOSE 8080 9090
# No default command: compose names the binary and its -config exactly as
# deploy/local/run.sh (make run) does.
CMD ["/app/bin/gateway", "-config", "configs/gateway.yaml"]
