# Multi-stage build of the bridge: a static binary (no cgo) with the web UI
# embedded, in an image that holds nothing else and runs as a non-root user.
FROM golang:1.26-bookworm AS build
WORKDIR /src
COPY go.mod go.sum ./
RUN go mod download
COPY . .
RUN CGO_ENABLED=0 go build -trimpath -ldflags="-s -w" -o /out/bridge ./cmd/bridge

FROM scratch
# CA roots for TLS to Discord and to the JWKS endpoint.
COPY --from=build /etc/ssl/certs/ca-certificates.crt /etc/ssl/certs/ca-certificates.crt
COPY --from=build /out/bridge /bridge
USER 65532:65532
# HTTP (web UI, REST, /api/ws) and the WebRTC media ports (ICE_UDP_PORT, ICE_TCP_PORT).
EXPOSE 8080/tcp 8443/udp 8443/tcp
ENTRYPOINT ["/bridge"]
