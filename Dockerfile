# Build: docker build -t ct_exporter \
#          --build-arg VERSION="$(git describe --tags --always --dirty)" \
#          --build-arg REVISION="$(git rev-parse HEAD)" .
# (the build context has no .git, so Go cannot stamp them itself: without
# the arguments the binary says version "devel", revision "unknown")
# Run:   docker run --read-only -p 9812:9812 -v ct_state:/var/lib/ct_exporter ct_exporter
# (it writes nothing but its state file; see examples/ for Kubernetes, systemd, Compose)
FROM golang:1.26-bookworm AS build
WORKDIR /src
COPY go.mod go.sum ./
RUN go mod download
COPY . .
ARG VERSION=""
ARG REVISION=""
RUN CGO_ENABLED=0 go build -trimpath \
      -ldflags "-s -w -X github.com/prometheus/common/version.Version=${VERSION} -X github.com/prometheus/common/version.Revision=${REVISION}" \
      -o /out/ct_exporter . \
 && mkdir -p /out/state /out/etc \
 && cp config.example.yml /out/etc/ct_exporter.yml

FROM scratch
# CA certificates for HTTPS to crt.sh and the logs.
COPY --from=build /etc/ssl/certs/ca-certificates.crt /etc/ssl/certs/ca-certificates.crt
COPY --from=build /out/ct_exporter /bin/ct_exporter
COPY --from=build /out/etc/ct_exporter.yml /etc/ct_exporter/ct_exporter.yml
COPY --from=build --chown=65534:65534 /out/state /var/lib/ct_exporter
# The state file is the exporter's memory: keep it on a volume.
VOLUME ["/var/lib/ct_exporter"]
USER 65534:65534
EXPOSE 9812
ENTRYPOINT ["/bin/ct_exporter"]
CMD ["--config.file=/etc/ct_exporter/ct_exporter.yml", "--state.file=/var/lib/ct_exporter/ct_exporter.state"]
